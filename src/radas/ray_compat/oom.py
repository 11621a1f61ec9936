"""Fix 1: an actor killed for memory fails its trial, not the experiment.

Ray: ``ray/air/execution/_internal/actor_manager.py``, ``RayActorManager._actor_task_failed``
(line 291 in Ray 2.60) raises ``RuntimeError("Caught unexpected exception")`` for an
``OutOfMemoryError``. Ours hands it Tune as an ``ActorOutOfMemoryError`` (a ``RayActorError``
too), so only that trial fails. ``docs/architecture.md``, "The Ray boundary".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError


class ActorOutOfMemoryError(RayActorError, OutOfMemoryError):
    """A trial's actor was killed by Ray's memory monitor (fix 1: see this module's docstring)."""

    def __init__(self, message: str = "") -> None:
        RayActorError.__init__(self, error_msg=message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (ActorOutOfMemoryError, (self.message,))


def _wrap_actor_task_failed(original: Callable[..., Any]) -> Callable[..., Any]:
    def _actor_task_failed(self: Any, tracked_actor_task: Any, exception: BaseException) -> Any:
        if isinstance(exception, OutOfMemoryError) and not isinstance(
            exception, (RayActorError, RayTaskError)
        ):
            exception = ActorOutOfMemoryError(str(exception))
        return original(self, tracked_actor_task, exception)

    return _actor_task_failed


def install(replace: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
    from ray.air.execution._internal.actor_manager import RayActorManager

    replace(RayActorManager, "_actor_task_failed", _wrap_actor_task_failed)
