"""Fix 5: the workers' output, plain into pipes and quiet while radas keeps Ray quiet; and
``quiet_ray_logs``.

Ray: ``ray/_private/worker.py``, ``print_worker_logs`` (line 2314 in Ray 2.60) prints the
workers' lines with ANSI colour codes even into pipes and files. Ours strips them unless the
stream is a terminal, ends radas's live progress line first, and while radas keeps Ray quiet
drops the raylet's and autoscaler's lines, the workers' "Restored on ... from checkpoint" and
the reports of a SIGTERM that stopped a starting worker. Installed once (``install_printer``),
it touches only the lines of radas's trials outside a sweep. ``quiet_ray_logs`` keeps Tune's
messages that contradict radas off the console. ``docs/architecture.md``, "The Ray boundary".
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from radas.core.console import end_live_line, is_terminal, strip_ansi
from radas.ray_compat import sweeps
from radas.ray_compat.targets import fixes_apply

_printer_installed = False


def install_printer() -> None:
    """Fix 5, once per process (a worker's lines reach the driver after the sweep too)."""
    global _printer_installed
    if not _printer_installed:
        from ray._private import worker

        worker.print_worker_logs = _printing_worker_logs(worker.print_worker_logs)
        _printer_installed = True


class _PlainText:
    """A stream that writes what it is given without ANSI escape sequences."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(strip_ansi(text))

    def flush(self) -> None:
        self.stream.flush()


# The "pid" Ray gives the raylet's and the autoscaler's lines, and whether they are shown (not
# while quiet_ray_logs is on).
_SYSTEM_PIDS = ("raylet", "autoscaler", "gcs_server")
_system_lines_shown = True
# The worker's line of ray/tune/trainable/trainable.py (Trainable.restore), and whether it is
# shown: as the last quiet_ray_logs decided, also after it ended, as a worker's lines reach
# the driver a moment later (a trial restored near the end of a sweep: after the sweep).
_RESTORED_LINE = re.compile(r"Restored on \S+ from checkpoint: ")
_restored_lines_shown = True
# A worker the raylet stops with SIGTERM before its Python has set Ray's handler (Tune stopping
# an actor it no longer needs while the actor still starts: seconds on a busy machine) prints
# the report of Ray's C++ signal handler: "*** SIGTERM received at time=... on cpu N ***", the
# program counter and "(unknown)" frames, each also through Ray's logging.cc. Nothing failed:
# dropped with the "Restored" lines (the kill comes late, from any worker of the sweep's job).
_SIGTERM_HEADER = re.compile(r"\*\*\* SIGTERM received at time=\d+ on cpu \d+ \*\*\*")
_SIGTERM_REPORT = re.compile(
    r"\*\*\* SIGTERM received at time=|(^|logging\.cc:\d+: )\s*(PC: )?@ +0x[0-9a-f]+ "
)


def _printing_worker_logs(original: Callable[..., None]) -> Callable[..., None]:
    def print_worker_logs(data: dict, print_file: Any, ignore_prefix: bool = False) -> None:
        if not _restored_lines_shown and data.get("pid") not in _SYSTEM_PIDS:
            data = _without_sigterm_reports(data)
            if not data.get("lines"):
                return None
        if not sweeps.running and not sweeps.from_a_sweep(data):
            return original(data, print_file, ignore_prefix)  # not radas's: Ray's as it is
        if data.get("pid") in _SYSTEM_PIDS:
            if not _system_lines_shown:
                return None
        elif not _restored_lines_shown:
            lines = [line for line in data.get("lines", []) if not _RESTORED_LINE.search(line)]
            if not lines:
                return None
            data = {**data, "lines": lines}
        end_live_line()
        if not is_terminal(print_file):
            print_file = _PlainText(print_file)
        return original(data, print_file, ignore_prefix)

    print_worker_logs.ray_version = original  # type: ignore[attr-defined]  # for the tests
    return print_worker_logs


def _without_sigterm_reports(data: dict) -> dict:
    """``data`` without the report of a SIGTERM (see ``_SIGTERM_REPORT``); other signals'
    reports (a crash) and every other line stay."""
    lines = data.get("lines", [])
    plain = [strip_ansi(line) for line in lines]
    if not any(_SIGTERM_HEADER.search(text) for text in plain):
        return data
    kept = [
        line for line, text in zip(lines, plain, strict=True) if not _SIGTERM_REPORT.search(text)
    ]
    return {**data, "lines": kept}


# Tune's log records that contradict radas (docs/architecture.md): (logger's module, text)
CONTRADICTING = (
    ("ray.tune.tune", "Stop signal received"),
    ("ray.tune.tune", "Resume experiment with"),
    ("ray.tune.analysis.experiment_analysis", "Failed to fetch metrics"),
)
# Dropped while Ray is quiet: radas's summary says which trials errored or did not finish.
QUIET_ONLY = (("ray.tune.tune", "Trials did not complete"),)


class _DropMessages(logging.Filter):
    def __init__(self, texts: list[str]) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


@contextlib.contextmanager
def quiet_ray_logs(show_ray_logs: bool) -> Iterator[None]:
    """For a radas sweep (then restored): Tune's contradicting messages dropped; Ray's INFO
    and WARNING records shown if ``show_ray_logs``, else dropped (the ``ray`` logger at ERROR)
    with the raylet's and autoscaler's lines and the workers' "Restored on ... from
    checkpoint" lines (these until the next sweep decides: see ``_RESTORED_LINE``). Without
    the fixes (``fixes_apply``) only the ``ray`` logger's level changes."""
    global _system_lines_shown, _restored_lines_shown
    dropped = CONTRADICTING if show_ray_logs else CONTRADICTING + QUIET_ONLY
    filters: dict[logging.Logger, list[str]] = {}
    for module_name, text in dropped if fixes_apply() else ():
        # the logger of the module that logs the text (a target: Ray may move it)
        logger = importlib.import_module(module_name).logger
        filters.setdefault(logger, []).append(text)
    installed = [(logger, _DropMessages(texts)) for logger, texts in filters.items()]
    ray_logger = logging.getLogger("ray")
    level, shown = ray_logger.level, _system_lines_shown
    _restored_lines_shown = show_ray_logs
    for logger, drop in installed:
        logger.addFilter(drop)
    if show_ray_logs:  # Ray's own default level, whatever ray.init was given
        ray_logger.setLevel(min(level or logging.INFO, logging.INFO))
    else:
        ray_logger.setLevel(logging.ERROR)
        _system_lines_shown = False
    try:
        yield
    finally:
        for logger, drop in installed:
            logger.removeFilter(drop)
        ray_logger.setLevel(level)
        _system_lines_shown = shown
