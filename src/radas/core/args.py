"""Argument checks shared by the public functions."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from radas.errors import InvalidArgumentError, UnknownArgumentError

F = TypeVar("F", bound=Callable[..., Any])


def unknown_keyword_message(func_name: str, unknown: Iterable[str], valid: Iterable[str]) -> str:
    valid = sorted(valid)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    return (
        f"{func_name}() got unknown keyword argument(s) {', '.join(parts)}. "
        f"Valid keywords: {', '.join(valid)}."
    )


def checked_keywords(func: F) -> F:
    """Make a keyword-only function reject positional and misspelled arguments with a RadasError.

    Python's own TypeError does not list the valid names; ours does, and suggests the closest.
    """
    signature = inspect.signature(func)
    valid = [
        name
        for name, param in signature.parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    ]

    def check(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args:
            raise UnknownArgumentError(
                f"{func.__name__}() takes keyword arguments only, got {len(args)} positional "
                f"argument(s). Write them as name=value; valid names: {', '.join(sorted(valid))}."
            )
        unknown = [name for name in kwargs if name not in valid]
        if unknown:
            raise UnknownArgumentError(unknown_keyword_message(func.__name__, unknown, valid))

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            check(args, kwargs)
            return await func(**kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check(args, kwargs)
        return func(**kwargs)

    return wrapper  # type: ignore[return-value]


def one_of(name: str, value: object, choices: Iterable[object]) -> None:
    """Raise InvalidArgumentError unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        shown = ", ".join(repr(choice) for choice in choices)
        raise InvalidArgumentError(f"{name}={value!r} is not valid: use one of {shown}.")


def of_type(name: str, value: object, types: type | tuple[type, ...], example: str) -> None:
    """Raise InvalidArgumentError unless ``value`` is an instance of ``types``."""
    if not isinstance(value, types):
        raise InvalidArgumentError(
            f"{name} must be {_type_names(types)}, got {type(value).__name__}: "
            f"for example {example}."
        )


def _type_names(types: type | tuple[type, ...]) -> str:
    if isinstance(types, type):
        types = (types,)
    return " or ".join(t.__name__ for t in types)
