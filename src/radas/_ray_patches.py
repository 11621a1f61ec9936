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
   report it made. And Ray's version holds a report back for as long as the next one takes
   (a quick report, then a long epoch); radas's waits for another report only while the
   trial's recent reports came fast enough.
3. The default FIFO scheduler picks the next trial to run by scanning every trial of the
   experiment, finished ones included, at every step of the controller: O(trials) per step,
   O(trials^2) for a sweep (39% of the driver's time, measured, late in a 10,000-trial
   grid). radas's version looks only at the live trials (those not terminated) and picks
   the same trial: the first pending one in the order the trials were added, else the first
   paused one.
4. A trial's ``error.txt`` holds ``str(RayTaskError)``, which Ray colours with raw ANSI codes
   whatever it is written to: radas rewrites the file without them as soon as Tune wrote it.
5. Ray's driver prints its workers' output (``print_worker_logs``) with ANSI colour codes
   even into pipes and files (a job's log): radas's version strips them unless the stream is
   a terminal, ends radas's live progress line first, and drops the raylet's and the
   autoscaler's lines while radas keeps Ray quiet (``quiet_ray_logs``), and so the trial
   worker's "Restored on <ip> from checkpoint: Checkpoint(...)" (Tune's trainable logs it in
   the worker, out of reach of the driver's logging filters, each time a trial continues
   from its saved state: radas's own lines say which trials run again).

``quiet_ray_logs`` also keeps Tune's messages that contradict radas off the console, always:
its "Stop signal received ... Press CTRL+C" and "Resume experiment with: Tuner.restore(...)"
(radas stops and restores experiments itself: ``run_choice='stop_attach'`` / ``'restore'``),
and restore's "Failed to fetch metrics ... result.json and progress.csv were not found" (radas
keeps every result in its own history and writes those files from it when they are asked for).
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import re
import time
import weakref
from collections.abc import Iterator
from typing import Any

from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError
from ray.tune.result import DONE, RESULT_DUPLICATE, SHOULD_CHECKPOINT

from radas.console import end_live_line, is_terminal, strip_ansi


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
    _fix_fifo_choice()
    _plain_error_files()
    _plain_worker_logs()


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


# Per running controller: the position of each trial in its trial list (the list only grows).
_TRIAL_POSITIONS: weakref.WeakKeyDictionary[Any, dict[Any, int]] = weakref.WeakKeyDictionary()


def _fix_fifo_choice() -> None:
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler

    original = FIFOScheduler.choose_trial_to_run

    def choose_trial_to_run(self, tune_controller):
        controller = getattr(tune_controller, "_tune_controller", None)
        if controller is None:  # not the wrapper Tune passes schedulers: Ray's own scan
            return original(self, tune_controller)
        trials = tune_controller.get_trials()
        positions = _TRIAL_POSITIONS.setdefault(controller, {})
        for position in range(len(positions), len(trials)):
            positions[trials[position]] = position
        live = tune_controller.get_live_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [trial for trial in live if trial.status == status]
            if waiting and all(trial in positions for trial in waiting):
                return min(waiting, key=positions.__getitem__)
            if waiting:  # a trial list Tune replaced: Ray's own scan
                return original(self, tune_controller)
        return None

    choose_trial_to_run.ray_version = original  # type: ignore[attr-defined]  # for the tests
    FIFOScheduler.choose_trial_to_run = choose_trial_to_run  # type: ignore[method-assign]


def _plain_error_files() -> None:
    from ray.tune.experiment import Trial

    original = Trial.handle_error

    def handle_error(self, exc=None):
        original(self, exc)
        path = self.error_file
        if path:
            with contextlib.suppress(OSError):
                with open(path, encoding="utf-8", errors="replace") as stream:
                    text = stream.read()
                if strip_ansi(text) != text:
                    with open(path, "w", encoding="utf-8") as stream:
                        stream.write(strip_ansi(text))

    Trial.handle_error = handle_error  # type: ignore[method-assign]


class _PlainText:
    """A stream that writes what it is given without ANSI escape sequences."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(strip_ansi(text))

    def flush(self) -> None:
        self.stream.flush()


# Whether the raylet's and the autoscaler's lines are shown (not while quiet_ray_logs is on).
_system_lines_shown = True
# The worker's line of ray/tune/trainable/trainable.py (Trainable.restore), and whether it is
# shown: as the last quiet_ray_logs decided, also after it ended, as a worker's lines reach
# the driver a moment later (a trial restored near the end of a sweep: after the sweep).
_RESTORED_LINE = re.compile(r"Restored on \S+ from checkpoint: ")
_restored_lines_shown = True


def _plain_worker_logs() -> None:
    from ray._private import worker

    original = worker.print_worker_logs

    def print_worker_logs(data: dict, print_file: Any, ignore_prefix: bool = False) -> None:
        if data.get("pid") in ("raylet", "autoscaler"):
            if not _system_lines_shown:
                return
        elif not _restored_lines_shown:
            lines = [line for line in data.get("lines", []) if not _RESTORED_LINE.search(line)]
            if not lines:
                return
            data = {**data, "lines": lines}
        end_live_line()
        if not is_terminal(print_file):
            print_file = _PlainText(print_file)
        original(data, print_file, ignore_prefix)

    worker.print_worker_logs = print_worker_logs


# Tune's log records that contradict radas (see the module docstring): (logger's module, text)
CONTRADICTING = (
    ("ray.tune.tune", "Stop signal received"),
    ("ray.tune.tune", "Resume experiment with"),
    ("ray.tune.analysis.experiment_analysis", "Failed to fetch metrics"),
)
# Dropped while Ray is quiet: radas's summary says which trials errored or did not finish.
QUIET_ONLY = (("ray.tune.tune", "Trials did not complete"),)


class _DropMessages(logging.Filter):
    def __init__(self, texts: list[str]) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


@contextlib.contextmanager
def quiet_ray_logs(show_ray_logs: bool) -> Iterator[None]:
    """For a radas sweep (then restored): Tune's contradicting messages dropped; Ray's INFO
    and WARNING records shown if ``show_ray_logs``, else dropped (the ``ray`` logger at ERROR)
    with the raylet's and autoscaler's lines and the workers' "Restored on ... from
    checkpoint" lines (these until the next sweep decides: see ``_RESTORED_LINE``)."""
    global _system_lines_shown, _restored_lines_shown
    dropped = CONTRADICTING if show_ray_logs else CONTRADICTING + QUIET_ONLY
    filters: dict[logging.Logger, list[str]] = {}
    for module_name, text in dropped:
        # the logger of the module that logs the text: verified, as Ray may move it
        logger = importlib.import_module(module_name).logger
        filters.setdefault(logger, []).append(text)
    installed = [(logger, _DropMessages(texts)) for logger, texts in filters.items()]
    ray_logger = logging.getLogger("ray")
    level, shown = ray_logger.level, _system_lines_shown
    _restored_lines_shown = show_ray_logs
    for logger, drop in installed:
        logger.addFilter(drop)
    if show_ray_logs:  # Ray's own default level, whatever ray.init was given
        ray_logger.setLevel(min(level or logging.INFO, logging.INFO))
    else:
        ray_logger.setLevel(logging.ERROR)
        _system_lines_shown = False
    try:
        yield
    finally:
        for logger, drop in installed:
            logger.removeFilter(drop)
        ray_logger.setLevel(level)
        _system_lines_shown = shown
