"""Waiting for something outside the process: one poll loop with back-off, sync and async.

Every place radas waits for a condition it cannot be told about (a job to stop, a node to
join, a process group to exit, a lock to free up) asks the condition at growing intervals,
from ``FIRST_DELAY_S`` up to ``MAX_DELAY_S``: a quick answer is noticed quickly, and a long
wait does not hammer a job server. The async twin waits with ``asyncio.sleep`` and runs the
condition off the event loop (``asyncio.to_thread``), so a notebook stays responsive while
radas waits.

>>> wait_until(lambda: True, 1.0, what="nothing")
True
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 2.0
BACKOFF_FACTOR = 1.5


def delays(first_s: float = FIRST_DELAY_S, cap_s: float = MAX_DELAY_S) -> Callable[[], float]:
    """The next pause each time it is called: ``first_s``, then 1.5 times longer, up to
    ``cap_s``."""
    current = first_s / BACKOFF_FACTOR

    def next_delay() -> float:
        nonlocal current
        current = min(current * BACKOFF_FACTOR, cap_s)
        return current

    return next_delay


def wait_until(
    condition: Callable[[], T | None],
    timeout_s: float,
    *,
    what: str,
    max_delay_s: float = MAX_DELAY_S,
    error: Callable[[str], BaseException] = TimeoutError,
) -> T:
    """Ask ``condition`` until it returns something truthy, and return that; asked at least
    once, and once more at the deadline. After ``timeout_s`` raises ``error`` with a message
    naming ``what`` (e.g. ``what="job x to stop"``). Exceptions of ``condition`` propagate."""
    deadline = time.monotonic() + timeout_s
    next_delay = delays(cap_s=max_delay_s)
    while True:
        if result := condition():
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise error(_timeout_message(what, timeout_s))
        time.sleep(min(next_delay(), left))


async def async_wait_until(
    condition: Callable[[], T | None],
    timeout_s: float,
    *,
    what: str,
    max_delay_s: float = MAX_DELAY_S,
    error: Callable[[str], BaseException] = TimeoutError,
    in_thread: bool = True,
) -> T:
    """``wait_until`` for async code: the pauses are ``asyncio.sleep``, and ``condition``
    runs in a worker thread (it may block: an HTTP call, a file read) unless ``in_thread``
    is False (a condition that returns at once, e.g. a non-blocking lock attempt)."""
    deadline = time.monotonic() + timeout_s
    next_delay = delays(cap_s=max_delay_s)
    while True:
        result = await asyncio.to_thread(condition) if in_thread else condition()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise error(_timeout_message(what, timeout_s))
        await asyncio.sleep(min(next_delay(), left))


def _timeout_message(what: str, timeout_s: float) -> str:
    return f"gave up waiting for {what} after {timeout_s:g} s"
