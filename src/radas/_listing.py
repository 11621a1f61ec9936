"""Stored experiments as a list: ``radas.list_experiments`` and ``radas ls`` read it from here.

Locally the listing is the user's folder of the local results root (``$RADAS_HOME``): one row
per experiment folder with its name, the folder it was run from, its status
(``radas._status``), its trial counts, its last update and its path. A run whose lock is held
(``radas._locks``) is RUNNING; one that ended with unfinished trials is STOPPED. A damaged or
foreign folder gets a row whose status says so: a listing never fails on one folder.

On a cluster the rows are the user's jobs (``ExperimentsClient.list_experiments``), with the
trial counts read from the stored experiment under the cluster's results root
(``job_trial_counts``) when this machine can read it.

``where_else`` finds an experiment name stored under another folder or for another
``run_with``, for the hint of an ExperimentNotFoundError; it reads one small file per
candidate folder of the user's folder of each readable root, never more.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from radas import _locks, _ray_state, _store
from radas._args import checked_keywords
from radas._experiment_info import read_experiment_info
from radas._status import TrialCounts, experiment_status
from radas.console import collected_warnings
from radas.errors import ExperimentDamagedError, RadasError, StorageError
from radas.naming import validate_user_name
from radas.storage.dirs import check_storage_user_name, storage_roots
from radas.utils import get_current_user_name

if TYPE_CHECKING:
    from radas.backends.ray_jobs import ExperimentJob, RayJobsBackend

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


@checked_keywords
def list_experiments(*, user_name: str | None = None, run_with: str = "local") -> pd.DataFrame:
    """The stored experiments of ``user_name`` (default: the current user), one row each.

    ``run_with="local"``: the experiments stored on this machine, with columns experiment,
    cwd (the folder it was run from), status, finished, errored, total, last_update, path,
    full_name and problem (what could not be read, if anything). ``run_with="cluster:<name>"``:
    the user's jobs on that cluster, as ``radas.get_client(...).list_experiments()``.

    >>> radas.list_experiments(user_name="alice")  # doctest: +SKIP
      experiment            cwd    status  finished  errored  total  ...
    0     ab-grid  /home/alice/p  FINISHED         6        0      6  ...
    """
    from radas._spec import parse_run_with

    user_name = validate_user_name(user_name or get_current_user_name())
    if parse_run_with(run_with).kind != "local":
        from radas.client import get_client

        return get_client(user_name=user_name, run_with=run_with).list_experiments()
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
    running = _locks.is_held(folder)
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
    experiment_path: _store.AnyPath, *, running: bool | None = None
) -> tuple[TrialCounts | None, str]:
    """``(counts, problem)`` of the experiment stored at ``experiment_path`` (``running``: as
    ``_ray_state.load_trial_states`` takes it).

    counts is None with problem ``NOTHING_STORED`` when nothing is stored there, or with the
    reason when it cannot be read. Damaged files whose intact parts still give the counts
    are named in problem, next to the counts.
    """
    with collected_warnings() as damaged:
        try:
            if not _ray_state.has_stored_experiment(experiment_path):
                return None, NOTHING_STORED
            trials = _ray_state.load_trial_states(experiment_path, running=running)
        except ExperimentDamagedError as err:
            return None, f"damaged: {err}"
        except (OSError, RadasError, ValueError, TypeError, KeyError) as err:
            return None, f"not readable: {type(err).__name__}: {str(err)[:160]}"
    return TrialCounts.of_trials(trials), " ".join(damaged)


def _last_update(folder: Path) -> datetime | None:
    """The newest change of the folder or of the files a run keeps writing."""
    candidates = [
        folder,
        folder / _ray_state.TRIAL_RECORDS_FILE,
        folder / _ray_state.HISTORY_DIR,
        *(Path(str(state)) for state in _ray_state.state_files(folder)[-1:]),
    ]
    stamps = []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            stamps.append(candidate.stat().st_mtime)
    return datetime.fromtimestamp(max(stamps)) if stamps else None


# --- cluster jobs ----------------------------------------------------------------------------


def job_trial_counts(
    backend: RayJobsBackend, user_name: str, jobs: list[ExperimentJob]
) -> dict[str, tuple[TrialCounts | None, str]]:
    """job id -> ``(counts, why unknown)`` for the jobs of one user on one cluster.

    A job that ended and stored its outcome (``radas_job_outcome.json``) has its own counts;
    otherwise the stored experiment's trials count for the newest job of that experiment
    only: an older job's trials were continued (or replaced) by the newer one.
    """

    with backend.store_scope():
        return _job_trial_counts(backend, user_name, jobs)


def _job_trial_counts(
    backend: RayJobsBackend, user_name: str, jobs: list[ExperimentJob]
) -> dict[str, tuple[TrialCounts | None, str]]:
    from radas.backends.ray_jobs import OUTCOME_FILE

    root = backend.results_root(user_name)
    unreadable = _unreadable(root)
    newest = {job.full_name: job.job_id for job in jobs}  # jobs come oldest first
    found: dict[str, tuple[TrialCounts | None, str]] = {}
    for job in jobs:
        if unreadable is not None:
            found[job.job_id] = (None, unreadable)
            continue
        path = _store.location(root) / job.full_name
        recorded = _recorded_outcome(path / OUTCOME_FILE, job.job_id)
        if recorded is not None:
            found[job.job_id] = (recorded, "")
        elif newest[job.full_name] != job.job_id:
            found[job.job_id] = (
                None,
                f"a later job, {newest[job.full_name]}, ran this experiment since",
            )
        else:
            counts, problem = read_trial_counts(path)
            if counts is None and problem == NOTHING_STORED:
                problem = f"nothing stored at {path}"
            found[job.job_id] = (counts, problem)
    return found


def _unreadable(root: str) -> str | None:
    """Why the user's results folder ``root`` cannot be read from here, or None when it can."""
    try:
        if _store.location(root).is_dir():
            return None
    except (OSError, RadasError) as err:
        return f"results root not readable here: {type(err).__name__}: {str(err)[:120]}"
    return f"results root not readable here: {root} is not found on this machine"


def _recorded_outcome(path: _store.Location, job_id: str) -> TrialCounts | None:
    try:
        record = json.loads(path.read_text())
        if record.get("job_id") != job_id:
            return None
        return TrialCounts(
            int(record["total_trials"]),
            int(record["finished_trials"]),
            int(record["errored_trials"]),
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


# --- where else an experiment name is stored ------------------------------------------------


def where_else(experiment_name: str, *, user_name: str, run_with: str, cwd: str) -> str:
    """A sentence saying where else ``experiment_name`` is stored for ``user_name`` (another
    folder locally, or a configured cluster whose results root is a path readable here), or
    "" when nowhere. Object stores are not searched (a request per cluster would make a
    not-found error slow)."""
    from radas.clusters.config import load_clusters

    places = [("local", storage_roots("local").results_root)]
    with contextlib.suppress(RadasError, OSError):
        places += [
            (f"cluster:{name}", cluster.results_root)
            for name, cluster in sorted(load_clusters().items())
            if not _store.is_uri(cluster.results_root)
        ]
    suffix = "_" + re.sub(r"[^A-Za-z0-9]", "_", experiment_name)
    found = []
    for place, root in places:
        for stored_cwd in _stored_folders(Path(root) / user_name, experiment_name, suffix):
            if (place, stored_cwd) != (run_with, cwd):
                found.append((place, stored_cwd))
    if not found:
        return ""
    hints = [
        f"run_with={place!r} "
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
        if named and _ray_state.has_stored_experiment(entry):
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
