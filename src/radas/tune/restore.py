"""Restoring a stored sweep: the Tuner Tune restores, after radas repaired what it reads.

Before ``tune.Tuner.restore``, Tune's state is made to agree with radas's trial records
(``results.state_repair``), a damaged ``tuner.pkl`` is written again from this call's
arguments, and a trial whose latest saved state is gone continues from its newest complete
one (or from scratch). A trainable renamed since the run is refused the way radas says it.
"""

from __future__ import annotations

import math
import pickle
import re
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from radas.core.console import warn
from radas.core.spec import SweepSpec
from radas.errors import InvalidArgumentError
from radas.resources import NodeCapacity
from radas.results import state_repair
from radas.results.history import load_history
from radas.storage import files as _files
from radas.storage import store as _store
from radas.tune.configuration import build_tuner, share_grid_values, trainable_with_resources


def restore_tuner(
    spec: SweepSpec, cpu_per_trial: float, capacity: NodeCapacity, *, resume_errored: bool
) -> tune.Tuner:
    """The experiment of ``spec`` restored by Tune, once the repairs above are made: its
    pending trials sized for ``cpu_per_trial``, its errored ones run again when
    ``resume_errored``."""
    # Trials radas recorded as ended stay ended, even where Tune's last snapshot lags.
    state_repair.reconcile_with_records(spec.experiment_path)
    _rebuild_damaged_tuner_file(spec, capacity)
    _continue_trials_whose_state_is_gone(spec)
    # The trainable's resources apply to every trial that is still pending.
    experiment_path, filesystem = _store.arrow_source(_store.location(spec.experiment_path))
    try:
        return tune.Tuner.restore(
            experiment_path,
            storage_filesystem=filesystem,
            trainable=trainable_with_resources(spec, cpu_per_trial, capacity),
            param_space=share_grid_values(spec.param_space),
            resume_unfinished=True,
            resume_errored=resume_errored,
        )
    except ValueError as err:
        if "Invalid `trainable`" not in str(err):
            raise
        raise _renamed_trainable_error(spec, err) from err


def _renamed_trainable_error(spec: SweepSpec, err: ValueError) -> InvalidArgumentError:
    """Tune's refusal of a trainable whose name is not the stored one, said radas's way."""
    stored = re.search(r"expected '([^']*)'", str(err))
    was = f" {stored.group(1)!r}" if stored else ""
    now = getattr(spec.trainable, "__name__", type(spec.trainable).__name__)
    return InvalidArgumentError(
        f"{spec.experiment_name}: restore needs the trainable the experiment was started "
        f"with, named{was or ' as it was'}; this one is named {now!r} (Tune finds a stored "
        f"experiment's trainable by its name). Rename it back{was and ' to' + was} to "
        "continue the stored trials, or start afresh with run_choice='run' (the stored "
        "results are moved to .archive/)."
    )


def _continue_trials_whose_state_is_gone(spec: SweepSpec) -> None:
    """An unfinished trial whose latest saved state, as Tune's newest snapshot names it, is
    gone failed on every restore (Tune: "Could not recover from checkpoint as it does not
    exist on storage anymore"). Tune deletes all but the latest ``num_to_keep`` states of a
    trial before its next snapshot is stored, so a killed run can leave a snapshot naming one
    it deleted (the newer ones are there); a state can also be deleted by hand or lost.

    The trial continues from the newest state that is complete (its folder holds files, and
    the history has the report it came with: its iteration count continues from there, so
    each report keeps its iteration), else from scratch; radas says which."""
    path = _store.location(spec.experiment_path)
    damaged = state_repair.saved_states_gone(path)
    if not damaged:
        return
    history = load_history(path) if any(d.latest_gone for d in damaged.values()) else None
    if history is not None and "checkpoint_dir_name" not in history.columns:
        history = history.assign(checkpoint_dir_name=None)
    chosen: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for trial_id, states in damaged.items():
        if not states.latest_gone or history is None:
            continue  # the older ones Tune keeps are dropped from its list (they are gone)
        reports = history[history["trial_id"] == trial_id].dropna(subset=["checkpoint_dir_name"])
        by_folder = {row["checkpoint_dir_name"]: row for _, row in reports.iterrows()}
        folders = sorted(
            (f for f in (path / states.trial_dir).glob("checkpoint_*") if f.is_dir()),
            key=lambda folder: folder.name,
            reverse=True,
        )
        complete = next((f for f in folders if f.name in by_folder and any(f.iterdir())), None)
        name = complete.name if complete is not None else None
        chosen[trial_id] = (name, _report_metrics(by_folder[name]) if name else {})
        then = (
            f"it continues from the newest complete one ({name})"
            if name
            else "it restarts from scratch (load_state() returns None); its earlier reports "
            "are replaced as it runs again"
        )
        warn(
            f"{spec.experiment_name}: trial {trial_id}'s latest saved state "
            f"{path / states.trial_dir / states.latest} is missing (Tune deleted it after its "
            f"last stored snapshot, or it was deleted or lost): {then}."
        )
    state_repair.continue_from(path, damaged, chosen)


def _report_metrics(row: pd.Series) -> dict[str, Any]:
    """A history row as the metrics Tune restores a trial with (top-level values only)."""
    metrics = {}
    for name, value in row.items():
        if "/" in name or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        metrics[name] = value.item() if isinstance(value, np.generic) else value
    return metrics


def _rebuild_damaged_tuner_file(spec: SweepSpec, capacity: NodeCapacity) -> None:
    """Tune keeps the run's settings in ``tuner.pkl``; when it is missing or damaged, write
    it again from this call's arguments (trials and results are elsewhere)."""
    tuner_file = _store.location(spec.experiment_path) / "tuner.pkl"
    try:
        pickle.loads(tuner_file.read_bytes())
        return
    except Exception as err:  # missing, emptied, truncated: unpickling fails in many ways
        problem = f"{type(err).__name__}: {str(err)[:120]}"
    warn(
        f"{spec.experiment_name}: {tuner_file} is damaged ({problem}); it is written again "
        "from this call's arguments (tuner_init_kwargs), the trials and their results are "
        "kept."
    )
    with _files.no_space_as_error(tuner_file, None):
        build_tuner(spec, capacity)
