"""``TrialRecords``: the Tune callback that keeps radas's own record of every trial
(``radas_trials.json``), the one source ``radas.results.tune_state`` trusts over Tune's lagging
snapshot.

Pickled into each experiment's ``tuner.pkl`` (as part of the run_config), so its class must
stay importable where it is; ``radas.tune.sweep`` imports it too, which keeps the name that older
``tuner.pkl`` files hold (``radas.tune.sweep.TrialRecords``) loading.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from radas.errors import StorageFullError
from radas.results import state_repair, tune_state
from radas.storage import store
from radas.tune.history import HistoryRecorder


class TrialRecords(Callback):
    """radas's own record of every trial (``radas_trials.json``, kept across restores): the
    resources it last ran with, its config and folder, and, once it ended, its status and
    last result.

    A trial's end is made durable soon after Tune reports it (at the end of that Tune step,
    at most every ``write_interval_s`` seconds), the history being flushed first, so a killed
    run never loses a trial recorded as ended: ``tune_state`` prefers these records to Tune's
    snapshot, which lags behind (it may still say RUNNING, or PENDING, for a trial that
    ended). Written atomically. ``radas.Tuner.get_dataframe()`` shows the resources.
    """

    FILE = tune_state.TRIAL_RECORDS_FILE

    def __init__(self, history: HistoryRecorder | None = None, write_interval_s: float = 1.0):
        self.history = history
        self.write_interval_s = write_interval_s
        self._reset()

    def _reset(self) -> None:
        self._records: dict[str, dict[str, Any]] | None = None
        self._directory: store.Location | None = None
        self._ending: dict[str, tuple[Any, str]] = {}
        self._tune_state_seen: Any = None
        self._unwritten = False
        self._last_write = 0.0
        self._storage_error: StorageFullError | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"history": self.history, "write_interval_s": self.write_interval_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.history = state.get("history")  # None in tuner.pkl files of older radas
        self.write_interval_s = state.get("write_interval_s", 1.0)
        self._reset()

    def _record(self, trial: Any) -> dict[str, Any]:
        if self._records is None:
            storage = trial.storage
            self._directory = store.on_filesystem(
                storage.storage_filesystem, storage.experiment_fs_path
            )
            self._records = tune_state.read_trial_records(self._directory)
            format_ = {"version": tune_state.RECORDS_FORMAT}
            self._records[tune_state.RECORDS_FORMAT_KEY] = format_
        self._unwritten = True
        return self._records.setdefault(trial.trial_id, {})

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if self._records is None and trials:  # the first step of this fit
            # Trials that start this fit ended (restore kept them): their end is on record.
            for trial in trials:
                if trial.status in tune_state.TERMINAL_STATUSES:
                    record = self._record(trial)
                    if not tune_state.ended_in_records(record):
                        self._record_end(trial, trial.status)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._record(trial)
        record["resources"] = dict(trial.placement_group_factory.required_resources)
        record["config"] = trial.config
        record["trial_dir_name"] = trial.storage.trial_dir_name
        record["status"] = "RUNNING"
        record.pop("last_result", None)  # a requeued trial runs again

    # An end counts once the Tune step that reported it is over: when an experiment is
    # interrupted, Tune stops the running trials after its last step and reports them
    # complete too (those did not finish).
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ending[trial.trial_id] = (trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ending[trial.trial_id] = (trial, "ERROR")

    def _record_end(self, trial: Any, status: str) -> None:
        record = self._record(trial)
        record.update(status=status, last_result=trial.last_result, config=trial.config)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for trial, status in self._ending.values():
            self._record_end(trial, status)
        self._ending.clear()
        if self._unwritten and time.monotonic() - self._last_write >= self.write_interval_s:
            self._write()

    def _write(self) -> None:
        """History first (the ended trials' rows), then the records; StorageFullError on a
        full disk, with the records as they were (consistent with the history)."""
        try:
            if self.history is not None:
                self.history.flush()
            if self._records is not None and self._directory is not None:
                tune_state.write_trial_records(self._directory, self._records)
                seen = state_repair.back_up_tune_state(self._directory, self._tune_state_seen)
                self._tune_state_seen = seen
        except StorageFullError as err:
            self._storage_error = self._storage_error or err
            raise
        self._unwritten = False
        self._last_write = time.monotonic()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Record the statuses Tune holds in memory (its stored state can lag behind for a
        trial whose actor died), then raise a full disk met by any radas writer."""
        for trial in trials:  # an end is on record only from on_step_end (see above)
            self._record(trial)["status"] = trial.status
        # The first full disk met (by the history's flush or by this) is what the run ends with.
        error = self.history.storage_error if self.history is not None else None
        error = error or self._storage_error
        if error is None:
            try:
                self._write()
            except StorageFullError as err:
                error = err
        if error is not None:
            raise error

    @classmethod
    def read(cls, experiment_path: str) -> dict[str, dict[str, Any]]:
        return tune_state.read_trial_records(experiment_path)
