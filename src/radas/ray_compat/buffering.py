"""Fix 2: result buffering that buffers.

Ray: ``ray/tune/execution/tune_controller.py``, ``TuneController._schedule_trial_train``
(line 1483 in Ray 2.60) calls ``Trainable.train_buffered`` with its arguments swapped, so
nothing is buffered. Ours schedules ``train_buffered`` below (on the trial's actor, through
``__ray_call__``) with the arguments in their places; it also notes which worker runs each
trial (fix 5). ``docs/architecture.md``, "The Ray boundary".
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from radas.ray_compat import sweeps


def _schedule_trial_train(self: Any, trial: Any) -> None:
    """``TuneController._schedule_trial_train`` with radas's ``train_buffered`` (fix 2); also
    notes which worker process runs the trial (fix 5)."""
    buffer_length, buffer_time_s = self._maybe_buffer_training(trial)
    sweeps.trainables.add(trial.trainable_name)
    method_name = "train"
    args: tuple[Any, ...] = ()
    if buffer_length > 1:
        method_name, args = "__ray_call__", (train_buffered, buffer_time_s, buffer_length)

    def on_result(trial: Any, result: Any) -> None:
        first = result[0] if isinstance(result, list) and result else result
        if isinstance(first, dict) and isinstance(first.get("pid"), int):
            sweeps.worker_pids.add(first["pid"])
        self._on_training_result(trial, result)

    self._schedule_trial_task(
        trial=trial,
        method_name=method_name,
        args=args,
        on_result=on_result,
        on_error=self._trial_task_failure,
    )


def train_buffered(trainable: Any, buffer_time_s: float, max_buffer_length: int) -> list[dict]:
    """``Trainable.train_buffered`` that keeps what it buffered when the trainable raises, and
    does not hold a report back for a slow one.

    Runs on the trial's actor. Collects results until ``buffer_time_s`` has passed (at least
    one), ``max_buffer_length`` are collected, or a result ends the trial or asks for a
    checkpoint. Each ``train()`` blocks until the trainable's next report, so Ray's version
    holds a report for as long as the next one takes (a quick first report, then an hour-long
    epoch: an hour): radas waits for another report only while the trial's recent reports
    (``_GAPS_REMEMBERED``, at least two) each came within the time left. An error after some
    results returns those results and is raised by the next call, so the driver processes
    every report before it sees the error.
    """
    from ray.tune.result import DONE, RESULT_DUPLICATE, SHOULD_CHECKPOINT

    trial_id, pending = trainable.__dict__.pop("_radas_pending_error", (None, None))
    if pending is not None and trial_id == trainable.trial_id:  # not a reused actor's old error
        raise pending
    gaps = _report_gaps(trainable)
    results: list[dict] = []
    send_at = time.time() + buffer_time_s
    while True:
        asked = time.time()
        try:
            result = trainable.train()
        except Exception as error:
            if not results:
                raise
            trainable._radas_pending_error = (trainable.trial_id, error)
            break
        now = time.time()
        gaps.append(now - asked)
        results.append(result)
        if (
            result.get(DONE, False)
            or result.get(SHOULD_CHECKPOINT, False)
            or result.get(RESULT_DUPLICATE)
            or len(results) >= max_buffer_length
            or len(gaps) < 2
            or now + max(gaps) >= send_at
        ):
            break
    return results


# How many of a trial's last gaps between reports predict whether the next one comes soon.
_GAPS_REMEMBERED = 8


def _report_gaps(trainable: Any) -> collections.deque[float]:
    """The trial's recent gaps between reports (kept on its actor, per trial: actors are
    reused)."""
    trial_id, gaps = trainable.__dict__.get("_radas_report_gaps", (None, None))
    if gaps is None or trial_id != trainable.trial_id:
        gaps = collections.deque(maxlen=_GAPS_REMEMBERED)
        trainable._radas_report_gaps = (trainable.trial_id, gaps)
    return gaps


def install(replace: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
    from ray.tune.execution.tune_controller import TuneController

    replace(TuneController, "_schedule_trial_train", lambda _: _schedule_trial_train)
