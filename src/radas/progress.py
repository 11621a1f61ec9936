"""A compact progress line instead of Ray Tune's tables.

``[radas] lr-sweep: 12/30 trials done (2 running, 1 errored), best loss=0.0312 [0:00:14]``
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

from ray.tune import Callback

from radas import _store
from radas.console import print_info, print_warning


class ProgressLine(Callback):
    """Prints at most one progress line every ``interval_s`` seconds, when something changed.

    A trial that errors is reported at once with the last line of its traceback. The final
    summary comes from radas after the fit, from the stored state (after an interruption,
    Tune's in-memory statuses no longer say which trials really finished).
    """

    def __init__(
        self,
        label: str,
        metric: str | None = None,
        mode: str | None = None,
        interval_s: float = 5.0,
    ) -> None:
        self.label = label
        self.metric = metric
        self.mode = mode
        self.interval_s = interval_s
        self._reset()

    def _reset(self) -> None:
        self._start = time.monotonic()
        self._last_line = -math.inf
        self._total: int | None = None
        self._best: float | None = None
        self._last_state: tuple[int, int] = (0, 0)

    def __getstate__(self) -> dict[str, Any]:
        return {k: self.__dict__[k] for k in ("label", "metric", "mode", "interval_s")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
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

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        if self.metric is None or self.metric not in result:
            return
        value = result[self.metric]
        if not isinstance(value, (int, float)) or math.isnan(value):
            return
        if self._best is None or (value < self._best if self.mode == "min" else value > self._best):
            self._best = float(value)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._maybe_print(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print_warning(f"{self.label}: trial {trial.trial_id} errored: {_error_line(trial)}")
        self._maybe_print(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._maybe_print(trials, only_if_due=True)

    def _maybe_print(self, trials: list, only_if_due: bool = False) -> None:
        due = time.monotonic() - self._last_line >= self.interval_s
        if due and not (only_if_due and _state(trials) == self._last_state):
            self._print(trials)

    def _print(self, trials: list) -> None:
        self._last_line = time.monotonic()
        self._last_state = _state(trials)
        done = self._last_state[0]
        total = max(self._total or 0, len(trials))
        parts = [f"{self.label}: {done}/{total or '?'} trials done"]
        details = [f"{_count(trials, 'RUNNING')} running"]
        errored = _count(trials, "ERROR")
        if errored:
            details.append(f"{errored} errored")
        parts.append(f" ({', '.join(details)})")
        if self._best is not None:
            parts.append(f", best {self.metric}={self._best:.6g}")
        elapsed = timedelta(seconds=round(time.monotonic() - self._start))
        parts.append(f" [{elapsed}]")
        print_info("".join(parts))


def _state(trials: list) -> tuple[int, int]:
    """(done, running): a line is only worth printing when this changed."""
    return _count(trials, "TERMINATED", "ERROR"), _count(trials, "RUNNING")


def _count(trials: list, *statuses: str) -> int:
    return sum(1 for trial in trials if trial.status in statuses)


def _error_line(trial: Any) -> str:
    """The error's last line, and where its traceback is stored (the trial's folder in the
    results root, readable from the client; Tune's own copy is in the driver's temp dir)."""
    path = getattr(trial, "error_file", None)
    if not path:
        return "see the trial's error.txt"
    stored = _stored_error_file(trial) or path
    try:
        with open(path) as stream:
            lines = [line.strip() for line in stream if line.strip()]
    except OSError:
        return f"traceback in {stored}"
    return f"{lines[-1] if lines else 'error'} (traceback in {stored})"


def _stored_error_file(trial: Any) -> str | None:
    try:
        storage = trial.storage
        folder = _store.on_filesystem(storage.storage_filesystem, storage.trial_fs_path)
    except AttributeError:
        return None
    return str(folder / "error.txt")
