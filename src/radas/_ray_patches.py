"""Fixes for Ray 2.60 behaviour that radas depends on, applied where Tune runs.

1. Ray's memory monitor kills a trial's worker and the trial's pending actor task then fails
   with ``ray.exceptions.OutOfMemoryError``. Tune's actor manager (``_actor_task_failed``)
   only expects ``RayActorError`` / ``RayTaskError`` and raises ``RuntimeError("Caught
   unexpected exception")`` for anything else, which ends the whole experiment. The worker
   is dead, exactly as for a ``RayActorError``: radas hands Tune the same error as an
   ``ActorOutOfMemoryError`` (a ``RayActorError`` and an ``OutOfMemoryError``), so only that
   trial fails, and radas retries it with more resources.
"""

from __future__ import annotations

from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError


class ActorOutOfMemoryError(RayActorError, OutOfMemoryError):
    """A trial's actor was killed by Ray's memory monitor (see the module docstring)."""

    def __init__(self, message: str = "") -> None:
        RayActorError.__init__(self, error_msg=message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (ActorOutOfMemoryError, (self.message,))


def apply() -> None:
    """Install the fixes (idempotent)."""
    from ray.air.execution._internal import actor_manager

    manager = actor_manager.RayActorManager
    if getattr(manager, "_radas_patched", False):
        return
    original = manager._actor_task_failed

    def _actor_task_failed(self, tracked_actor_task, exception):
        if isinstance(exception, OutOfMemoryError) and not isinstance(
            exception, (RayActorError, RayTaskError)
        ):
            exception = ActorOutOfMemoryError(str(exception))
        return original(self, tracked_actor_task, exception)

    manager._actor_task_failed = _actor_task_failed
    manager._radas_patched = True
