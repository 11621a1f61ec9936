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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radas.core.console import warn
from radas.errors import ExperimentDamagedError
from radas.ray_compat import saved_states
from radas.storage import files as _files
from radas.storage import locks
from radas.storage import store as _store
from radas.storage.history_parts import HISTORY_DIR, last_rows_from_history

TERMINAL_STATUSES = ("TERMINATED", "ERROR")
STARTED_STATUSES = ("RUNNING", "PAUSED")  # started, not ended (Tune's names)
STOPPED = "STOPPED"  # radas's name for a started trial that did not end, once nothing runs
TRIAL_RECORDS_FILE = "radas_trials.json"
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


def error_text(experiment_path: _store.AnyPath, trial: TrialState) -> str:
    """The whole traceback text a failed trial left (empty if none)."""
    name = trial.error_filename or "error.txt"
    try:
        error_file = _store.location(experiment_path) / trial.trial_dir_name / name
        return error_file.read_text(errors="replace")
    except OSError:
        return ""


def _rewrite_newest_state(
    experiment_path: _store.AnyPath, change: Callable[[dict[str, Any], dict[str, Any]], bool]
) -> int:
    """Apply ``change(state, metadata)`` to every trial of the newest state file and write
    it back atomically; returns how many trials changed."""
    found = newest_state(experiment_path)
    if found is None:
        raise ExperimentDamagedError(
            f"Nothing to restore at {experiment_path}: Ray Tune's experiment state is missing "
            "or damaged (see the warnings above). Its results can still be read with "
            f"radas.Tuner({str(experiment_path)!r}); start it again with run_choice='run' "
            "(the folder is moved to .archive/, not deleted)."
        )
    state_file, data = found
    for newer in state_files(experiment_path):
        if newer.name > state_file.name:  # damaged: set aside so that Tune reads the good one
            _store.rename(newer, newer.with_name(newer.name + DAMAGED_SUFFIX))
    _set_aside_searcher_states(experiment_path, use_backup=BACKUP_STAMP in state_file.name)
    changed = 0
    for entry in data["trial_data"]:
        state, metadata = json.loads(entry[0]), json.loads(entry[1])
        if change(state, metadata):
            entry[0], entry[1] = json.dumps(state), json.dumps(metadata)
            changed += 1
    if changed:
        _files.write_atomic(state_file, json.dumps(data))
    return changed


def _set_aside_searcher_states(experiment_path: _store.AnyPath, *, use_backup: bool) -> None:
    """Tune restores its searcher from the newest searcher state: set aside damaged ones, and
    all but radas's copy when the experiment state is radas's copy (they go together)."""
    path = _store.location(experiment_path)
    found: list[_store.Location] = list(path.glob(SEARCHER_STATE_PATTERN))
    for searcher_state in sorted(found, key=str, reverse=True):
        if BACKUP_STAMP in searcher_state.name:
            return
        if not use_backup:
            if _is_readable_snapshot(searcher_state.read_bytes()):
                return  # the newest is readable: Tune uses it
            warn_damaged(f"Ray Tune's searcher state {searcher_state} is damaged; set aside.")
        _store.rename(
            searcher_state, searcher_state.with_name(searcher_state.name + DAMAGED_SUFFIX)
        )


def back_up_tune_state(experiment_path: _store.AnyPath, seen: Any = None) -> Any:
    """Copy Tune's newest snapshot (experiment state and grid searcher state) when it changed
    and is readable; returns what was seen, to pass back next time."""
    path = _store.location(experiment_path)
    newest = [f for f in state_files(path) if BACKUP_STAMP not in f.name]
    if not newest:
        return seen
    state_file = newest[-1]
    if isinstance(state_file, Path):
        stat = state_file.stat()
        current: Any = (state_file.name, stat.st_mtime_ns, stat.st_size)
        if current == seen:
            return seen
    copies = [state_file]
    searchers = sorted(
        (f for f in path.glob(SEARCHER_STATE_PATTERN) if BACKUP_STAMP not in f.name), key=str
    )
    copies += searchers[-1:]
    contents = []
    for source in copies:
        try:
            data = source.read_bytes()
        except OSError:
            return seen
        if not _is_readable_snapshot(data):
            return seen  # being written, or damaged: keep the last copy
        contents.append((source, data))
    if not isinstance(state_file, Path):
        current = (state_file.name, len(contents[0][1]), hash(contents[0][1]))
        if current == seen:
            return seen
    for source, data in reversed(contents):  # the searcher state first
        prefix = "experiment_state-" if source is state_file else "basic-variant-state-"
        _files.write_atomic(source.with_name(f"{prefix}{BACKUP_STAMP}.json"), data)
    return current


def _is_readable_snapshot(data: bytes) -> bool:
    """Tune's experiment state is JSON; its searcher state (also named .json) a pickle."""
    try:
        if data[:1] == b"{":
            json.loads(data)
        else:
            from ray import cloudpickle

            cloudpickle.loads(data)
        return True
    except Exception:  # truncated or garbage: unpickling fails in many ways
        return False


def requeue_trials(experiment_path: _store.AnyPath, trial_ids: set[str]) -> None:
    """Mark failed trials PENDING in the newest state and in radas's records, so a restore
    runs them again, each from its latest saved state (``radas.report(..., state=...)``):
    Tune resumes a PENDING trial from the latest checkpoint its metadata names, which this
    leaves as it is.

    (Tune's own ``resume_errored`` restarts every errored trial; radas chooses which.)
    """
    records = read_trial_records(experiment_path)
    for trial_id in trial_ids & set(records):
        records[trial_id]["status"] = "PENDING"
        records[trial_id].pop("last_result", None)
    write_trial_records(experiment_path, records)

    def requeue(state: dict[str, Any], metadata: dict[str, Any]) -> bool:
        if state["trial_id"] not in trial_ids:
            return False
        state["status"] = "PENDING"
        return True

    _rewrite_newest_state(experiment_path, requeue)


@dataclass
class SavedStates:
    """An unfinished trial's saved states as Tune's newest snapshot names them, where some
    are no longer stored (Tune deleted them after that snapshot, or they were lost)."""

    trial_dir: str  # the trial's folder name
    latest: str  # the folder name of the one Tune would restore it from
    latest_gone: bool
    gone: set[str]  # paths of the kept ones no longer stored (Tune would fail deleting them)


def saved_states_gone(experiment_path: _store.AnyPath) -> dict[str, SavedStates]:
    """Unfinished trials (by id) whose saved states, as the newest snapshot names them, are
    not all stored."""
    found = newest_state(experiment_path)
    if found is None:
        return {}
    path = _store.location(experiment_path)
    damaged = {}
    for json_state, json_metadata in found[1]["trial_data"]:
        state, metadata = json.loads(json_state), json.loads(json_metadata)
        named = saved_states.saved_states(metadata.get("checkpoint_manager"))
        trial_dir = state.get("relative_logdir") or ""
        if state["status"] == "TERMINATED" or named is None or not trial_dir:
            continue
        latest, kept = named
        gone = {each for each in {latest, *kept} if not _stored(path, trial_dir, each)}
        if gone:
            damaged[state["trial_id"]] = SavedStates(trial_dir, _name(latest), latest in gone, gone)
    return damaged


def _name(checkpoint_path: str) -> str:
    return checkpoint_path.rstrip("/").rpartition("/")[2]


def _stored(path: _store.Location, trial_dir: str, checkpoint_path: str) -> bool:
    """Whether a checkpoint folder Tune names is stored (looked up in the experiment as it is
    now: the folder may have moved since Tune named it)."""
    return (path / trial_dir / _name(checkpoint_path)).exists()


def continue_from(
    experiment_path: _store.AnyPath,
    damaged: dict[str, SavedStates],
    chosen: dict[str, tuple[str | None, dict[str, Any]]],
) -> None:
    """Rewrite the newest snapshot so that Tune restores each damaged trial from a stored
    state: the ones ``chosen`` (id -> (checkpoint folder name or None: from scratch, the
    metrics it came with)) from that one, with its iteration count; the others without the
    kept states that are gone."""

    def repoint(state: dict[str, Any], metadata: dict[str, Any]) -> bool:
        trial_id = state["trial_id"]
        if trial_id not in damaged:
            return False
        encoded = metadata.get("checkpoint_manager")
        if trial_id in chosen:
            name, metrics = chosen[trial_id]
            named = saved_states.saved_states(encoded)
            folder = None
            if name is not None and named is not None:
                folder = named[0].rstrip("/").rpartition("/")[0] + "/" + name
            metadata["checkpoint_manager"] = saved_states.saved_states_at(encoded, folder, metrics)
        else:
            metadata["checkpoint_manager"] = saved_states.saved_states_without(
                encoded, damaged[trial_id].gone
            )
        return True

    if damaged:
        _rewrite_newest_state(experiment_path, repoint)


def reconcile_with_records(experiment_path: _store.AnyPath) -> int:
    """Before a restore, make Tune's state agree with radas's records: trials whose end radas
    recorded but Tune's lagging snapshot shows unfinished are written in as ended (with their
    last result), so Tune does not run them again; trials Tune calls TERMINATED whose end
    radas could not record (``unstored_ends``) are set PENDING, so they run again. Returns
    how many trials changed."""
    records = read_trial_records(experiment_path)
    track_ends = records_track_ends(records)

    def reconcile(state: dict[str, Any], metadata: dict[str, Any]) -> bool:
        record = records.get(state["trial_id"], {})
        if state["status"] not in TERMINAL_STATUSES and ended_in_records(record):
            state["status"] = record["status"]
            metadata["last_result"] = record["last_result"]
            return True
        if track_ends and state["status"] == "TERMINATED" and not ended_in_records(record):
            state["status"] = "PENDING"
            return True
        return False

    return _rewrite_newest_state(experiment_path, reconcile)


def error_summary(experiment_path: _store.AnyPath, trial: TrialState) -> str | None:
    """The last line of a failed trial's traceback (``ValueError: ...``), or None. A trial
    that failed and ran again (a lost node or worker) keeps its error file, but did not end
    in error unless it is ERROR now."""
    if not trial.error_filename or trial.status != "ERROR":
        return None
    error_file = _store.location(experiment_path) / trial.trial_dir_name / trial.error_filename
    try:
        lines = [line for line in error_file.read_text(errors="replace").splitlines() if line]
    except OSError:
        return f"{trial.status} (error file {error_file} is missing)"
    lines = [line for line in lines if line.strip()]
    return lines[-1].strip() if lines else f"{trial.status} (error file {error_file} is empty)"


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
