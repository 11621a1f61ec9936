"""Runs in every Ray worker process of a cluster job (``worker_process_setup_hook``) and of
the local Ray radas starts (the same hook, given in the environment its processes start
with: ``ray_compat.worker_env.worker_setup_environment``), and in every trial's worker before
its trainable (``with_setup``: for a Ray radas did not start). ``setup`` may run more than
once in a process; it sets things up once.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import Any


def setup() -> None:
    # The seed's trainables report with the legacy ``ray.air.session.report``; it works
    # inside Tune but warns once per worker. radas supports it on purpose, so keep it quiet.
    warnings.filterwarnings(
        "ignore", message=r".*`ray\.train\.report` should be switched to `ray\.tune\.report`.*"
    )
    if not getattr(sys.unraisablehook, "radas_quiet", False):
        sys.unraisablehook = _quiet_exit(sys.unraisablehook)
    if not getattr(os._exit, "radas_records", False):
        os._exit = _recording_exit(os._exit)


def _recording_exit(real_exit: Any) -> Any:
    """``os._exit`` that first notes the code in the cluster's memory when the trainable (not
    Ray) calls it: Ray reports such an exit exactly as a crashed or killed worker, which radas
    would run again (``ray_compat.lost_trials.record_own_exit``, read back by ``own_exit_code``)."""

    def _exit(code: int) -> None:
        caller = sys._getframe(1).f_globals.get("__name__") or ""
        if caller != "ray" and not caller.startswith("ray."):
            try:
                from radas.ray_compat.lost_trials import record_own_exit

                record_own_exit(code)
            except Exception:  # never keep the process from exiting
                pass
        real_exit(code)

    _exit.radas_records = True  # type: ignore[attr-defined]
    return _exit


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

    hook.radas_quiet = True  # type: ignore[attr-defined]
    return hook


def with_setup(trainable: Any) -> Any:
    """``trainable`` (a function or a ``tune.Trainable`` subclass) that runs ``setup`` in its
    worker first; its name, signature and kind are kept (Tune finds a stored experiment's
    trainable by its name)."""
    if isinstance(trainable, type):

        class WithSetup(trainable):
            def setup(self, *args: Any, **kwargs: Any) -> Any:
                setup()
                return super().setup(*args, **kwargs)

        WithSetup.__name__ = trainable.__name__
        WithSetup.__qualname__ = trainable.__qualname__
        return WithSetup

    @functools.wraps(trainable)
    def run_after_setup(*args: Any, **kwargs: Any) -> Any:
        setup()
        return trainable(*args, **kwargs)

    return run_after_setup
