"""A compact progress line instead of Ray Tune's tables.

``[radas] lr-sweep: 12 of 30 trials finished, 2 running, 15 pending, 1 errored; best
loss=0.0312; 0:03:14 elapsed, about 0:05:10 left``
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

from ray.tune import Callback

from radas import _store
from radas.console import LiveLine, print_warning, strip_ansi

HEARTBEAT_S = 30.0
MIN_INTERVAL_S = 5.0
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
    A trial that errors is reported at once, in one line (see ``error_line``). The final
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
        self._last_counts: tuple[int, ...] | None = None
        self._started_at: dict[str, float] = {}
        self._durations: list[float] = []
        self._most_running = 1
        self._line = LiveLine()

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

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
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
        print_warning(f"{self.label}: {error_line(trial)}")

    def _ended(self, trial: Any) -> None:
        started = self._started_at.pop(trial.trial_id, None)
        if started is not None:
            self._durations.append(time.monotonic() - started)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        counts = self._counts(trials)
        self._most_running = max(self._most_running, counts[1])
        since = now - self._last_line
        if since >= self.heartbeat_s or (
            counts != self._last_counts and since >= self.min_interval_s
        ):
            self._last_line, self._last_counts = now, counts
            self._line.show(self.describe(trials, now))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._line.close()

    def _counts(self, trials: list) -> tuple[int, int, int, int]:
        """(finished, running, pending, errored); trials Tune has not created yet are pending."""
        finished = _count(trials, "TERMINATED")
        running = _count(trials, "RUNNING")
        errored = _count(trials, "ERROR")
        pending = _count(trials, "PENDING", "PAUSED")
        if self._total is not None:
            pending = max(self._total - finished - running - errored, pending)
        return finished, running, pending, errored

    def describe(self, trials: list, now: float) -> str:
        """The progress line's text (without the ``[radas]`` prefix)."""
        finished, running, pending, errored = self._counts(trials)
        total = finished + running + pending + errored
        text = (
            f"{self.label}: {finished} of {total} trials finished, {running} running, "
            f"{pending} pending, {errored} errored"
        )
        if self._best is not None:
            text += f"; best {self.metric}={self._best:.6g}"
        text += f"; {_duration(now - self._start)} elapsed"
        left = self._seconds_left(trials, pending, now)
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


def _count(trials: list, *statuses: str) -> int:
    return sum(1 for trial in trials if trial.status in statuses)


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def error_line(trial: Any) -> str:
    """One line for an errored trial: its id, the values the search gave it (not its whole
    config, which may hold keys and passwords), the last line of its error and where the
    whole traceback is stored: the trial's folder in the results root, readable from the
    client. Tune writes it in the driver's temp dir and copies it there only at its next sync
    (minutes later in a long run), so radas stores it at once."""
    params = getattr(trial, "evaluated_params", None) or {}
    config = ", ".join(f"{key}={value!r}" for key, value in params.items())
    if len(config) > _CONFIG_CHARS:
        config = config[: _CONFIG_CHARS - 3] + "..."
    head = f"trial {trial.trial_id}{f' ({config})' if config else ''} errored"
    path = getattr(trial, "error_file", None)
    if not path:
        return f"{head} (see the trial's error.txt)"
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            text = strip_ansi(stream.read())
    except OSError:
        return f"{head} (traceback in {path})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{head}: {lines[-1] if lines else 'error'} (traceback in {_store_error(trial, text)})"


def _store_error(trial: Any, text: str) -> str:
    """Where the trial's traceback ``text`` is stored now (Tune's own copy if storing fails)."""
    try:
        storage = trial.storage
        folder = _store.on_filesystem(storage.storage_filesystem, storage.trial_fs_path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "error.txt").write_text(text)
    except (AttributeError, OSError):
        return str(trial.error_file)
    return str(folder / "error.txt")
