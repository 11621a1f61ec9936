"""Fix 9: radas's own callbacks are not counted as the user's.

Ray: ``ray/air/_internal/usage.py``, ``tag_callbacks`` (called by ``tune.run`` for Ray's usage
statistics) imports every logger integration of Ray's, ``wandb`` included, to tell Ray's
callbacks from others: 0.4 s of each sweep where wandb is installed. Ours leaves radas's
callbacks out of what it counts, so a sweep without the user's counts none and imports nothing.
``docs/architecture.md``, "The Ray boundary".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _wrap_tag_callbacks(original: Callable[..., bool]) -> Callable[..., bool]:
    def tag_callbacks(callbacks: Any) -> bool:
        theirs = [
            callback
            for callback in callbacks or []
            if not type(callback).__module__.startswith("radas.")
        ]
        return original(theirs)

    return tag_callbacks


def install(replace: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
    from ray.air._internal import usage as air_usage

    replace(air_usage, "tag_callbacks", _wrap_tag_callbacks)
