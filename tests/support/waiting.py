"""Waiting in tests: for a condition (radas's own back-off helper, failing the test when the
time is up) and for a call run in a thread of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from radas.core.poll import wait_until


def wait_for(condition: Callable[[], Any], timeout_s: float = 180, what: str = "condition") -> Any:
    """``condition()``'s first truthy answer; the test fails after ``timeout_s``."""
    return wait_until(condition, timeout_s, what=what, max_delay_s=0.5, error=AssertionError)


def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any):
    """Run ``function(*args, **kwargs)`` in a thread (run_experiment_sync gets its own event
    loop there); returns (thread, box): the box gets ``results`` or the ``error`` raised."""
    box: dict = {}

    def target() -> None:
        try:
            box["results"] = function(*args, **kwargs)
        except BaseException as err:  # handed to the test
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box
