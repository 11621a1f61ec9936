"""Stored experiments as a list: ``radas.list_experiments`` and ``radas ls`` read the local
ones from here (``local_listing``).

Locally the listing is the user's folder of the local results root (``$RADAS_HOME``): one row
per experiment folder with its name, the folder it was run from, its status
(``radas.core.status``), its trial counts, its last update and its path. A run whose lock is held
(``radas.storage.locks``) is RUNNING; one that ended with unfinished trials is STOPPED. A damaged or
foreign folder gets a row whose status says so: a listing never fails on one folder.

On a cluster the rows are the user's jobs (``radas.backends.client``), with the trial counts
read from the stored experiment under the cluster's results root (``read_trial_counts``) when
this machine can read it.

``where_else`` finds an experiment name stored under another folder or for another
``run_with``, for the hint of an ExperimentNotFoundError; it reads one small file per
candidate folder of the user's folder of each readable root, never more.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from radas.core.console import collected_warnings
from radas.core.spec import RunTarget
from radas.core.status import TrialCounts, experiment_status
from radas.errors import ExperimentDamagedError, RadasError, StorageError
from radas.results import tune_state
from radas.results.experiment_info import read_experiment_info
from radas.storage import locks, store
from radas.storage.dirs import check_storage_user_name, storage_roots

LOCAL_COLUMNS = [
    "experiment",
    "cwd",
    "status",
    "finished",
    "errored",
    "total",
    "last_update",
    "path",
    "full_name",
    "problem",
]


def local_listing(user_name: str) -> pd.DataFrame:
    """The experiments stored on this machine for ``user_name``, one row each (the columns
    ``radas.list_experiments`` documents)."""
    rows = [asdict(row) for row in local_experiments(user_name)]
    frame = pd.DataFrame(rows, columns=LOCAL_COLUMNS)
    frame["last_update"] = pd.to_datetime(frame["last_update"])
    return frame.astype({name: "Int64" for name in ("finished", "errored", "total")})


@dataclass
class StoredExperiment:
    """One folder of the user's local results root, as listed."""

    experiment: str
    cwd: str | None
    status: str
    finished: int | None
    errored: int | None
    total: int | None
    last_update: datetime | None
    path: str
    full_name: str
    problem: str = ""


def local_results_dir(user_name: str) -> Path:
    """The user's folder of the local results root (not created: a listing writes nothing)."""
    return Path(storage_roots("local").results_root) / check_storage_user_name(user_name)


def local_experiments(user_name: str) -> list[StoredExperiment]:
    """Every experiment folder of ``user_name`` on this machine, least recently updated first."""
    root = local_results_dir(user_name)
    try:
        folders = [entry for entry in root.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return []
    except OSError as err:
        raise StorageError(
            f"Cannot list the experiments in {root} ({err.strerror or err}): make it readable "
            "for this user, or set RADAS_HOME to where your experiments are."
        ) from err
    listed = [
        _local_experiment(folder)
        for folder in folders
        if not folder.name.startswith(".")  # .archive, .locks: radas's own, not experiments
    ]
    return sorted(listed, key=lambda row: (row.last_update or datetime.min, row.full_name))


def _local_experiment(folder: Path) -> StoredExperiment:
    info = read_experiment_info(folder) or {}
    name, cwd = info.get("experiment_name"), info.get("cwd")
    row = StoredExperiment(
        experiment=str(name) if name else folder.name,
        cwd=str(cwd) if cwd else None,
        status="",
        finished=None,
        errored=None,
        total=None,
        last_update=_last_update(folder),
        path=str(folder),
        full_name=folder.name,
    )
    running = locks.is_held(folder)
    counts, problem = read_trial_counts(folder, running=running)
    if counts is None and problem == NOTHING_STORED:
        if not info and not running:
            row.status = "FOREIGN (no radas or Ray Tune files)"
            return row
        counts, problem = TrialCounts(0, 0, 0), ""
    row.problem = problem
    if counts is None:
        kind = "DAMAGED" if problem.startswith("damaged") else "UNREADABLE"
        row.status = f"{kind} (no trials readable: see problem)"
        return row
    row.finished, row.errored, row.total = counts.finished, counts.errored, counts.total
    row.status = experiment_status("RUNNING" if running else "ENDED", counts)
    if problem:
        row.status += " (some files damaged: see problem)"
    return row


NOTHING_STORED = "nothing stored"


def read_trial_counts(
    experiment_path: store.AnyPath, *, running: bool | None = None
) -> tuple[TrialCounts | None, str]:
    """``(counts, problem)`` of the experiment stored at ``experiment_path`` (``running``: as
    ``tune_state.load_trial_states`` takes it).

    counts is None with problem ``NOTHING_STORED`` when nothing is stored there, or with the
    reason when it cannot be read. Damaged files whose intact parts still give the counts
    are named in problem, next to the counts.
    """
    with collected_warnings() as damaged:
        try:
            if not tune_state.has_stored_experiment(experiment_path):
                return None, NOTHING_STORED
            trials = tune_state.load_trial_states(experiment_path, running=running)
        except ExperimentDamagedError as err:
            return None, f"damaged: {err}"
        except (OSError, RadasError, ValueError, TypeError, KeyError) as err:
            return None, f"not readable: {type(err).__name__}: {str(err)[:160]}"
    return TrialCounts.of_trials(trials), " ".join(damaged)


def _last_update(folder: Path) -> datetime | None:
    """The newest change of the folder or of the files a run keeps writing."""
    candidates = [
        folder,
        folder / tune_state.TRIAL_RECORDS_FILE,
        folder / tune_state.HISTORY_DIR,
        *(Path(str(state)) for state in tune_state.state_files(folder)[-1:]),
    ]
    stamps = []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            stamps.append(candidate.stat().st_mtime)
    return datetime.fromtimestamp(max(stamps)) if stamps else None


# --- where else an experiment name is stored ------------------------------------------------


def where_else(experiment_name: str, *, user_name: str, target: RunTarget, cwd: str) -> str:
    """A sentence saying where else ``experiment_name`` is stored for ``user_name`` (another
    folder locally, or a configured cluster whose results root is a path readable here) than
    in ``cwd`` on ``target``, or "" when nowhere. Object stores are not searched (a request
    per cluster would make a not-found error slow)."""
    from radas.clusters.config import load_clusters

    places = [(RunTarget("local"), storage_roots("local").results_root)]
    with contextlib.suppress(RadasError, OSError):
        places += [
            (RunTarget("cluster", name), cluster.results_root)
            for name, cluster in sorted(load_clusters().items())
            if not store.is_uri(cluster.results_root)
        ]
    suffix = "_" + re.sub(r"[^A-Za-z0-9]", "_", experiment_name)
    found = []
    for place, root in places:
        for stored_cwd in _stored_folders(Path(root) / user_name, experiment_name, suffix):
            if (place, stored_cwd) != (target, cwd):
                found.append((place, stored_cwd))
    if not found:
        return ""
    hints = [
        f"run_with={str(place)!r} "
        + ("from this folder" if stored_cwd == cwd else f"from the folder {stored_cwd} (cd there)")
        for place, stored_cwd in found[:5]
    ]
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return (
        f" Did you mean one stored elsewhere? {experiment_name!r} is stored with "
        f"{'; '.join(hints)}{more}."
    )


def _stored_folders(user_root: Path, experiment_name: str, suffix: str) -> list[str]:
    """The folders ``experiment_name`` was run from, of the experiments stored under
    ``user_root`` (one level; only folders whose name can be that experiment's are read)."""
    try:
        entries = [entry for entry in user_root.iterdir() if entry.name.endswith(suffix)]
    except OSError:
        return []
    folders = []
    for entry in sorted(entries):
        if entry.name.startswith("."):  # .archive, .locks
            continue
        info = read_experiment_info(entry) or {}
        named = info.get("experiment_name") == experiment_name and info.get("cwd")
        if named and tune_state.has_stored_experiment(entry):
            folders.append(str(info["cwd"]))
    return folders


def as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a listing as JSON-ready dicts (times as ISO text, missing values None)."""
    records = []
    for row in frame.to_dict(orient="records"):
        records.append({key: _json_value(value) for key, value in row.items()})
    return records


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (datetime, pd.Timestamp)):
        return value.isoformat()
    with contextlib.suppress(TypeError, ValueError):
        if pd.isna(value):
            return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
