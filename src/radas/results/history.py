"""Every result a trial reported, as one DataFrame for learning-curve analysis
(``load_history``), read from the history's parts (``radas.storage.history_parts``); a trial
whose iterations have a hole (rows lost) is named in a warning.

Experiments run by plain Ray Tune (no parts) are read from Ray's own per-trial
``result.json`` files instead, giving the same columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from radas.core.console import warn
from radas.errors import ExperimentDamagedError
from radas.results import tune_state
from radas.storage import files as _files
from radas.storage import store as _store
from radas.storage.history_parts import (
    KEY_COLUMNS,
    concat_frames,
    finish_in_pandas,
    flatten,
    history_parts,
    is_missing,
    load_stored_history,
)


def load_history(experiment_path: _store.AnyPath, *, exclude: Iterable[str] = ()) -> pd.DataFrame:
    """One row per reported result across all trials, sorted by trial id and iteration.

    ``exclude`` names columns not to load. A compacted history is read and converted
    column by column (the Arrow buffers released as they are converted), so the peak memory
    stays near the size of the frame itself; parts not compacted yet (a fit still running,
    or a crashed driver) are merged and sorted here.

    Damaged or missing history is completed from the trials' stored last results (with a
    warning naming the trials), so every trial with a result has at least its last row.
    """
    exclude = set(exclude) - set(KEY_COLUMNS)
    frame = load_stored_history(experiment_path, exclude)
    if frame is None:  # no parts: plain Ray Tune, its result.json files
        frame = finish_in_pandas(_load_from_ray_result_files(experiment_path), exclude)
    _warn_of_holes(frame, experiment_path)
    return _add_missing_last_results(frame, experiment_path, exclude)


def _warn_of_holes(frame: pd.DataFrame, experiment_path: _store.AnyPath) -> None:
    """Warn, naming the trials, when a trial's iterations in the history (sorted by trial and
    iteration) have a hole: Tune numbers a trial's reports 1, 2, 3..., and continues the
    numbers of the state it restores, so a missing number is a report lost. A gap just before
    a restore (``iterations_since_restore`` 1) is not counted: a trial can take another
    trial's state there (PBT), skipping numbers."""
    columns = ("training_iteration", "iterations_since_restore")
    if frame.empty or not set(columns) <= set(frame.columns):
        return
    iterations, since_restore = (
        pd.to_numeric(frame[column], errors="coerce").to_numpy(float) for column in columns
    )
    known = ~np.isnan(iterations)
    iterations, trial_ids = iterations[known], frame["trial_id"].to_numpy()[known]
    if not len(iterations):
        return
    first = np.ones(len(iterations), dtype=bool)  # a trial's first row
    first[1:] = trial_ids[1:] != trial_ids[:-1]
    lost_before = iterations - np.where(first, 0, np.r_[0, iterations[:-1]]) - 1
    holes = (lost_before > 0) & (since_restore[known] != 1)
    if not holes.any():
        return
    lacking = pd.Series(lost_before[holes]).groupby(trial_ids[holes], sort=True).sum().astype(int)
    names = ", ".join(f"{trial} ({count})" for trial, count in list(lacking.items())[:5]) + (
        ", ..." if len(lacking) > 5 else ""
    )
    warn(
        f"The history of {experiment_path} lacks {lacking.sum()} earlier result(s) of "
        f"{len(lacking)} trial(s) ({names}): those reports are lost (history files removed, "
        "replaced or damaged, or a driver killed under an earlier radas); the rows shown "
        "are intact.",
        stacklevel=3,
    )


def _add_missing_last_results(
    frame: pd.DataFrame, experiment_path: _store.AnyPath, exclude: set[str]
) -> pd.DataFrame:
    """Add each ended trial's stored last result where the history lacks it (damaged or
    deleted history files), with a warning."""
    try:
        trials = tune_state.load_trial_states(experiment_path)
    except ExperimentDamagedError:
        return frame
    newest: dict[str, Any] = {}
    if not frame.empty:
        newest = frame.groupby("trial_id")["training_iteration"].max().to_dict()
    missing = [  # ended trials only: a running one's last rows may still be buffered
        trial
        for trial in trials
        if trial.status in tune_state.TERMINAL_STATUSES
        and trial.last_result.get("training_iteration") is not None
        and not trial.last_result["training_iteration"] <= newest.get(trial.trial_id, -1)
    ]
    if not missing:
        return frame
    names = ", ".join(trial.trial_id for trial in missing[:5]) + (
        ", ..." if len(missing) > 5 else ""
    )
    warn(
        f"The history of {experiment_path} lacks the last result of {len(missing)} trial(s) "
        f"({names}): their last result is taken from the experiment state; earlier results "
        "of those trials that are not in the history are lost.",
        stacklevel=3,
    )
    rows = []
    for trial in missing:
        row = flatten(trial.last_result)
        row["trial_id"] = trial.trial_id
        rows.append(row)
    return finish_in_pandas(concat_frames([frame, pd.DataFrame(rows)]), exclude)


def write_ray_result_files(experiment_path: _store.AnyPath) -> int:
    """Write Ray's per-trial ``result.json`` (JSON lines) from radas's history, for trials
    without ``progress.csv`` whose ``result.json`` is missing or behind their last result
    (written while they ran, or before a restore continued them); returns how many files
    were written."""
    path = _store.location(experiment_path)
    missing = {
        trial.trial_id: path / trial.trial_dir_name
        for trial in tune_state.load_trial_states(path)
        if trial.last_result
        and not (path / trial.trial_dir_name / "progress.csv").exists()
        and _last_iteration(path / trial.trial_dir_name / "result.json")
        != trial.last_result.get("training_iteration")
    }
    if not missing or not history_parts(path):
        return 0
    history = load_history(path)
    written = 0
    for trial_id, rows in history.groupby("trial_id", sort=False):
        trial_dir = missing.get(trial_id)
        if trial_dir is None:
            continue
        trial_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for record in rows.to_dict("records"):
            present = {key: value for key, value in record.items() if not is_missing(value)}
            lines.append(json.dumps(present, default=tune_state.json_default))
        _files.write_atomic(trial_dir / "result.json", "\n".join(lines) + "\n")
        written += 1
    return written


def _last_iteration(result_file: _store.Location) -> Any:
    """The ``training_iteration`` of a ``result.json``'s last line (None: no file, or none)."""
    try:
        lines = result_file.read_text(errors="replace").splitlines()
        return json.loads(lines[-1]).get("training_iteration") if lines else None
    except (OSError, ValueError, AttributeError):
        return None


def _load_from_ray_result_files(experiment_path: _store.AnyPath) -> pd.DataFrame:
    rows = []
    for trial in tune_state.load_trial_states(experiment_path):
        trial_dir = _store.location(experiment_path) / trial.trial_dir_name
        for result in tune_state.read_trial_result_file(trial_dir):
            row = flatten(result)
            row["trial_id"] = trial.trial_id
            rows.append(row)
    return pd.DataFrame(rows)
