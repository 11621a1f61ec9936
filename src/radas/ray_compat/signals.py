"""Fix 6: a sweep in a thread stops on radas's event.

Ray: ``ray/tune/tune.py``, ``_setup_signal_catching`` (line 233 in Ray 2.60) sets the event
that stops ``tune.run`` (its state saved, as on Ctrl-C) on SIGINT only in the main thread. In
a thread that runs a local radas sweep (``tune_interrupted_by``), Tune gets radas's event,
which radas sets on Ctrl-C or when the awaiting task is cancelled. ``docs/architecture.md``,
"The Ray boundary".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

# The event that stops Tune's fits in a thread (by thread id), as Ctrl-C does in the main one.
_thread_interrupts: dict[int, threading.Event] = {}


@contextlib.contextmanager
def tune_interrupted_by(event: threading.Event) -> Iterator[None]:
    """In this thread, for the block: radas's sweeps stop when ``event`` is set, saving the
    experiment's state as on Ctrl-C (fix 6; without the fixes, Tune's own event, which only
    a SIGINT in the main thread sets)."""
    thread = threading.get_ident()
    _thread_interrupts[thread] = event
    try:
        yield
    finally:
        del _thread_interrupts[thread]


def _wrap_setup_signal_catching(original: Callable[[], Any]) -> Callable[[], Any]:
    def setup_signal_catching() -> threading.Event:
        return _thread_interrupts.get(threading.get_ident()) or original()

    return setup_signal_catching


def install(replace: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
    import ray.tune.tune as tune_module

    replace(tune_module, "_setup_signal_catching", _wrap_setup_signal_catching)
