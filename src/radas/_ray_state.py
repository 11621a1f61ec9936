"""Reading Ray Tune's stored experiment state (``experiment_state-*.json``) without Ray.

This is the one module that knows Ray's on-disk layout of an experiment directory. Reading
the JSON directly is much faster than ``ExperimentAnalysis`` (which also loads every trial's
progress file) and needs no running Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TERMINAL_STATUSES = ("TERMINATED", "ERROR")


@dataclass
class TrialState:
    """One trial as Ray stored it in the experiment checkpoint."""

    trial_id: str
    status: str
    config: dict[str, Any]
    last_result: dict[str, Any]
    trial_dir_name: str
    error_filename: str | None = None
    num_failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status == "TERMINATED"


def state_files(experiment_path: str | Path) -> list[Path]:
    """Ray's experiment state files, oldest first (the name carries a sortable timestamp)."""
    path = Path(experiment_path)
    if not path.is_dir():
        return []
    return sorted(path.glob("experiment_state-*.json"))


def has_stored_experiment(experiment_path: str | Path) -> bool:
    return bool(state_files(experiment_path))


def load_trial_states(experiment_path: str | Path) -> list[TrialState]:
    """Every trial of the newest experiment state, in trial-id order."""
    files = state_files(experiment_path)
    if not files:
        return []
    data = json.loads(files[-1].read_text())
    trials = []
    for json_state, json_metadata in data["trial_data"]:
        state = json.loads(json_state)
        metadata = json.loads(json_metadata)
        trials.append(
            TrialState(
                trial_id=state["trial_id"],
                status=state["status"],
                config=state.get("config") or {},
                last_result=metadata.get("last_result") or {},
                trial_dir_name=state.get("relative_logdir") or "",
                error_filename=metadata.get("error_filename"),
                num_failures=int(metadata.get("num_failures") or 0),
            )
        )
    trials.sort(key=lambda trial: trial.trial_id)
    return trials


def trial_error(experiment_path: str | Path, trial: TrialState) -> BaseException | None:
    """The exception a failed trial died of, as Ray pickled it (None if unavailable)."""
    # Looked up by name: the stored metadata can lag behind for a trial whose actor died.
    pickled = Path(experiment_path) / trial.trial_dir_name / "error.pkl"
    if not pickled.exists():
        return None
    from ray import cloudpickle

    try:
        return cloudpickle.loads(pickled.read_bytes())
    except Exception:  # an exception class that cannot be imported here
        return None


def error_text(experiment_path: str | Path, trial: TrialState) -> str:
    """The whole traceback text a failed trial left (empty if none)."""
    name = trial.error_filename or "error.txt"
    try:
        return (Path(experiment_path) / trial.trial_dir_name / name).read_text()
    except OSError:
        return ""


def requeue_trials(experiment_path: str | Path, trial_ids: set[str]) -> None:
    """Mark failed trials PENDING in the newest state, so a restore runs them again.

    (Tune's own ``resume_errored`` restarts every errored trial; radas chooses which.)
    """
    newest = state_files(experiment_path)[-1]
    data = json.loads(newest.read_text())
    for entry in data["trial_data"]:
        state = json.loads(entry[0])
        if state["trial_id"] in trial_ids:
            state["status"] = "PENDING"
            entry[0] = json.dumps(state, indent=2)
    temporary = newest.with_name(f".{newest.name}.tmp")
    temporary.write_text(json.dumps(data, indent=2))
    temporary.replace(newest)


def error_summary(experiment_path: str | Path, trial: TrialState) -> str | None:
    """The last line of a failed trial's traceback (``ValueError: ...``), or None."""
    if not trial.error_filename:
        return None
    error_file = Path(experiment_path) / trial.trial_dir_name / trial.error_filename
    try:
        lines = [line for line in error_file.read_text().splitlines() if line.strip()]
    except OSError:
        return f"{trial.status} (error file {error_file} is missing)"
    return lines[-1].strip() if lines else trial.status


def read_trial_result_file(trial_dir: Path) -> list[dict[str, Any]]:
    """Every result a trial reported, from Ray's own ``result.json`` (JSON lines)."""
    result_file = trial_dir / "result.json"
    if not result_file.exists():
        return []
    results = []
    with result_file.open() as stream:
        for line in stream:
            if line.strip():
                results.append(json.loads(line))
    return results
