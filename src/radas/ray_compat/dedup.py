"""Fix 7: during a sweep every line of the workers is printed.

Ray: ``ray/_private/ray_logging/__init__.py``, ``LogDeduplicator.deduplicate`` (on when
``RAY_DEDUP_LOGS``, read once at import) folds lines that differ only in numbers into one
"[repeated 3x]": the others' numbers are lost for good. Ours sets ``RAY_DEDUP_LOGS`` to False
for the sweep. ``docs/architecture.md``, "The Ray boundary".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def install(replace: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
    from ray._private import ray_logging

    replace(ray_logging, "RAY_DEDUP_LOGS", lambda _: False)
