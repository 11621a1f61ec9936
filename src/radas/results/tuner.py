"""``radas.Tuner``: a stored experiment's results as Ray objects and pandas DataFrames."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from radas.core.console import print_info, warn
from radas.errors import ExperimentDamagedError, ExperimentNotFoundError, InvalidArgumentError
from radas.ray_compat.worker_logs import quiet_ray_logs
from radas.results import tune_state
from radas.results.experiment_info import read_experiment_info
from radas.results.history import load_history, write_ray_result_files
from radas.storage import locks
from radas.storage import store as _store
from radas.storage.history_parts import flatten
from radas.tune.trial import OUTPUT_FILE

# Columns Ray adds to every result for its own bookkeeping; the brief views drop them.
BOOKKEEPING_COLUMNS = frozenset(
    {
        "timestamp",
        "date",
        "time_this_iter_s",
        "time_total_s",
        "time_since_restore",
        "timesteps_since_restore",
        "iterations_since_restore",
        "timesteps_total",
        "episodes_total",
        "pid",
        "hostname",
        "node_ip",
        "done",
        "checkpoint_dir_name",
        "experiment_tag",
        "experiment_id",
        "logdir",
        "should_checkpoint",
    }
)

# While an experiment runs, Tune rewrites its state file in place every few seconds.
STATE_READ_ATTEMPTS = 5


class Tuner:
    """Results of one stored experiment, on a local path or in an object store (read from
    there directly: ``radas.Tuner("s3://lab/ray-results/alice/_home_alice_proj_lr_sweep")``).

    An experiment that is still running (``is_running``) can be read too: each read returns
    what was reported so far and prints that it is partial ("N of M trials finished").

    >>> path = "~/.radas/ray-results/alice/_home_alice_proj_lr_sweep"
    >>> radas.Tuner(path).get_brief_dataframe()[["config/lr", "loss"]]  # doctest: +SKIP
    """

    def __init__(
        self,
        experiment_path: str | os.PathLike[str],
        *,
        job_running: Callable[[], bool] | None = None,
    ) -> None:
        """``job_running`` tells whether the experiment's cluster job runs now (asked at each
        read, besides the experiment's lock): ``run_experiment`` passes it for clusters, where
        a run whose results are in an object store holds its lock out of this machine's
        sight."""
        if not isinstance(experiment_path, (str, os.PathLike)):
            raise InvalidArgumentError(
                f"radas.Tuner() takes the path (or URI) of a stored experiment, got "
                f"{type(experiment_path).__name__}: for example "
                "radas.Tuner('~/.radas/ray-results/alice/_home_alice_proj_lr_sweep'); "
                "`radas ls` lists the paths."
            )
        # the S3 endpoint it is read through (a cluster's own: ``_store.endpoint_scope``)
        self._endpoints = _store.scoped_endpoints()
        self.experiment_path = str(_store.location(os.path.expanduser(experiment_path)))
        self._job_running = job_running
        with self._reading():
            stored = tune_state.has_stored_experiment(self.experiment_path)
        if not stored:
            raise ExperimentNotFoundError(
                f"No stored experiment at {self.experiment_path}: run it first "
                "(run_choice='run'), or check user_name, experiment_name and the directory "
                "you run from (the full name includes the working directory)."
            )
        self._results: Any = None
        self._said_partial = ""

    @property
    def is_running(self) -> bool:
        """Whether a run or restore of the experiment runs now: what is read from it then is
        partial. Its lock says (a run holds it on the machine that runs the sweep, in the
        results root when that is a path); for results in an object store written by a
        cluster job, a Tuner from ``run_experiment`` also asks the cluster."""
        if locks.is_held(self.experiment_path):
            return True
        return self._job_running is not None and self._job_running()

    def _say_if_partial(self, running: bool, trials: list[tune_state.TrialState]) -> None:
        """One line per distinct progress, so a notebook re-reading every minute says how
        far it is without repeating itself."""
        if not running:
            return
        finished = sum(trial.status == "TERMINATED" for trial in trials)
        errored = sum(trial.status == "ERROR" for trial in trials)
        info = read_experiment_info(self.experiment_path) or {}
        name = info.get("experiment_name") or _store.location(self.experiment_path).name
        line = (
            f"{name} is still running: partial results, {finished} of {len(trials)} trials "
            f"finished{f', {errored} errored' if errored else ''}"
        )
        if line != self._said_partial:
            print_info(line)
            self._said_partial = line

    def __repr__(self) -> str:
        return f"radas.Tuner({self.experiment_path!r})"

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Reads through the endpoint the Tuner was made with; an object store that stops
        answering is a StorageError saying so."""
        with (
            _store.endpoint_scope(self._endpoints),
            _store.unreachable_as_error(
                self.experiment_path,
                during="while radas read the experiment",
                then="read it again (nothing needs to run again)",
            ),
        ):
            yield

    def get_results(self) -> Any:
        """Ray's own ``ResultGrid`` of the experiment (loaded once it has ended; read again
        on each call while it runs), with the experiment's ``metric`` and ``mode`` as Ray's
        restored Tuner has them: ``get_results().get_best_result()`` needs no arguments.

        radas runs Tune without its per-trial loggers and keeps every result in its own
        history; each trial's ``result.json`` is written from it where missing or behind,
        so ``Result.metrics_dataframe`` and everything else in the ResultGrid work as usual.
        """
        if self._results is not None:
            return self._results
        from ray.tune import ExperimentAnalysis, ResultGrid

        with self._reading():
            running = self.is_running
            found = tune_state.newest_state(self.experiment_path, running=running)
            if found is None:  # damaged ones: warned
                raise ExperimentDamagedError(
                    f"Ray's ResultGrid needs Tune's experiment state, and {self.experiment_path} "
                    "has no readable experiment_state-*.json (see the warning above). "
                    "get_dataframe() and get_history_dataframe() still work: they rebuild "
                    "what they can from radas's own records and history."
                )
            try:
                write_ray_result_files(self.experiment_path)
            except OSError as err:  # a read-only folder: Ray reads what is there
                if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                warn(
                    f"{self.experiment_path} is read-only here ({err.strerror}): the ResultGrid "
                    "is read without the result.json files radas writes from its history, so "
                    "Result.metrics_dataframe may be missing or short; get_history_dataframe() "
                    "has every result."
                )
            state_file, filesystem = _store.arrow_source(found[0])
            metric, mode = tune_state.stored_metric_and_mode(self.experiment_path)
            for attempt in range(STATE_READ_ATTEMPTS):
                try:
                    # Ray's "Failed to fetch metrics" for trials that reported nothing yet
                    # looks like lost data: dropped (radas's history holds every result)
                    with quiet_ray_logs(show_ray_logs=False):
                        analysis = ExperimentAnalysis(
                            state_file,
                            storage_filesystem=filesystem,
                            default_metric=metric,
                            default_mode=mode,
                        )
                    break
                except ValueError:  # JSON cut short: Tune is copying a new snapshot in
                    if not running or attempt == STATE_READ_ATTEMPTS - 1:
                        raise
                    time.sleep(0.2)
            results = ResultGrid(analysis)
            self._say_if_partial(
                running, tune_state.load_trial_states(self.experiment_path, running=running)
            )
        if not running:
            self._results = results
        return results

    def get_dataframe(self) -> pd.DataFrame:
        """One row per trial: its last reported result, ``config/*``, ``status`` and ``error``.

        Trials that errored are included, with the last line of their traceback in ``error``
        (None for trials that did not error). ``cpu_per_trial`` (and ``gpu_per_trial`` on GPU
        clusters) are the resources each trial last ran with.
        """
        with self._reading():
            rows = []
            running = self.is_running  # first: a run that ends meanwhile reads as partial
            records = tune_state.read_trial_records(self.experiment_path)
            trials = tune_state.load_trial_states(self.experiment_path, running=running)
            for trial in trials:
                result = {k: v for k, v in trial.last_result.items() if k != "config"}
                row = flatten(result)
                row["trial_id"] = trial.trial_id
                row.update(flatten(trial.config, prefix="config/"))
                row["status"] = trial.status
                row["error"] = tune_state.error_summary(self.experiment_path, trial)
                resources = records.get(trial.trial_id, {}).get("resources", {})
                if resources:  # what the trial last ran with (retries may have given it more)
                    row["cpu_per_trial"] = resources.get("CPU")
                    if resources.get("GPU"):
                        row["gpu_per_trial"] = resources["GPU"]
                rows.append(row)
        self._say_if_partial(running, trials)
        frame = pd.DataFrame(rows)
        if "training_iteration" not in frame.columns and not frame.empty:
            frame["training_iteration"] = pd.NA
        return _identity_first(frame)

    def get_traceback(self, trial_id: str) -> str:
        """The whole traceback a failed trial left ("" if it left none), read from where the
        experiment is stored (also an object store, from any machine)."""
        with self._reading():
            trials = tune_state.load_trial_states(self.experiment_path)
            for trial in trials:
                if trial.trial_id == trial_id:
                    return tune_state.error_text(self.experiment_path, trial)
        known = ", ".join(trial.trial_id for trial in trials[:10])
        raise InvalidArgumentError(
            f"No trial {trial_id!r} in {self.experiment_path}; its trials are {known}"
            f"{', ...' if len(trials) > 10 else ''} (the trial_id column of get_dataframe())."
        )

    def get_trial_output(self, trial_id: str | None = None) -> dict[str, str]:
        """What each trial printed (stdout and stderr, in order), by trial id, as kept in its
        folder while it ran (``radas_output.log``; every run of a trial, the later after a
        ``--- this trial runs again ---`` line). Trials that printed nothing, or whose
        output was not kept (a class trainable, an experiment run before radas kept it),
        are left out. ``trial_id``: that trial only."""
        with self._reading():
            trials = tune_state.load_trial_states(self.experiment_path)
            if trial_id is not None:
                chosen = [trial for trial in trials if trial.trial_id == trial_id]
                if not chosen:
                    known = ", ".join(trial.trial_id for trial in trials[:10])
                    raise InvalidArgumentError(
                        f"No trial {trial_id!r} in {self.experiment_path}; its trials are "
                        f"{known}{', ...' if len(trials) > 10 else ''}."
                    )
                trials = chosen
            folder = _store.location(self.experiment_path)
            output = {}
            for trial in trials:
                kept = folder / trial.trial_dir_name / OUTPUT_FILE
                if trial.trial_dir_name and kept.exists():
                    output[trial.trial_id] = kept.read_text(errors="replace")
            return output

    def get_brief_dataframe(self) -> pd.DataFrame:
        """``get_dataframe()`` without Ray's bookkeeping columns (timestamps, pid, host...)."""
        return brief(self.get_dataframe())

    def get_history_dataframe(self, *, brief_columns: bool = True) -> pd.DataFrame:
        """One row per reported result of every trial: the learning-curve view.

        Columns: ``trial_id``, ``training_iteration``, the reported metrics and ``config/*``
        (plus Ray's bookkeeping columns with ``brief_columns=False``).
        """
        with self._reading():
            running = self.is_running
            history = load_history(
                self.experiment_path, exclude=BOOKKEEPING_COLUMNS if brief_columns else ()
            )
            if running:
                trials = tune_state.load_trial_states(self.experiment_path, running=True)
                self._say_if_partial(running, trials)
        return history


def brief(frame: pd.DataFrame) -> pd.DataFrame:
    keep = [column for column in frame.columns if column not in BOOKKEEPING_COLUMNS]
    return frame[keep]


def _identity_first(frame: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in ("trial_id", "training_iteration") if c in frame.columns]
    return frame[[*first, *(c for c in frame.columns if c not in first)]]
