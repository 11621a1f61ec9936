"""An experiment as ``radas watch`` sees it: found the way ``radas analyze`` finds one (its name
with ``--run-with``, ``--dir`` and ``--user``, or its path or URI), and read, at each refresh,
into a plain ``Snapshot`` (its trials, their last reported values, the best one, its progress
and whether it still runs) that the terminal view draws.

Nothing here draws, and nothing needs Ray for a stored experiment but the experiment's
metric and mode (``tuner.pkl``, read once).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from radas.core.console import collected_warnings
from radas.core.naming import full_experiment_name, user_option
from radas.core.spec import RunTarget, parse_run_with
from radas.core.status import TrialCounts, experiment_status
from radas.errors import ExperimentDamagedError, ExperimentNotFoundError, RadasError
from radas.results import tune_state
from radas.results.experiment_info import read_experiment_info
from radas.results.tuner import BOOKKEEPING_COLUMNS
from radas.storage import locks, store
from radas.storage.history_parts import flatten

ITERATION = "training_iteration"
METRIC_READS = 3


@dataclass
class Watched:
    """Where a watched experiment is stored, and how to tell whether it runs."""

    label: str  # its experiment_name, as the progress line names it
    path: store.Location
    target: RunTarget | None  # None: named by its path or URI
    user: str
    scope: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
    # the state of the cluster job that runs it (PENDING, RUNNING, SUCCEEDED, ...), or None
    job_state: Callable[[], str | None] = lambda: None
    logs_hint: str = ""  # the radas logs command for its trials, "" when there is none
    metric_mode: tuple[str | None, str | None] | None = None  # read once tuner.pkl exists
    metric_reads: int = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Reads of its results go where they are (a cluster's own S3 endpoint)."""
        with self.scope():
            yield

    def job_running(self) -> bool:
        """Whether its cluster job is pending or running now (False for a local one: its
        lock tells)."""
        return self.job_state() in ("PENDING", "RUNNING")


@dataclass(frozen=True)
class TrialRow:
    """One trial: its status, the config values that vary, its last reported values."""

    trial_id: str
    status: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None = None
    traceback_path: str = ""


@dataclass(frozen=True)
class Progress:
    finished: int = 0
    running: int = 0
    pending: int = 0
    errored: int = 0
    other: int = 0  # STOPPED, UNKNOWN: started, not ended, nothing runs

    @property
    def total(self) -> int:
        return self.finished + self.running + self.pending + self.errored + self.other


@dataclass(frozen=True)
class Snapshot:
    """What one read of the experiment found."""

    label: str
    path: str
    running: bool
    status: str  # the experiment's status in radas's words (radas.core.status)
    trials: list[TrialRow]
    progress: Progress
    metric: str | None = None
    mode: str | None = None
    best_trial: str | None = None
    elapsed_s: float | None = None
    problems: list[str] = field(default_factory=list)  # damaged files; what could not be read
    failed: bool = False  # its cluster job FAILED

    @property
    def metric_columns(self) -> list[str]:
        """Every reported value's name, the experiment's metric first, then in first-seen
        order."""
        names: dict[str, None] = {}
        if self.metric and any(self.metric in row.metrics for row in self.trials):
            names[self.metric] = None
        for row in self.trials:
            names.update(dict.fromkeys(row.metrics))
        return list(names)

    @property
    def config_columns(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.trials:
            names.update(dict.fromkeys(row.config))
        return list(names)

    def exit_status(self) -> int:
        """As ``radas logs --follow``: 0 finished or stopped normally, 1 when it failed, every
        trial errored or nothing could be read."""
        every_errored = 0 < self.progress.errored == self.progress.total
        unreadable = not self.trials and bool(self.problems)
        return 1 if self.failed or every_errored or unreadable else 0


def find_experiment(name: str, *, run_with: str, directory: str, user: str) -> Watched:
    """The experiment ``name`` (an experiment_name run from ``directory``, or a stored
    experiment's path or URI) of ``user``; ExperimentNotFoundError naming where radas looked
    and the ``radas ls`` command that lists what is stored there."""
    if store.is_uri(name) or (os.sep in name and os.path.isdir(os.path.expanduser(name))):
        path = store.location(os.path.expanduser(name))
        info = read_experiment_info(path) or {}
        watched = Watched(str(info.get("experiment_name") or path.name), path, None, user)
        return _checked(
            watched,
            f"No stored experiment at {path}. `radas ls{user_option(user)}` lists the "
            f"experiments of {user!r} stored on this machine, each with its path.",
        )
    from radas.backends import get_backend
    from radas.core.args import run_directory

    cwd = run_directory(directory)
    target = parse_run_with(run_with)
    backend = get_backend(target)
    full_name = full_experiment_name(name, cwd=cwd)
    with backend.store_scope():
        path = store.location(backend.results_root(user)) / full_name
    watched = Watched(name, path, target, user, scope=backend.store_scope)
    watched.job_state = _job_state(backend, user, full_name)
    where = "" if target.kind == "local" else f" --run-with {target}"
    folder = "" if cwd == os.getcwd() else f" --dir {cwd}"
    watched.logs_hint = f"radas logs --experiment {name}{where}{folder}{user_option(user)}"
    return _checked(watched, _not_found(name, path, target, user, cwd))


def _checked(watched: Watched, not_found: str) -> Watched:
    """``watched`` when something is stored there or a run of it has started."""
    with watched.reading():
        stored = tune_state.has_stored_experiment(watched.path) or locks.is_held(watched.path)
    if not stored and watched.job_state() not in ("PENDING", "RUNNING"):
        raise ExperimentNotFoundError(not_found)
    return watched


def _not_found(name: str, path: store.Location, target: RunTarget, user: str, cwd: str) -> str:
    from radas.core.naming import listing_hint
    from radas.results.listing import where_else

    return (
        f"No stored experiment {name!r} of user {user!r} run from {cwd}: radas looked in "
        f"{path} (the full name includes the directory it was run from: --dir)."
        f"{where_else(name, user_name=user, target=target, cwd=cwd)} "
        f"{listing_hint(target, user)}."
    )


def _job_state(backend: Any, user: str, full_name: str) -> Callable[[], str | None]:
    """The state of the newest cluster job of the experiment, asked at each refresh; None
    for a local one, or once the cluster stops answering (its lock alone tells then)."""
    jobs_of = getattr(backend, "experiment_jobs", None)
    if jobs_of is None:
        return lambda: None
    answers = True

    def state() -> str | None:
        nonlocal answers
        if not answers:
            return None
        try:
            jobs = jobs_of(user, full_name)
        except RadasError:
            answers = False
            return None
        return jobs[-1].status if jobs else None

    return state


def read_snapshot(watched: Watched, *, now: float | None = None) -> Snapshot:
    """The experiment as stored now. A damaged file is named in ``problems`` and what can
    be read is shown; a folder with nothing readable is a snapshot with no trials."""
    with watched.reading(), collected_warnings() as problems:
        job = watched.job_state()
        running = job in ("PENDING", "RUNNING") or locks.is_held(watched.path)
        try:
            states = tune_state.load_trial_states(watched.path, running=running)
        except (ExperimentDamagedError, OSError, ValueError) as err:
            problems.append(str(err) if isinstance(err, RadasError) else _as_problem(err))
            states = []
        trials = [_row(watched, state) for state in states]
        _read_metric_mode(watched)
        started = _start_time(watched.path) if running else None
    metric, mode = watched.metric_mode or (None, None)
    counts = TrialCounts.of(state.status for state in states)
    run = job if job is not None else ("RUNNING" if running else "ENDED")
    return Snapshot(
        label=watched.label,
        path=str(watched.path),
        running=running,
        status=experiment_status(run, counts if states or not problems else None),
        trials=_varying_config(trials),
        progress=_progress(trials),
        metric=metric,
        mode=mode,
        best_trial=_best(trials, metric, mode),
        elapsed_s=None if started is None else max((now or time.time()) - started, 0.0),
        problems=list(dict.fromkeys(problems)),
        failed=job == "FAILED",
    )


def _read_metric_mode(watched: Watched) -> None:
    """The experiment's metric and mode from ``tuner.pkl``, once it is there: kept once
    found, or after METRIC_READS reads without one (a file Tune was writing reads as none)."""
    if watched.metric_mode is not None or not (watched.path / "tuner.pkl").exists():
        return
    found = tune_state.stored_metric_and_mode(watched.path)
    watched.metric_reads += 1
    if found[0] is not None or watched.metric_reads >= METRIC_READS:
        watched.metric_mode = found


def _as_problem(err: BaseException) -> str:
    return f"could not be read ({type(err).__name__}: {str(err)[:200]})"


def _row(watched: Watched, state: tune_state.TrialState) -> TrialRow:
    result = flatten({k: v for k, v in state.last_result.items() if k != "config"})
    metrics = {
        key: value
        for key, value in result.items()
        if key not in BOOKKEEPING_COLUMNS and key != "trial_id" and _shown(value)
    }
    error = tune_state.error_summary(watched.path, state)
    traceback = str(tune_state.error_file(watched.path, state)) if error is not None else ""
    return TrialRow(
        trial_id=state.trial_id,
        status=state.status,
        config={k: v for k, v in flatten(state.config).items() if _shown(v)},
        metrics=metrics,
        error=error,
        traceback_path=traceback,
    )


def _shown(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _varying_config(trials: list[TrialRow]) -> list[TrialRow]:
    """The trials with only the config values that differ between them (all of them for a
    single trial)."""
    if len(trials) < 2:
        return trials
    keys: dict[str, set[str]] = {}
    for row in trials:
        for key, value in row.config.items():
            keys.setdefault(key, set()).add(repr(value))
    varying = {
        key
        for key, values in keys.items()
        if len(values) > 1 or any(key not in row.config for row in trials)
    }
    return [
        TrialRow(
            row.trial_id,
            row.status,
            {k: v for k, v in row.config.items() if k in varying},
            row.metrics,
            row.error,
            row.traceback_path,
        )
        for row in trials
    ]


def _progress(trials: list[TrialRow]) -> Progress:
    def count(*statuses: str) -> int:
        return sum(row.status in statuses for row in trials)

    return Progress(
        finished=count("TERMINATED"),
        running=count("RUNNING"),
        pending=count("PENDING", "PAUSED"),
        errored=count("ERROR"),
        other=count(tune_state.STOPPED, "UNKNOWN"),
    )


def _best(trials: list[TrialRow], metric: str | None, mode: str | None) -> str | None:
    """The trial whose last value of ``metric`` is best by ``mode`` (None without either)."""
    if metric is None or mode not in ("min", "max"):
        return None
    scored = [
        (float(row.metrics[metric]), row.trial_id)
        for row in trials
        if isinstance(row.metrics.get(metric), (int, float))
        and not isinstance(row.metrics[metric], bool)
        and not math.isnan(row.metrics[metric])
    ]
    if not scored:
        return None
    return (min(scored) if mode == "min" else max(scored, key=lambda pair: pair[0]))[1]


def _start_time(path: store.Location) -> float | None:
    """When Tune started the experiment's current run (its state's ``stats``), or None."""
    found = tune_state.newest_state(path, running=True)
    if found is None:
        return None
    start = found[1].get("stats", {}).get("start_time")
    return float(start) if isinstance(start, (int, float)) else None
