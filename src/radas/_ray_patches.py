"""Fixes for Ray 2.60 behaviour that radas depends on, applied where Tune runs.

1. Ray's memory monitor kills a trial's worker and the trial's pending actor task then fails
   with ``ray.exceptions.OutOfMemoryError``. Tune's actor manager (``_actor_task_failed``)
   only expects ``RayActorError`` / ``RayTaskError`` and raises ``RuntimeError("Caught
   unexpected exception")`` for anything else, which ends the whole experiment. The worker
   is dead, exactly as for a ``RayActorError``: radas hands Tune the same error as an
   ``ActorOutOfMemoryError`` (a ``RayActorError`` and an ``OutOfMemoryError``), so only that
   trial fails, and radas retries it with more resources.
2. Result buffering (``TUNE_RESULT_BUFFER_LENGTH`` > 1) never buffers: the controller calls
   ``Trainable.train_buffered(buffer_time_s, max_buffer_length)`` with its arguments
   swapped (``(buffer_length, buffer_time_s)``), so the buffer is "full" after one result
   and every report costs the driver one actor call. radas schedules its own version of
   ``train_buffered`` (run on the trial's actor through ``__ray_call__``), with the
   arguments in their places, so a trial's fast reports reach the driver in batches; every
   result is still processed, in order, by schedulers, searchers and callbacks. Ray's
   version also drops the results it has buffered when the trainable then raises; radas's
   returns them and raises the error on the next call, so an errored trial keeps every
   report it made.
"""

from __future__ import annotations

import time
from typing import Any

from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError
from ray.tune.result import DONE, RESULT_DUPLICATE, SHOULD_CHECKPOINT


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

    manager._actor_task_failed = _actor_task_failed  # type: ignore[method-assign]
    manager._radas_patched = True  # type: ignore[attr-defined]
    _fix_buffered_training()


def _fix_buffered_training() -> None:
    from ray.tune.execution.tune_controller import TuneController

    def _schedule_trial_train(self, trial):
        buffer_length, buffer_time_s = self._maybe_buffer_training(trial)
        method_name, args = "train", ()
        if buffer_length > 1:
            method_name, args = "__ray_call__", (train_buffered, buffer_time_s, buffer_length)
        self._schedule_trial_task(
            trial=trial,
            method_name=method_name,
            args=args,
            on_result=self._on_training_result,
            on_error=self._trial_task_failure,
        )

    TuneController._schedule_trial_train = _schedule_trial_train  # type: ignore[method-assign]


def train_buffered(trainable: Any, buffer_time_s: float, max_buffer_length: int) -> list[dict]:
    """``Trainable.train_buffered`` that keeps what it buffered when the trainable raises.

    Runs on the trial's actor. Collects results until ``buffer_time_s`` has passed (at least
    one), ``max_buffer_length`` are collected, or a result ends the trial or asks for a
    checkpoint. An error after some results returns those results and is raised by the next
    call, so the driver processes every report before it sees the error.
    """
    trial_id, pending = trainable.__dict__.pop("_radas_pending_error", (None, None))
    if pending is not None and trial_id == trainable.trial_id:  # not a reused actor's old error
        raise pending
    results: list[dict] = []
    send_at = time.time() + buffer_time_s
    while not results or time.time() < send_at:
        try:
            result = trainable.train()
        except Exception as error:
            if not results:
                raise
            trainable._radas_pending_error = (trainable.trial_id, error)
            break
        results.append(result)
        if (
            result.get(DONE, False)
            or result.get(SHOULD_CHECKPOINT, False)
            or result.get(RESULT_DUPLICATE)
            or len(results) >= max_buffer_length
        ):
            break
    return results
