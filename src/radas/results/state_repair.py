"""Keeping a stored experiment restorable: Tune's state copied and repaired.

While a sweep runs, ``back_up_tune_state`` keeps a copy of Tune's last readable snapshot
(Tune copies each snapshot in place: a kill or a full disk mid-copy leaves it truncated).
Before a restore, the newest readable snapshot is rewritten (``_rewrite_newest_state``:
damaged newer ones and their searcher states are set aside): trials requeued
(``requeue_trials``), made to agree with radas's records (``reconcile_with_records``), or
pointed at saved states that are still stored (``saved_states_gone``, ``continue_from``).
Reading the state is ``tune_state``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radas.errors import ExperimentDamagedError
from radas.ray_compat import saved_states
from radas.results.tune_state import (
    BACKUP_STAMP,
    DAMAGED_SUFFIX,
    SEARCHER_STATE_PATTERN,
    TERMINAL_STATUSES,
    ended_in_records,
    newest_state,
    read_trial_records,
    records_track_ends,
    state_files,
    warn_damaged,
    write_trial_records,
)
from radas.storage import files as _files
from radas.storage import store as _store


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
