"""What the report page shows, read from a stored experiment as plain data (``ReportData``),
before anything is drawn: the status line, one row per trial, the history behind the learning
curves, the figures the run saved and the errored trials' tracebacks.

Reading never fails on a damaged part: every file that cannot be read (a truncated
``experiment_state-*.json``, damaged trial records or history, a missing error file) becomes a
note the page shows, and the rest is read as far as it goes. Only an experiment that is not
stored at all is an error (``ExperimentNotFoundError``).

>>> data = read_report_data("~/.radas/ray-results/alice/_home_alice_proj_lr")  # doctest: +SKIP
>>> data.status, [trial.trial_id for trial in data.trials]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from radas.core.console import collected_warnings
from radas.core.status import TrialCounts, experiment_status
from radas.errors import ExperimentNotFoundError, RadasError
from radas.results import tune_state
from radas.results.experiment_info import read_experiment_info
from radas.results.history import load_history
from radas.results.tuner import BOOKKEEPING_COLUMNS
from radas.storage import locks
from radas.storage import store as _store
from radas.storage.dirs import figures_dir
from radas.storage.history_parts import HISTORY_DIR, flatten

# Figures a page shows as images (a PDF cannot be an <img>: it is named instead).
IMAGE_TYPES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
}
FIGURE_TYPES = (*IMAGE_TYPES, ".pdf")
MAX_FIGURE_BYTES = 20_000_000  # a saved figure larger than this is named, not embedded
MAX_TRACEBACK_CHARS = 40_000  # the end of a longer traceback is kept (the error is last)
MAX_METRIC_COLUMNS = 8  # reported metrics shown as columns of the trial table
NOT_METRICS = {"trial_id", "training_iteration", *BOOKKEEPING_COLUMNS}


@dataclass
class TrialRow:
    """One trial as the table shows it."""

    trial_id: str
    status: str
    config: dict[str, Any]
    last: dict[str, Any]  # reported metric -> its last value
    best: Any = None  # the best value of the experiment's metric (by its mode), when known
    reports: int = 0  # how many results it reported (rows of the history)
    error: str | None = None  # the last line of its traceback, for an errored trial


@dataclass
class SavedFigure:
    """A figure file the run (or a re-analysis) saved for this experiment."""

    name: str
    path: str
    media_type: str | None  # None: not shown as an image (a PDF, or too large)
    content: bytes = b""


@dataclass
class ReportData:
    """Everything the page shows, read once."""

    name: str  # the experiment_name it was run with (else its folder's name)
    experiment_path: str
    status: str  # as radas ls shows it
    counts: TrialCounts | None
    running: bool
    last_update: datetime | None
    metric: str | None  # the metric of the learning curves
    mode: str | None  # "min" / "max" when the experiment has one
    metric_source: str  # where ``metric`` comes from, in words ("" when there is none)
    metrics: list[str]  # reported metrics shown as columns
    config_keys: list[str]
    trials: list[TrialRow]
    history: pd.DataFrame
    figures: list[SavedFigure] = field(default_factory=list)
    tracebacks: dict[str, str] = field(default_factory=dict)  # errored trial id -> traceback
    notes: list[str] = field(default_factory=list)  # what could not be read


def read_report_data(
    experiment_path: _store.AnyPath, *, job_running: Callable[[], bool] | None = None
) -> ReportData:
    """Read what the page shows from the experiment stored at ``experiment_path`` (a path or
    an ``s3://`` URI). ``job_running``: whether its cluster job runs now, where its lock is
    out of sight (``Backend.running_probe``)."""
    location = _store.location(os.path.expanduser(str(experiment_path)))
    with _store.unreachable_as_error(
        str(location), during="while radas read the experiment", then="write the report again"
    ):
        if not tune_state.has_stored_experiment(location):
            raise ExperimentNotFoundError(
                f"No stored experiment at {location}: radas looked there for Ray Tune's "
                f"experiment_state-*.json, its own {tune_state.TRIAL_RECORDS_FILE} and "
                f"{HISTORY_DIR}/, and found none. `radas ls` lists the experiments stored on "
                "this machine, `radas ls --cluster NAME` a cluster's."
            )
        return _read(location, job_running)


def _read(location: _store.Location, job_running: Callable[[], bool] | None) -> ReportData:
    notes: list[str] = []
    info = read_experiment_info(location) or {}
    running = locks.is_held(location) or (job_running is not None and job_running())
    trials: list[tune_state.TrialState] = []  # what stays when they cannot be read
    history = pd.DataFrame(columns=["trial_id", "training_iteration"])
    tracebacks: dict[str, str] = {}
    with _noted(notes, "the trials"):
        trials = tune_state.load_trial_states(location, running=running)
    with _noted(notes, "the history of reports"):
        history = load_history(location, exclude=BOOKKEEPING_COLUMNS)
    stored_metric, mode = tune_state.stored_metric_and_mode(location)
    metrics = reported_metrics(history, trials)
    metric, source = curve_metric(stored_metric, metrics)
    counts = TrialCounts.of_trials(trials) if trials or not notes else None
    if counts is None:
        status = "DAMAGED (no trials readable: see the notes)"
    else:
        status = experiment_status("RUNNING" if running else "ENDED", counts)
        if notes:
            status += " (some files damaged: see the notes)"
    with _noted(notes, "the tracebacks"):
        tracebacks = _tracebacks(location, trials)
    return ReportData(
        name=str(info.get("experiment_name") or location.name),
        experiment_path=str(location),
        status=status,
        counts=counts,
        running=running,
        last_update=last_update(location),
        metric=metric,
        mode=mode if metric == stored_metric else None,
        metric_source=source,
        metrics=metrics,
        config_keys=sorted({key for trial in trials for key in flatten(trial.config)}),
        trials=_trial_rows(
            location, trials, history, metric if metric == stored_metric else None, mode
        ),
        history=history,
        figures=saved_figures(location, info),
        tracebacks=tracebacks,
        notes=notes,
    )


@contextlib.contextmanager
def _noted(notes: list[str], what: str) -> Iterator[None]:
    """radas's warnings of damaged files raised inside become notes, and so does an error that
    leaves ``what`` unread: the page shows what the rest of the experiment holds."""
    with collected_warnings() as warned:
        try:
            yield
        except (RadasError, OSError, ValueError, TypeError, KeyError) as err:
            notes.append(f"{what[0].upper()}{what[1:]} could not be read: {err}")
    notes.extend(note for note in dict.fromkeys(warned) if note not in notes)  # said once


def reported_metrics(history: pd.DataFrame, trials: list[tune_state.TrialState]) -> list[str]:
    """The numeric metrics the trials reported, in the order first reported (from the
    history, else from the trials' last results), at most ``MAX_METRIC_COLUMNS``."""
    columns = [str(column) for column in history.columns if not str(column).startswith("config/")]
    found = [
        column
        for column in columns
        if column not in NOT_METRICS and pd.api.types.is_numeric_dtype(history[column])
    ]
    for trial in trials:
        for key, value in flatten(trial.last_result).items():
            reported = key not in NOT_METRICS and not key.startswith("config/")
            if reported and key not in found and _is_number(value):
                found.append(key)
    return found[:MAX_METRIC_COLUMNS]


def curve_metric(stored_metric: str | None, metrics: list[str]) -> tuple[str | None, str]:
    """The metric of the learning curves and where it comes from: the experiment's own
    (``TuneConfig(metric=...)``), else the first numeric one the trials reported."""
    if stored_metric:
        return stored_metric, "the experiment's metric"
    if metrics:
        return metrics[0], "the first numeric metric reported (the experiment has no metric)"
    return None, ""


def _trial_rows(
    location: _store.Location,
    trials: list[tune_state.TrialState],
    history: pd.DataFrame,
    metric: str | None,
    mode: str | None,
) -> list[TrialRow]:
    """One row per trial: its last value of each metric (the history's, complete where Tune's
    snapshot lags behind; a metric reported only now and then keeps its last value), how many
    results it reported, and its best value of ``metric`` by ``mode``."""
    by_trial = history.groupby("trial_id", sort=False) if "trial_id" in history else None
    last_rows = by_trial.last() if by_trial is not None else pd.DataFrame()  # skips NaN
    reports = by_trial.size() if by_trial is not None else pd.Series(dtype=int)
    best = pd.Series(dtype=float)
    if by_trial is not None and metric in history and mode in ("min", "max"):
        values = pd.to_numeric(history[metric], errors="coerce").groupby(history["trial_id"])
        best = values.min() if mode == "min" else values.max()
    rows = []
    for trial in trials:
        last = flatten(trial.last_result)
        if trial.trial_id in last_rows.index:
            last.update(last_rows.loc[trial.trial_id].dropna().to_dict())
        rows.append(
            TrialRow(
                trial_id=trial.trial_id,
                status=trial.status,
                config=flatten(trial.config),
                last={
                    key: value
                    for key, value in last.items()
                    if key not in NOT_METRICS and not str(key).startswith("config/")
                },
                best=best.get(trial.trial_id),
                reports=int(
                    reports.get(trial.trial_id, trial.last_result.get("training_iteration") or 0)
                ),
                error=tune_state.error_summary(location, trial),
            )
        )
    return rows


def _tracebacks(location: _store.Location, trials: list[tune_state.TrialState]) -> dict[str, str]:
    tracebacks = {}
    for trial in trials:
        if trial.status != "ERROR":
            continue
        text = tune_state.error_text(location, trial)
        if len(text) > MAX_TRACEBACK_CHARS:
            text = "[... its beginning left out ...]\n" + text[-MAX_TRACEBACK_CHARS:]
        tracebacks[trial.trial_id] = text or "(no traceback stored: its error file is missing)"
    return tracebacks


def saved_figures(location: _store.Location, info: dict[str, Any]) -> list[SavedFigure]:
    """The figure files saved for this experiment on this machine: radas's figures folder
    (``<full name>.png``, ``<full name>-2.png``, ...: what run_experiment and radas analyze
    save without a plot_path; those older than the run's start are an earlier run's), and
    figures at the top of the experiment's own folder."""
    candidates: list[Path | _store.UriPath] = []
    user = info.get("user_name")
    if isinstance(user, str):
        with contextlib.suppress(RadasError, OSError):
            candidates += _figures_of(figures_dir(user), location.name, _started(info))
    with contextlib.suppress(OSError):
        candidates += sorted(
            (p for p in location.iterdir() if p.name.lower().endswith(FIGURE_TYPES)), key=str
        )
    return [_figure(path) for path in candidates if not path.name.startswith(".")]


def _figures_of(folder: Path, full_name: str, started: float | None) -> list[Path]:
    # <full name>.png, -2.png, ...; <full name>.live.png: the live figure of a script
    own = re.compile(re.escape(full_name) + r"(-\d+|\.live)?")
    return sorted(
        path
        for path in folder.glob(f"{full_name}*")
        if own.fullmatch(path.stem)
        and path.suffix.lower() in FIGURE_TYPES
        and (started is None or path.stat().st_mtime >= started)
    )


def _started(info: dict[str, Any]) -> float | None:
    """When the stored run started (``radas_experiment.json``, local time to the second)."""
    try:
        return datetime.strptime(str(info["started"]), "%Y-%m-%dT%H:%M:%S").timestamp()
    except (KeyError, ValueError):
        return None


def _figure(path: Path | _store.UriPath) -> SavedFigure:
    media_type = IMAGE_TYPES.get(os.path.splitext(path.name)[1].lower())
    figure = SavedFigure(name=path.name, path=str(path), media_type=media_type)
    if media_type is not None:
        try:
            content = path.read_bytes()
        except OSError:
            figure.media_type = None
        else:
            if len(content) <= MAX_FIGURE_BYTES:
                figure.content = content
            else:
                figure.media_type = None
    return figure


def last_update(location: _store.Location) -> datetime | None:
    """The newest change of the files a run keeps writing (its trial records, its history,
    Tune's newest state), or of the folder itself."""
    candidates = [
        location,
        location / tune_state.TRIAL_RECORDS_FILE,
        location / HISTORY_DIR,
        *tune_state.state_files(location)[-1:],
    ]
    stamps: list[datetime] = []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            if isinstance(candidate, _store.UriPath):
                mtime = candidate.filesystem.get_file_info(candidate.fs_path).mtime
                if mtime is not None:
                    stamps.append(mtime.astimezone().replace(tzinfo=None))
            else:
                stamps.append(datetime.fromtimestamp(candidate.stat().st_mtime))
    return max(stamps) if stamps else None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not math.isnan(float(value))
