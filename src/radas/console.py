"""Console output: every line radas prints goes through here, prefixed ``[radas]``."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

_COLORS = {"info": "", "warning": "\033[33m", "error": "\033[31m"}
_RESET = "\033[0m"


def _use_color(stream: TextIO) -> bool:
    return "NO_COLOR" not in os.environ and getattr(stream, "isatty", lambda: False)()


def _emit(level: str, stream: TextIO, args: tuple[Any, ...]) -> None:
    text = " ".join(str(arg) for arg in args)
    label = "" if level == "info" else f"{level}: "
    line = f"[radas] {label}{text}"
    if _use_color(stream) and _COLORS[level]:
        line = f"{_COLORS[level]}{line}{_RESET}"
    print(line, file=stream, flush=True)


def print_info(*args: Any) -> None:
    """Print an informational line to stdout.

    >>> print_info("3 trials done")
    [radas] 3 trials done
    """
    _emit("info", sys.stdout, args)


def print_warning(*args: Any) -> None:
    """Print a warning line to stderr."""
    _emit("warning", sys.stderr, args)


def print_error(*args: Any) -> None:
    """Print an error line to stderr."""
    _emit("error", sys.stderr, args)
