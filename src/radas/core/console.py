"""Console output: every line radas prints goes through here, prefixed ``[radas]``.

radas owns the console while it runs an experiment: Ray's own log lines are shown only when
``ray_output_wanted`` says so, colours only reach a terminal (``strip_ansi`` for everything
radas relays from Ray into a pipe or file), and the progress line (``LiveLine``) updates in
place in a notebook or on a terminal, and is one line each time in a log.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO

from radas.errors import RadasWarning

_COLORS = {"info": "", "warning": "\033[33m", "error": "\033[31m"}
_RESET = "\033[0m"
# CSI sequences (colours, cursor moves, erase) and the two-character escapes
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


def is_terminal(stream: TextIO) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def _use_color(stream: TextIO) -> bool:
    return "NO_COLOR" not in os.environ and is_terminal(stream)


def strip_ansi(text: str) -> str:
    r"""``text`` without ANSI escape sequences.

    >>> strip_ansi("\x1b[36m(pid=1)\x1b[0m hello")
    '(pid=1) hello'
    """
    return _ANSI.sub("", text)


def ray_output_wanted(run_config_verbose: Any = None) -> bool:
    """Whether Ray's own log lines (INFO/WARNING records, banners, trial tracebacks) reach the
    user: ``RADAS_VERBOSE=1``, or a non-zero ``verbose=`` the user gave ``RunConfig``."""
    return os.environ.get("RADAS_VERBOSE") == "1" or bool(run_config_verbose)


def _emit(level: str, stream: TextIO, args: tuple[Any, ...]) -> None:
    end_live_line()
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
    """Print a warning line to stderr: for what radas reports as it goes (a trial errored,
    a job is detached); a condition the user may want to act on or filter is ``warn``."""
    _emit("warning", sys.stderr, args)


def warn(message: str, *, stacklevel: int = 2) -> None:
    """Issue a ``RadasWarning`` (``stacklevel`` as for ``warnings.warn``), shown as a
    ``[radas] warning:`` line.

    It obeys the warnings filters like any warning: ``warnings.filterwarnings("ignore",
    category=radas.RadasWarning)`` silences it (no line either), ``"error"`` raises it (the
    test suite does). One that passes is printed as the ``[radas]`` line instead of Python's
    own display (file, line and source of the warning), and also handed to whatever records
    warnings (``pytest.warns``, ``warnings.catch_warnings(record=True)``,
    ``logging.captureWarnings``). Every call is shown, not only the first from a place.

    >>> warn("careful", stacklevel=1)  # doctest: +SKIP
    [radas] warning: careful
    """
    collector = _collector.get()
    if collector is not None:
        collector.append(message)
        return
    # catch_warnings swaps process-wide state: two threads interleaving their swaps (radas
    # warns from a sweep's thread too) could leave warnings going to a finished list forever
    with _WARNING_STATE, warnings.catch_warnings(record=True) as passed:  # filters kept
        warnings.warn(message, RadasWarning, stacklevel=stacklevel + 1)
    for warning in passed:  # none when a filter ignores it; "error" has raised above
        _emit("warning", sys.stderr, (message,))
        if _warnings_recorded():
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )


@contextlib.contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Within: radas's warnings (``warn``) are gathered in the list it gives, neither issued
    nor printed, for a caller that reports them itself (the listing names a damaged file
    next to its experiment)."""
    collector: list[str] = []
    token = _collector.set(collector)
    try:
        yield collector
    finally:
        _collector.reset(token)


def _warnings_recorded() -> bool:
    """Whether warnings go somewhere other than Python's own display on stderr: a replaced
    ``warnings.showwarning`` (logging.captureWarnings), or a recording ``catch_warnings``
    (it swaps the function that displays them for its list's ``append``)."""
    display = getattr(warnings, "_showwarnmsg_impl", None)
    return (
        warnings.showwarning is not _PYTHON_SHOWWARNING
        or getattr(display, "__module__", None) != "warnings"
    )


_WARNING_STATE = threading.Lock()
_PYTHON_SHOWWARNING = getattr(warnings, "_showwarning_orig", warnings.showwarning)
_collector: ContextVar[list[str] | None] = ContextVar("radas_warning_collector", default=None)


def print_error(*args: Any) -> None:
    """Print an error line to stderr."""
    _emit("error", sys.stderr, args)


# A record in Ray's logging format: "2026-01-02 03:04:05,678\tINFO job_manager.py:581 -- ..."
_RAY_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(DEBUG|INFO|WARNING) \S+:\d+ -- ")
# What Ray's job supervisor writes into every job's log before the driver starts
_JOB_ENTRYPOINT = "Running entrypoint for job "


class RelayedOutput:
    """Output from Ray that radas passes on to ``stream`` (a cluster job's log), whole lines at
    a time: without ANSI codes unless ``stream`` is a terminal, and without Ray's INFO and
    WARNING records (the job supervisor's, which no setting of the job's driver silences)
    unless ``ray_output_wanted()``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._partial = ""
        self._show_ray = ray_output_wanted()

    def write(self, chunk: str) -> None:
        *lines, self._partial = (self._partial + chunk).split("\n")
        for line in lines:
            self._line(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Pass on the last line, also without its newline."""
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self.stream.flush()

    def _line(self, line: str) -> None:
        plain = strip_ansi(line)
        if not self._show_ray and (_RAY_RECORD.match(plain) or plain.startswith(_JOB_ENTRYPOINT)):
            return
        end_live_line()
        self.stream.write(line if is_terminal(self.stream) else plain)


# The terminal whose last line is a LiveLine without its newline yet (see end_live_line).
_open_line: TextIO | None = None


def end_live_line() -> None:
    """End a live line left open on the terminal, so that the next output starts below it
    (called before every radas line and every line radas relays from Ray's workers)."""
    global _open_line
    if _open_line is not None:
        _open_line.write("\n")
        _open_line.flush()
        _open_line = None


class LiveLine:
    """A ``[radas]`` line that is updated again and again (the progress line).

    In a notebook (an IPython kernel) it is one output updated in place; on a terminal it is
    rewritten in place (``\\r``) until other output comes; in a pipe or a log (a cluster job's
    output included) every update is a line of its own.
    """

    def __init__(self) -> None:
        self._handle: Any = None

    def show(self, text: str) -> None:
        global _open_line
        line = f"[radas] {text}"
        if _in_notebook():
            from IPython.display import Pretty, display

            if self._handle is None:
                self._handle = display(Pretty(line), display_id=True)
            else:
                self._handle.update(Pretty(line))
        elif is_terminal(sys.stdout):
            if _open_line is not sys.stdout:
                end_live_line()
            sys.stdout.write(f"\r\x1b[2K{line}")
            sys.stdout.flush()
            _open_line = sys.stdout
        else:
            print(line, flush=True)

    def close(self) -> None:
        """The last update stays as it is; what comes next starts on a line of its own."""
        self._handle = None
        end_live_line()


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return getattr(shell, "kernel", None) is not None
