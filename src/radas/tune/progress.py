"""A compact progress line instead of Ray Tune's tables.

``[radas] lr-sweep: 12 of 30 trials finished, 2 running, 15 pending, 1 errored; best
loss=0.0312; 0:03:14 elapsed, about 0:05:10 left`` (and ``, 1 retrying`` after ``running``
while a trial that lost its node or worker waits to run again)
"""

from __future__ import annotations

import math
import os
import time
from datetime import timedelta
from typing import Any

from ray import cloudpickle
from ray.tune import Callback

from radas.clusters import shape as cluster_shape
from radas.core.console import LiveLine, print_info, strip_ansi
from radas.errors import NodeLaunchError
from radas.ray_compat.lost_trials import recovering_in_fit
from radas.resources import (
    FAILURE_HEADER,
    classify_failure,
    error_file_text,
    next_cpu_per_trial,
)
from radas.storage import store

HEARTBEAT_S = 30.0
MIN_INTERVAL_S = 5.0
LAUNCH_STATUS_S = 5.0  # how often pending trials ask what the autoscaler is launching
# How long trials may wait with nothing running while the autoscaler reports failed launches
LAUNCH_FAILURE_ENV = "RADAS_LAUNCH_FAILURE_S"
LAUNCH_FAILURE_S = 120.0
_CONFIG_CHARS = 200


class ProgressLine(Callback):
    """The experiment's progress, as one line: at least every ``heartbeat_s`` seconds while
    trials run (a long trial that reports nothing does not look hung), and when the counts
    changed, at most every ``min_interval_s`` seconds.

    The first line comes after ``min_interval_s`` (a sweep that ends sooner prints only
    radas's summary). The ETA appears once a trial of this fit has ended: with ``d`` the mean
    duration of the trials that ended in this fit, the pending trials need ``d`` each and the
    running ones what is left of ``d``, shared among the most trials seen running at once
    (a trial's start-up is not counted: for trials of a few seconds it is an underestimate).
    A trial that fails is reported at once, in one line (see ``error_line``); one that Tune
    runs again in the same fit (a lost node or worker: ``radas.tune.retries``) too, and it counts
    as retrying until it runs again (``1 retrying``), not errored. The final
    summary comes from radas after the fit, from the stored state (after an interruption,
    Tune's in-memory statuses no longer say which trials really finished).
    """

    def __init__(
        self,
        label: str,
        metric: str | None = None,
        mode: str | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        min_interval_s: float = MIN_INTERVAL_S,
    ) -> None:
        self.label = label
        self.metric = metric
        self.mode = mode
        self.heartbeat_s = heartbeat_s
        self.min_interval_s = min_interval_s
        self._reset()

    def _reset(self) -> None:
        self._start = self._last_line = time.monotonic()
        self._total: int | None = None
        self._best: float | None = None
        self._last_counts: tuple[Any, ...] | None = None
        self._started_at: dict[str, float] = {}
        self._retrying: set[str] = set()  # requeued in this fit, not running again yet
        self._durations: list[float] = []
        self._most_running = 1
        self._line = LiveLine()
        self._waiting: str | None = None  # what pending trials wait for (the autoscaler's)
        self._status_read_at = -math.inf
        self._failing_since: float | None = None  # launches failing, nothing running

    def __getstate__(self) -> dict[str, Any]:
        keep = ("label", "metric", "mode", "heartbeat_s", "min_interval_s")
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # tuner.pkl files of older radas have interval_s instead of the two intervals
        self.__dict__.update(heartbeat_s=HEARTBEAT_S, min_interval_s=MIN_INTERVAL_S)
        self.__dict__.update({k: v for k, v in state.items() if k != "interval_s"})
        self._reset()

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self._reset()
        if total_num_samples and total_num_samples > 0:
            self._total = total_num_samples

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._started_at[trial.trial_id] = time.monotonic()
        self._retrying.discard(trial.trial_id)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if self.metric is None or self.metric not in result:
            return
        value = result[self.metric]
        if not isinstance(value, (int, float)) or math.isnan(value):
            return
        if self._best is None or (value < self._best if self.mode == "min" else value > self._best):
            self._best = float(value)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial)
        self._retrying.discard(trial.trial_id)
        print_info(f"{self.label}: {error_line(trial)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Tune requeued the failed trial in this fit (``radas.tune.retries``, or the user's
        ``FailureConfig(max_failures=...)``): it is retrying, not errored."""
        self._started_at.pop(trial.trial_id, None)
        self._retrying.add(trial.trial_id)
        print_info(f"{self.label}: {recover_line(trial)}")

    def _ended(self, trial: Any) -> None:
        started = self._started_at.pop(trial.trial_id, None)
        if started is not None:
            self._durations.append(time.monotonic() - started)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        counts = self._counts(trials)
        self._most_running = max(self._most_running, counts[1])
        self._read_launch_status(pending=counts[2] + counts[4], running=counts[1], now=now)
        since = now - self._last_line
        if since >= self.heartbeat_s or (
            (*counts, self._waiting) != self._last_counts and since >= self.min_interval_s
        ):
            self._last_line, self._last_counts = now, (*counts, self._waiting)
            self._line.show(self.describe(trials, now))

    def _read_launch_status(self, pending: int, running: int, now: float) -> None:
        """While trials pend, what the cluster's autoscaler is launching for them (every
        LAUNCH_STATUS_S seconds; nothing on a cluster without an autoscaler). When it has
        reported failed launches, and nothing ran, for ``$RADAS_LAUNCH_FAILURE_S`` seconds
        (120), the sweep ends with a NodeLaunchError instead of waiting for ever."""
        if not pending:
            self._waiting = self._failing_since = None
            return
        if now - self._status_read_at < LAUNCH_STATUS_S:
            return
        self._status_read_at = now
        try:
            status = cluster_shape.launch_status()
        except Exception:  # the status is a courtesy: the sweep goes on without it
            status = None
        self._waiting = status.waiting_text() if status is not None else None
        if status is None or not status.failures or running:
            self._failing_since = None
            return
        self._failing_since = self._failing_since or now
        if now - self._failing_since >= _launch_failure_s():
            self._line.close()
            raise NodeLaunchError(
                f"{self.label}: the cluster's autoscaler has failed to launch nodes for "
                f"{now - self._failing_since:.0f} s while {pending} trial(s) waited and none "
                f"ran ({'; '.join(status.failures)}). Fix the cluster's node provider (quota, "
                "capacity, instance type), then run_choice='restore' continues the experiment "
                f"(${LAUNCH_FAILURE_ENV} sets how long radas waits)."
            )

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._line.close()

    def _counts(self, trials: list) -> tuple[int, int, int, int, int]:
        """(finished, running, pending, errored, retrying); trials Tune has not created yet
        are pending; retrying: requeued in this fit after a lost node or worker."""
        finished = _count(trials, "TERMINATED")
        running = _count(trials, "RUNNING")
        errored = _count(trials, "ERROR")
        retrying = sum(
            1 for t in trials if t.trial_id in self._retrying and t.status in ("PENDING", "PAUSED")
        )
        pending = _count(trials, "PENDING", "PAUSED") - retrying
        if self._total is not None:
            pending = max(self._total - finished - running - errored - retrying, pending)
        return finished, running, pending, errored, retrying

    def describe(self, trials: list, now: float) -> str:
        """The progress line's text (without the ``[radas]`` prefix)."""
        finished, running, pending, errored, retrying = self._counts(trials)
        total = finished + running + pending + errored + retrying
        text = (
            f"{self.label}: {finished} of {total} trials finished, {running} running, "
            + (f"{retrying} retrying, " if retrying else "")
            + f"{pending} pending, {errored} errored"
        )
        if self._waiting and (pending or retrying):
            text += f"; {self._waiting}"
        if self._best is not None:
            text += f"; best {self.metric}={self._best:.6g}"
        text += f"; {_duration(now - self._start)} elapsed"
        left = self._seconds_left(trials, pending + retrying, now)
        if left is not None:
            text += f", about {_duration(left)} left"
        return text

    def _seconds_left(self, trials: list, pending: int, now: float) -> float | None:
        running = [trial.trial_id for trial in trials if trial.status == "RUNNING"]
        if not self._durations or not (running or pending):
            return None
        mean = sum(self._durations) / len(self._durations)
        ages = [now - self._started_at.get(trial_id, now) for trial_id in running]
        work = pending * mean + sum(max(mean - age, 0.0) for age in ages)
        return work / self._most_running


def _launch_failure_s() -> float:
    try:
        return float(os.environ.get(LAUNCH_FAILURE_ENV, LAUNCH_FAILURE_S))
    except ValueError:
        return LAUNCH_FAILURE_S


def _count(trials: list, *statuses: str) -> int:
    return sum(1 for trial in trials if trial.status in statuses)


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def error_line(trial: Any) -> str:
    """One line for a failed trial: its error, or the failure radas runs it again for. A
    progress line (``print_info``), not a warning: the summary at the end says what to do.

    The line names the trial and the values the search gave it (not its whole config, which
    may hold keys and passwords) and says where the whole traceback is stored: the trial's
    folder in the results root, readable from the client. Tune writes it in the driver's temp
    dir and copies it there only at its next sync (minutes later in a long run), so radas
    stores it at once. The failure is classified as radas's retry classifies it
    (``resources.classify_failure``): a trial that lost its node or worker, or ran out of
    memory while a bigger request fits a node, is not announced as an error (Ray's "The
    actor ... is unavailable" reads as the user's): the line says what happened and that
    radas runs it again; the retry's own line follows when the running trials have ended.
    (A lost trial radas runs again within the fit never gets here: ``recover_line``. One that
    does while radas decides in-fit retries had none left, and is an error.)
    """
    head = f"trial {trial.trial_id}{_searched_values(trial)}"
    path = getattr(trial, "error_file", None)
    if not path:
        return f"{head} errored (see the trial's error.txt)"
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            text = strip_ansi(stream.read())
    except OSError:
        return f"{head} errored (traceback in {path})"
    stored = _store_error(trial, text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "error"
    kind = classify_failure(_pickled_error(trial), text.rpartition(FAILURE_HEADER)[2])
    if kind == "lost" and recovering_in_fit():
        return (
            f"{head} lost its node or worker again (not an error of the trainable); it ran "
            "again as often as radas allows, so it stays errored and run_choice='restore' "
            f"runs it again (details in {stored})"
        )
    if kind == "lost":
        return (
            f"{head} lost its node or worker (not an error of the trainable); radas runs it "
            f"again once the running trials have ended (details in {stored})"
        )
    bigger = _bigger_cpu_per_trial(trial) if kind == "memory" else None
    if bigger is not None:
        return (
            f"{head} ran out of memory ({last}); radas runs it again with "
            f"cpu_per_trial={bigger:g} (more memory each, fewer per node) once the running "
            f"trials have ended (traceback in {stored})"
        )
    return f"{head} errored: {last} (traceback in {stored})"


def recover_line(trial: Any) -> str:
    """One line for a failed trial Tune runs again in the same fit: a lost node or worker
    (radas's retry), or any error within the user's ``FailureConfig(max_failures=...)``."""
    head = f"trial {trial.trial_id}{_searched_values(trial)}"
    text = strip_ansi(error_file_text(trial))
    where = f" (details in {_store_error(trial, text)})" if text else ""
    last_failure = text.rpartition(FAILURE_HEADER)[2]
    if classify_failure(_pickled_error(trial), last_failure) == "lost":
        return (
            f"{head} lost its node or worker (not an error of the trainable); it runs again "
            f"from its latest saved state as soon as a node has room{where}"
        )
    lines = [line.strip() for line in last_failure.splitlines() if line.strip()]
    last = lines[-1] if lines else "error"
    return f"{head} failed ({last}); Ray Tune runs it again (FailureConfig max_failures){where}"


def _searched_values(trial: Any) -> str:
    """`` (lr=0.1, layers=2)``: the values the search gave the trial, capped; empty if none."""
    params = getattr(trial, "evaluated_params", None) or {}
    config = ", ".join(f"{key}={value!r}" for key, value in params.items())
    if len(config) > _CONFIG_CHARS:
        config = config[: _CONFIG_CHARS - 3] + "..."
    return f" ({config})" if config else ""


def _pickled_error(trial: Any) -> BaseException | None:
    """The exception Tune pickled for the failed trial (in the driver's temp dir), or None."""
    path = getattr(trial, "pickled_error_file", None)
    if not path:
        return None
    try:
        with open(path, "rb") as stream:
            return cloudpickle.load(stream)
    except Exception:  # missing, truncated, or a class that cannot be imported here
        return None


def _bigger_cpu_per_trial(trial: Any) -> float | None:
    """The cpu_per_trial radas's memory retry gives the trial (double, capped at the largest
    node), or None when it cannot grow and the trial stays errored."""
    try:
        cpus = trial.placement_group_factory.required_resources.get("CPU", 0.0)
    except AttributeError:
        return None
    largest = cluster_shape.current_largest_node()
    return next_cpu_per_trial(cpus, largest) if cpus > 0 and largest is not None else None


def _store_error(trial: Any, text: str) -> str:
    """Where the trial's traceback ``text`` is stored now (Tune's own copy if storing fails)."""
    try:
        storage = trial.storage
        folder = store.on_filesystem(storage.storage_filesystem, storage.trial_fs_path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.txt").write_text(text)
    except (AttributeError, OSError):
        return str(trial.error_file)
    return str(folder / "error.txt")
