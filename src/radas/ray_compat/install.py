"""Installing radas's fixes to Tune's code for a sweep (``fixes_installed``): every fix
module's ``install`` (fixes 1, 2, 4 and 6 to 10), and fix 5's printer once. Fix 3 is a
scheduler (``fifo``), installed nowhere.

Experiments stored before the split of ``radas._ray_compat`` (later ``radas.ray_compat.fixes``)
name its classes in their pickles (``tuner.pkl``: the scheduler; a trial's ``error.pkl``: an
``ActorOutOfMemoryError``): ``radas.core.moved`` maps those module names here, so this module
re-exports them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from radas.ray_compat import (
    buffering,
    callbacks,
    dedup,
    error_file,
    lost_trials,
    oom,
    signals,
    sweeps,
    worker_env,
    worker_logs,
)
from radas.ray_compat.fifo import RadasFIFOScheduler
from radas.ray_compat.oom import ActorOutOfMemoryError
from radas.ray_compat.targets import fixes_apply

__all__ = ["ActorOutOfMemoryError", "RadasFIFOScheduler", "fixes_installed"]

# The fixes installed for a sweep, in this order (removed in the reverse one).
FIXES = (oom, buffering, error_file, lost_trials, signals, dedup, callbacks, worker_env)

_install_lock = threading.Lock()
_replaced: list[tuple[Any, str, Any]] = []  # (owner, name, what was there) while installed
_ABSENT = object()  # the owner inherited the name: removing ours is putting it back


@contextlib.contextmanager
def fixes_installed() -> Iterator[None]:
    """radas's fixes for the duration of a sweep (nested and concurrent sweeps share them);
    nothing when this Ray does not match ``TARGETS`` (see ``fixes_apply``)."""
    if not fixes_apply():
        yield
        return
    with _install_lock:
        if sweeps.running == 0:
            _install()
        sweeps.running += 1
    try:
        yield
    finally:
        with _install_lock:
            sweeps.running -= 1
            if sweeps.running == 0:
                _uninstall()


def _install() -> None:
    for fix in FIXES:
        fix.install(_replace)
    worker_logs.install_printer()


def _replace(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Set ``owner.name`` to ``make(Ray's version)``, remembering what to put back."""
    _replaced.append((owner, name, owner.__dict__.get(name, _ABSENT)))
    setattr(owner, name, make(getattr(owner, name)))


def _uninstall() -> None:
    while _replaced:
        owner, name, original = _replaced.pop()
        if original is _ABSENT:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
