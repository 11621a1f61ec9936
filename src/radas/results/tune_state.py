"""Reading a stored experiment folder: Ray Tune's state (``experiment_state-*.json``),
radas's own trial records (``radas_trials.json``) and the trials' error files.

This is the one module that knows Ray's on-disk layout of an experiment directory. Reading
the JSON directly is much faster than ``ExperimentAnalysis`` (which also loads every trial's
progress file) and needs no running Ray.

Tune snapshots its state every few seconds, so after a kill it can lag behind: a trial that
finished may still be RUNNING there. radas records each trial's end (status and last result)
the moment Tune reports it, after the trial's history is on disk, and readers prefer that
record. A damaged file (truncated, emptied, garbage) is reported with a ``RadasWarning``
naming it and what is lost, and every intact part is used; when nothing usable remains,
``ExperimentDamagedError`` names the file.

Whether the experiment runs now is its lock (``radas.storage.locks``): while it is held, a
trial that started and did not end is RUNNING and Tune's newest snapshot may be half
copied (read the one
before, silently); once it is free, nothing runs, and such a trial is STOPPED (interrupted,
stopped, or its driver died; ``restore`` continues it). Trials that never started stay PENDING.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

from radas.core.console import warn
from radas.errors import ExperimentDamagedError
from radas.storage import files as _files
from radas.storage import locks
from radas.storage import store as _store
from radas.storage.history_parts import HISTORY_DIR, last_rows_from_history

TERMINAL_STATUSES = ("TERMINATED", "ERROR")
STARTED_STATUSES = ("RUNNING", "PAUSED")  # started, not ended (Tune's names)
STOPPED = "STOPPED"  # radas's name for a started trial that did not end, once nothing runs
TRIAL_RECORDS_FILE = "radas_trials.json"
TUNE_ERROR_FILE = "error.txt"  # the traceback Tune writes into a failed trial's folder
# In the records of radas versions that record each trial's end as it happens: there, a trial
# Tune's state calls TERMINATED without a recorded end did not get its results stored.
RECORDS_FORMAT_KEY = "_radas_records_format"
RECORDS_FORMAT = 2
DAMAGED_SUFFIX = ".damaged"
# Tune copies each snapshot of its state into the results folder in place: a full disk or a
# kill during the copy leaves it truncated. radas keeps a copy of the last readable snapshot
# under this stamp, which sorts before Tune's timestamps (Tune restores from the newest name).
BACKUP_STAMP = "0000-radas-last-readable"
SEARCHER_STATE_PATTERN = "basic-variant-state-*.json"  # Tune's grid / random searcher


@dataclass
class TrialState:
    """One trial as Ray stored it in the experiment checkpoint (or radas rebuilt it)."""

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


def warn_damaged(message: str) -> None:
    warn(message, stacklevel=3)


def state_files(experiment_path: _store.AnyPath) -> list[_store.Location]:
    """Ray's experiment state files, oldest first (the name carries a sortable timestamp)."""
    path = _store.location(experiment_path)
    if not path.is_dir():
        return []
    return sorted(path.glob("experiment_state-*.json"), key=str)


def has_stored_experiment(experiment_path: _store.AnyPath) -> bool:
    """Tune's state, radas's trial records or its history: something to read or restore."""
    path = _store.location(experiment_path)
    return any(
        [state_files(path), (path / TRIAL_RECORDS_FILE).exists(), (path / HISTORY_DIR).is_dir()]
    )


def _read_state_file(state_file: _store.Location, *, warn: bool = True) -> dict[str, Any] | None:
    """The parsed state file, or None (with a warning, if ``warn``) when it is damaged."""
    try:
        data = json.loads(state_file.read_text())
        for json_state, json_metadata in data["trial_data"]:
            json.loads(json_state), json.loads(json_metadata)
        return data
    except (OSError, ValueError, TypeError, KeyError) as err:
        if not warn:
            return None
        warn_damaged(
            f"Ray Tune's experiment state {state_file} is damaged ({type(err).__name__}: "
            f"{str(err)[:120]}); it is not used. Trial statuses come from an older state file "
            "or radas's own records and history instead."
        )
        return None


def newest_state(
    experiment_path: _store.AnyPath, *, running: bool = False
) -> tuple[_store.Location, dict[str, Any]] | None:
    """The newest readable state file and its content (damaged newer ones are warned about).

    With ``running`` (the experiment's lock is held) the newest file may be a snapshot Tune is
    copying in right now: unreadable, it is passed over without a warning.
    """
    for index, state_file in enumerate(reversed(state_files(experiment_path))):
        data = _read_state_file(state_file, warn=not (running and index == 0))
        if data is not None:
            return state_file, data
    return None


def search_finished(experiment_path: _store.AnyPath) -> bool | None:
    """Whether Tune's searcher had made every trial it will make, by the searcher state saved
    with the newest experiment state (grid / random: ``basic-variant-state``; a searcher:
    ``search_gen_state``); None when that cannot be told (not saved, unreadable)."""
    found = newest_state(experiment_path)
    if found is None:
        return None
    session = found[0].name.removeprefix("experiment_state-")
    for prefix in ("basic-variant-state-", "search_gen_state-"):
        searcher_state = found[0].with_name(prefix + session)
        try:
            import ray.cloudpickle as cloudpickle  # Tune writes these with it

            state = cloudpickle.loads(searcher_state.read_bytes())
        except FileNotFoundError:
            continue
        except Exception:  # damaged, or a class this process cannot import: not known
            return None
        if not isinstance(state, dict):
            return None
        if "_finished" in state:  # BasicVariantGenerator's own attributes
            return bool(state["_finished"])
        if "finished" in state:  # SearchGenerator.get_state()
            return bool(state["finished"]) or state.get("counter", 0) >= state.get(
                "total_samples", float("inf")
            )
        return None
    return None


def read_trial_records(experiment_path: _store.AnyPath) -> dict[str, dict[str, Any]]:
    """radas's own record of every trial (resources; config, status and last result once it
    ended). A damaged file is warned about and read as empty."""
    path = _store.location(experiment_path) / TRIAL_RECORDS_FILE
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text())
        if not isinstance(records, dict):
            raise ValueError(f"expected an object, found {type(records).__name__}")
        return records
    except (OSError, ValueError) as err:
        warn_damaged(
            f"radas's trial records {path} are damaged ({type(err).__name__}: "
            f"{str(err)[:120]}): the resources each trial ran with are lost, and trials "
            "that ended after Ray Tune's last state snapshot may show as unfinished."
        )
        return {}


def write_trial_records(
    experiment_path: _store.AnyPath, records: dict[str, dict[str, Any]]
) -> None:
    _files.write_atomic(
        _store.location(experiment_path) / TRIAL_RECORDS_FILE,
        json.dumps(records, default=json_default),
    )


def json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return repr(value)


def ended_in_records(record: dict[str, Any]) -> bool:
    return record.get("status") in TERMINAL_STATUSES and "last_result" in record


def records_track_ends(records: dict[str, dict[str, Any]]) -> bool:
    return records.get(RECORDS_FORMAT_KEY, {}).get("version", 0) >= RECORDS_FORMAT


def unstored_ends(trials: list[TrialState], records: dict[str, dict[str, Any]]) -> list[TrialState]:
    """Trials Tune's state calls TERMINATED whose end radas could not record (the run was
    killed, or the disk was full, before it could store their results)."""
    if not records_track_ends(records):
        return []
    return [
        trial
        for trial in trials
        if trial.status == "TERMINATED" and not ended_in_records(records.get(trial.trial_id, {}))
    ]


def load_trial_states(
    experiment_path: _store.AnyPath, *, running: bool | None = None
) -> list[TrialState]:
    """Every trial of the experiment, in trial-id order.

    From the newest readable state file, with the end radas recorded for trials Tune's
    snapshot had not caught up with. Without a readable state file the trials are rebuilt
    from radas's records (or, lacking those, from the history's last row per trial).

    A trial that started and did not end is RUNNING while the experiment runs (``running``;
    None: its lock says) and STOPPED once nothing runs: this is the one place that decides.
    """
    if not has_stored_experiment(experiment_path):
        return []  # nothing stored (a folder holding only radas's experiment info is no damage)
    if running is None:
        running = locks.is_held(experiment_path)
    records = read_trial_records(experiment_path)
    found = newest_state(experiment_path, running=running)
    if found is None:
        trials = _rebuild_trial_states(experiment_path, records)
    else:
        trials = []
        for json_state, json_metadata in found[1]["trial_data"]:
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
    for trial in trials:
        record = records.get(trial.trial_id, {})
        if trial.status not in TERMINAL_STATUSES and ended_in_records(record):
            trial.status = record["status"]
            trial.last_result = record["last_result"]
        elif trial.status in STARTED_STATUSES or (
            trial.status == "PENDING" and record.get("status") == "RUNNING"  # a newer start
        ):
            trial.status = "RUNNING" if running else STOPPED
    unstored = unstored_ends(trials, records)
    if unstored:
        warn_damaged(
            f"{len(unstored)} trial(s) ({_ids(unstored)}) ended in Ray Tune's state, but radas "
            "could not store their end and results (the run was killed, or the disk was full, "
            "first): they are shown as PENDING, and run_choice='restore' runs them again."
        )
        for trial in unstored:
            trial.status = "PENDING"
    trials.sort(key=lambda trial: trial.trial_id)
    return trials


def _ids(trials: list[TrialState]) -> str:
    return ", ".join(t.trial_id for t in trials[:5]) + (", ..." if len(trials) > 5 else "")


def _rebuild_trial_states(
    experiment_path: _store.AnyPath, records: dict[str, dict[str, Any]]
) -> list[TrialState]:
    files = state_files(experiment_path)
    lost = files[-1] if files else _store.location(experiment_path) / "experiment_state-*.json"
    rebuilt = [
        TrialState(
            trial_id=trial_id,
            status=record.get("status", "PENDING"),
            config=record.get("config") or {},
            last_result=record.get("last_result") or {},
            trial_dir_name=record.get("trial_dir_name") or "",
        )
        for trial_id, record in records.items()
        if "config" in record
    ]
    if rebuilt:
        warn_damaged(
            f"No readable Ray Tune experiment state ({lost}): the per-trial table is rebuilt "
            f"from radas's trial records ({len(rebuilt)} trials). Trials that had not started "
            "are missing from it."
        )
        return rebuilt
    rebuilt = [
        TrialState(
            trial_id=str(row["trial_id"]),
            status="UNKNOWN",  # the history holds results, not how a trial ended
            config={k[len("config/") :]: v for k, v in row.items() if k.startswith("config/")},
            last_result={k: v for k, v in row.items() if not k.startswith("config/")},
            trial_dir_name="",
        )
        for row in last_rows_from_history(experiment_path)
    ]
    if not rebuilt:
        raise ExperimentDamagedError(
            f"The experiment at {experiment_path} cannot be read: Ray Tune's experiment state "
            f"({lost}) is missing or damaged and neither radas's trial records nor its history "
            "hold the trials. Start it again with run_choice='run' (the damaged folder is "
            "moved to .archive/, not deleted)."
        )
    warn_damaged(
        f"No readable Ray Tune experiment state ({lost}) and no radas trial records: the "
        f"per-trial table is rebuilt from the history's last row of {len(rebuilt)} trials "
        "(status UNKNOWN: how each trial ended is lost)."
    )
    return rebuilt


def stored_metric_and_mode(experiment_path: _store.AnyPath) -> tuple[str | None, str | None]:
    """The metric and mode of the TuneConfig Tune stored with the experiment (``tuner.pkl``);
    (None, None) when it has none or cannot be read here (a searcher whose package is
    missing on this machine, a damaged file)."""
    try:
        path = _store.location(experiment_path) / "tuner.pkl"
        if not path.is_file():
            return None, None
        from ray import cloudpickle

        from radas.ray_compat.private import stored_tune_config

        with contextlib.redirect_stderr(io.StringIO()):
            state = cloudpickle.loads(path.read_bytes())
        tune_config = stored_tune_config(state)
        return getattr(tune_config, "metric", None), getattr(tune_config, "mode", None)
    except Exception:  # unpickling fails in many ways
        return None, None


def trial_error(experiment_path: _store.AnyPath, trial: TrialState) -> BaseException | None:
    """The exception a failed trial died of, as Ray pickled it (None if unavailable)."""
    # Looked up by name: the stored metadata can lag behind for a trial whose actor died.
    pickled = _store.location(experiment_path) / trial.trial_dir_name / "error.pkl"
    if not pickled.exists():
        return None
    from ray import cloudpickle

    try:
        return cloudpickle.loads(pickled.read_bytes())
    except Exception:  # truncated, or an exception class that cannot be imported here
        return None


def error_file(experiment_path: _store.AnyPath, trial: TrialState) -> _store.Location:
    """Where a failed trial's traceback is: the file Tune's snapshot names, else Tune's
    ``error.txt`` (a snapshot that lagged behind radas's records names none; Tune wrote the
    file before radas recorded the end)."""
    name = trial.error_filename or TUNE_ERROR_FILE
    return _store.location(experiment_path) / trial.trial_dir_name / name


def error_text(experiment_path: _store.AnyPath, trial: TrialState) -> str:
    """The whole traceback text a failed trial left (empty if none)."""
    try:
        return error_file(experiment_path, trial).read_text(errors="replace")
    except OSError:
        return ""


def error_summary(experiment_path: _store.AnyPath, trial: TrialState) -> str | None:
    """The last line of a failed trial's traceback (``ValueError: ...``), or None. A trial
    that failed and ran again (a lost node or worker) keeps its error file, but did not end
    in error unless it is ERROR now."""
    if trial.status != "ERROR":
        return None
    path = error_file(experiment_path, trial)
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"{trial.status} (error file {path} is missing)"
    return lines[-1].strip() if lines else f"{trial.status} (error file {path} is empty)"


def read_trial_result_file(trial_dir: _store.AnyPath) -> list[dict[str, Any]]:
    """Every result a trial reported, from Ray's own ``result.json`` (JSON lines); a damaged
    line (a write cut short) is skipped with a warning."""
    result_file = _store.location(trial_dir) / "result.json"
    if not result_file.exists():
        return []
    results, damaged = [], 0
    for line in result_file.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                results.append(json.loads(line))
            except ValueError:
                damaged += 1
    if damaged:
        warn_damaged(f"{result_file}: {damaged} damaged line(s) skipped (results lost).")
    return results
