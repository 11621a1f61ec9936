"""Email: ``send_email`` (``radas.notify.smtp``), and the ``Notification`` mailed when an experiment
ends or fails, with its summary.

This module is ``radas.notify.email``; the standard library's ``email`` package is imported by its
absolute name.
"""

from __future__ import annotations

import io
import re
import socket
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from radas.core.console import warn
from radas.core.status import TrialCounts, experiment_status
from radas.errors import EmailConfigError
from radas.notify.smtp import SmtpSettings, mime_type, parse_recipients, send_email, smtp_settings
from radas.results import tune_state

if TYPE_CHECKING:
    from radas.results.experiment_result import ExperimentResult

# what run_experiment returns; a mapping with some of its keys is read the same way (by key)
Results: TypeAlias = "ExperimentResult | Mapping[str, Any]"

__all__ = [
    "ExperimentSummary",
    "Notification",
    "SmtpSettings",
    "best_result",
    "check_notification",
    "experiment_summary",
    "notify_experiment",
    "send_email",
    "smtp_settings",
]
HEAD_ROWS = 10
TRACEBACK_LINES = 25


def check_notification(
    to_address: str | Sequence[str], *, smtp: SmtpSettings | Mapping[str, Any] | None = None
) -> bool:
    """Check before an experiment starts that its notification mail can be sent later.

    A malformed ``to_address`` raises InvalidArgumentError (nothing has run yet). SMTP
    settings that are missing or wrong give a RadasWarning and False; the experiment should
    run anyway. Nothing is sent and no server is contacted.

    >>> check_notification("not an address")
    Traceback (most recent call last):
    ...
    radas.errors.InvalidArgumentError: to_address='not an address' is not a mail address: ...
    """
    parse_recipients(to_address)
    try:
        smtp_settings(smtp)
    except EmailConfigError as err:
        warn(f"the notification mail to {to_address!r} will not be sent: {err}")
        return False
    return True


class Notification:
    """The mail about an experiment, sent when it ends or fails: ``run_experiment`` makes one
    for ``email_notification_to_address`` before the experiment starts (a malformed address
    fails then, missing SMTP settings warn then) and calls ``experiment_ended`` at its end.

    >>> notification = Notification("alice@example.com")  # doctest: +SKIP
    >>> notification.experiment_ended("lr-sweep", results=results)  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        to_address: str | Sequence[str],
        *,
        smtp: SmtpSettings | Mapping[str, Any] | None = None,
    ) -> None:
        check_notification(to_address, smtp=smtp)
        self.to_address, self.smtp = to_address, smtp

    def experiment_ended(
        self,
        experiment_name: str,
        *,
        results: Results | None = None,
        error: BaseException | None = None,
    ) -> bool:
        """Send the summary of ``results`` (the ``ExperimentResult`` run_experiment returns)
        or of ``error``."""
        return notify_experiment(
            self.to_address,
            experiment_name=experiment_name,
            results=results,
            error=error,
            smtp=self.smtp,
        )


def notify_experiment(
    to_address: str | Sequence[str],
    *,
    experiment_name: str,
    results: Results | None = None,
    error: BaseException | None = None,
    smtp: SmtpSettings | Mapping[str, Any] | None = None,
) -> bool:
    """Mail the summary of an experiment that ended (``results``) or failed (``error``).

    The mail says the status, the trial counts, the best result (by the metric and mode of
    the experiment's ``tune_config``; none without them), the first rows of the DataFrame and
    where the results are stored, with the figure attached; a failure mail gives the error
    and the end of its traceback. ``results`` is the ``ExperimentResult`` ``run_experiment``
    returns (or a mapping with some of its keys). Returns True
    when the mail was sent; a failure (settings, server) is a RadasWarning and gives False,
    so the experiment's results are never lost to a mail problem.

    >>> notify_experiment("alice@example.com", experiment_name="lr-sweep",  # doctest: +SKIP
    ...                   results=results)
    True
    """
    try:
        try:
            summary = experiment_summary(
                experiment_name=experiment_name, results=results, error=error
            )
        except Exception as err:  # a broken summary must not cost the mail itself
            summary = _minimal_summary(experiment_name, results, error, err)
        send_email(to_address, summary.subject, summary.body, summary.attachments, smtp=smtp)
        return True
    except Exception as err:
        stored = _experiment_path(results, error)
        kept = f" The experiment's results are not affected (stored at {stored})." if stored else ""
        warn(
            f"the notification mail about {experiment_name!r} to {to_address!r} was not sent: "
            f"{err}{kept}"
        )
        return False


@dataclass
class ExperimentSummary:
    """What the notification mail says: plain data, built before anything is sent."""

    subject: str
    body: str
    attachments: list[tuple[str, bytes, str]] = field(default_factory=list)
    status: str = ""
    best: dict[str, Any] | None = None


def experiment_summary(
    *,
    experiment_name: str,
    results: Results | None = None,
    error: BaseException | None = None,
) -> ExperimentSummary:
    """The notification mail's subject, body and attachments (see ``notify_experiment``)."""
    if results is None and error is not None:
        results = getattr(error, "results", None)  # what a failed run kept
    results = dict(results or {})
    outcome, tuner = results.get("outcome"), results.get("tuner")
    raw = _safe(lambda: tuner.get_dataframe() if tuner is not None else None)
    raw_df = raw if hasattr(raw, "columns") else None
    counts = _status_counts(raw_df)
    if outcome is not None:
        trials = TrialCounts(outcome.total_trials, outcome.finished_trials, outcome.errored_trials)
    elif counts:
        trials = TrialCounts(
            sum(counts.values()), counts.get("TERMINATED", 0), counts.get("ERROR", 0)
        )
    else:
        trials = None
    failure = type(error).__name__
    status = experiment_status(
        "FAILED" if error is not None else "ENDED",
        trials,
        unknown="no trials could be read",
        failure=failure,
    )
    done = f" ({trials.finished}/{trials.total} trials done)" if trials else ""
    headline = f"FAILED: {failure}" if error is not None else status + done
    subject = f"[radas] {experiment_name} {headline}"

    stored = _experiment_path(results, error)
    lines = [f"radas experiment {experiment_name!r}: {status}", ""]
    lines += _facts(results, error, trials, counts, stored)
    # only the metric and mode the user gave (stored with the experiment): never a guess
    stored_metric = tune_state.stored_metric_and_mode(stored) if stored else (None, None)
    best = _safe(lambda: best_result(raw_df, *stored_metric))
    lines += _trial_lines(best, raw_df)
    df = results.get("df")
    if df is None:
        df = _safe(lambda: tuner.get_brief_dataframe() if tuner is not None else None)
    if hasattr(df, "head"):
        lines += [
            "",
            f"First rows of the DataFrame ({len(df)} rows x {len(df.columns)} columns):",
            _safe(lambda: df.head(HEAD_ROWS).to_string(max_cols=14, max_colwidth=40)),
        ]
    attachments = []
    figure = _safe(lambda: _figure_attachment(results, experiment_name))
    if isinstance(figure, tuple):
        attachments.append(figure)
        lines += ["", f"Figure:       attached ({figure[0]})"]
        lines += (
            [f"              saved at {results['fig_path']}"] if results.get("fig_path") else []
        )
    lines += _error_lines(error)
    if stored:
        lines += [
            "",
            "Re-analyze without re-running: run_experiment(..., dos=['analyze']); continue "
            "unfinished or errored trials: run_choice='restore'.",
        ]
    body = "\n".join(str(line) for line in lines) + "\n"
    return ExperimentSummary(
        subject, body, attachments, status, best if isinstance(best, dict) else None
    )


def _facts(
    results: dict[str, Any],
    error: BaseException | None,
    trials: TrialCounts | None,
    counts: dict[str, int],
    stored: str,
) -> list[str]:
    """The summary's first lines: the error, the trials, how long, where it ran and is kept."""
    outcome = results.get("outcome")
    lines = [f"Error:        {type(error).__name__}: {error}"] if error is not None else []
    if trials is not None:
        detail = f"{trials.total} total, {trials.finished} finished, {trials.errored} errored"
        others = {key: value for key, value in counts.items() if key not in ("TERMINATED", "ERROR")}
        detail += "".join(f", {value} {key}" for key, value in sorted(others.items()))
        if outcome is not None and outcome.already_done:
            detail += f" ({outcome.already_done} were already done before this restore)"
        lines.append(f"Trials:       {detail}")
    if outcome is not None and outcome.seconds:
        lines.append(f"Duration:     {outcome.seconds:.1f} s")
    if results.get("run_with"):
        lines.append(
            f"Run with:     {results['run_with']} (run_choice={results.get('run_choice')!r})"
        )
    lines += [f"Results:      {stored}"] if stored else []
    job_id = getattr(error, "job_id", None)
    lines += [f"Job id:       {job_id}"] if job_id else []
    lines.append(f"Sent from:    {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return lines


def _trial_lines(best: Any, raw_df: Any) -> list[str]:
    """The best result (``best_result``, when there is one) and the errored trials."""
    lines: list[str] = []
    if isinstance(best, dict):
        lines += [
            "",
            f"Best result ({best['mode']} {best['metric']}, from the experiment's tune_config):",
        ]
        lines += [f"  {key} = {value}" for key, value in best["row"].items()]
    if raw_df is not None and "error" in raw_df.columns:
        failed = raw_df[raw_df["error"].notna()]
        if len(failed):
            lines += ["", f"Errored trials ({len(failed)}):"]
            lines += [
                f"  {row.get('trial_id')}: {row['error']}"
                for _, row in failed.head(HEAD_ROWS).iterrows()
            ]
    return lines


def _error_lines(error: BaseException | None) -> list[str]:
    """A failure's traceback tail and the end of its job's output."""
    if error is None:
        return []
    lines = ["", "Traceback (last lines):", _traceback_tail(error)]
    logs_tail = str(getattr(error, "logs_tail", "") or "")
    if logs_tail:
        lines += ["", "End of the job's output:", *logs_tail.splitlines()[-TRACEBACK_LINES:]]
    return lines


def _minimal_summary(
    experiment_name: str,
    results: Results | None,
    error: BaseException | None,
    problem: BaseException,
) -> ExperimentSummary:
    run = "FAILED" if error is not None else "ENDED"
    status = experiment_status(
        run, None, unknown="the summary could not be made", failure=type(error).__name__
    )
    lines = [f"radas experiment {experiment_name!r}: {status}", ""]
    lines += [f"Error:        {type(error).__name__}: {error}"] if error is not None else []
    stored = _experiment_path(results, error)
    lines += [f"Results:      {stored}"] if stored else []
    lines.append(f"(The full summary could not be made: {type(problem).__name__}: {problem})")
    subject = f"[radas] {experiment_name} " + (
        f"FAILED: {type(error).__name__}" if error is not None else status
    )
    return ExperimentSummary(subject=subject, body="\n".join(lines) + "\n", status=status)


def _safe(make: Any) -> Any:
    """A part of the summary, or a note that it could not be made (the mail still goes)."""
    try:
        return make()
    except Exception as err:
        return f"(not available: {type(err).__name__}: {err})"


def _status_counts(raw_df: Any) -> dict[str, int]:
    if raw_df is None or "status" not in raw_df.columns:
        return {}
    return {str(key): int(value) for key, value in raw_df["status"].value_counts().items()}


def _experiment_path(results: Results | None, error: BaseException | None) -> str:
    for source in (results, getattr(error, "results", None)):
        if isinstance(source, Mapping) and source.get("experiment_path"):
            return str(source["experiment_path"])
    return ""


def best_result(raw_df: Any, metric: str | None, mode: str | None) -> dict[str, Any] | None:
    """The best trial of ``raw_df`` (``radas.Tuner.get_dataframe()``) by ``metric`` and
    ``mode`` ("min" or "max"), as plain data: ``{"metric", "mode", "value", "row"}``, the row
    holding the metric, ``config/*``, ``trial_id`` and ``training_iteration`` of that trial.
    None without both (radas never guesses which metric matters or its direction), or when
    no trial reported the metric.

    >>> import pandas as pd
    >>> best = best_result(pd.DataFrame({"loss": [0.3, 0.1], "config/lr": [1, 2]}), "loss", "min")
    >>> sorted(best["row"]), int(best["row"]["config/lr"])
    (['config/lr', 'loss'], 2)
    """
    import pandas as pd

    if raw_df is None or metric is None or mode not in ("min", "max") or metric not in raw_df:
        return None
    values = pd.to_numeric(raw_df[metric], errors="coerce")
    if values.notna().sum() == 0:
        return None
    row = raw_df.loc[values.idxmin() if mode == "min" else values.idxmax()]
    keys = [metric, *(key for key in raw_df.columns if str(key).startswith("config/"))]
    keys += [key for key in ("trial_id", "training_iteration") if key in raw_df.columns]
    return {"metric": metric, "mode": mode, "value": row[metric], "row": {k: row[k] for k in keys}}


def _figure_attachment(results: Results, experiment_name: str) -> tuple[str, bytes, str] | None:
    fig_path = results.get("fig_path")
    if fig_path and Path(fig_path).is_file():
        return Path(fig_path).name, Path(fig_path).read_bytes(), mime_type(Path(fig_path).name)
    figure = results.get("fig")
    if figure is None or not hasattr(figure, "savefig"):
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment_name).strip("_") or "figure"
    return f"{name}.png", buffer.getvalue(), "image/png"


def _traceback_tail(error: BaseException) -> str:
    """The chain of causes, then the end of the innermost cause's traceback (where it broke)."""
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    lines = [f"Caused by: {type(cause).__name__}: {cause}" for cause in chain[1:]]
    root = chain[-1]
    frames = traceback.format_exception(type(root), root, root.__traceback__, chain=False)
    tail = "".join(frames).rstrip().splitlines()[-TRACEBACK_LINES:]
    return "\n".join([*lines, *(["", *tail] if lines else tail)])
