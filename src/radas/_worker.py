"""Runs in every Ray worker process radas starts (``worker_process_setup_hook``)."""

from __future__ import annotations

import sys
import warnings
from typing import Any


def setup() -> None:
    # The seed's trainables report with the legacy ``ray.air.session.report``; it works
    # inside Tune but warns once per worker. radas supports it on purpose, so keep it quiet.
    warnings.filterwarnings(
        "ignore", message=r".*`ray\.train\.report` should be switched to `ray\.tune\.report`.*"
    )
    sys.unraisablehook = _quiet_exit(sys.unraisablehook)


def _quiet_exit(previous: Any) -> Any:
    """An unraisable-exception hook that is silent about ``SystemExit``.

    When Tune retires a trial's actor, Ray's SIGTERM handler in the worker raises SystemExit
    (``ray/_private/worker.py``, ``sigterm_handler``); when the signal lands while a weakref
    callback runs, Python cannot raise it there and prints "Exception ignored in: <function
    WeakSet...>" with a traceback ending in ``SystemExit: 1``, which reads as a crash in the
    user's output. Nothing failed: the worker was asked to exit. Other unraisable exceptions
    are reported as before.
    """

    def hook(unraisable: Any) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, SystemExit):
            return
        previous(unraisable)

    return hook
