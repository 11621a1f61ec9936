"""Argument checks shared by the public functions."""

from __future__ import annotations

import difflib
import functools
import inspect
import os
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


def run_directory(directory: str) -> str:
    """``--dir``: the directory an experiment was run from, as an absolute path;
    InvalidArgumentError when it is not one (the experiment's full name includes it)."""
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise InvalidArgumentError(
            f"--dir {directory} {what}: give the directory the experiment was run from "
            "(its full name includes it), or leave --dir out to use this one."
        )
    return os.path.abspath(directory)


def output_file(path: str, *, flag: str, example: str) -> str:
    """A command's output file (``flag`` ``path``, relative to where the command runs) as an
    absolute path, refused before anything is read when it cannot be written: a folder in its
    place (``example``: a file name to suggest in it), or its folder missing."""
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise InvalidArgumentError(
            f"{flag} {path}: {target} is a directory; give a file name, e.g. "
            f"{flag} {os.path.join(path, example)}."
        )
    if not os.path.isdir(folder):
        raise InvalidArgumentError(
            f"{flag} {path}: the folder {folder} does not exist. Create it first "
            f"(mkdir -p {folder}), or give a path in an existing folder."
        )
    return target
