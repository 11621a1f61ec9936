"""``radas.get_client``: a user's experiments on a named cluster, as jobs to list and control;
``radas.list_experiments``, local or on a cluster."""

from __future__ import annotations

import asyncio
import json
import posixpath
from datetime import datetime

import pandas as pd

from radas.backends import get_backend
from radas.backends.experiment_jobs import ACTIVE_STATUSES, ExperimentJob
from radas.backends.ray_jobs import OUTCOME_FILE, RayJobsBackend
from radas.core.args import checked_keywords
from radas.core.console import print_info
from radas.core.naming import get_current_user_name, validate_user_name
from radas.core.poll import wait_until
from radas.core.spec import RunTarget, parse_run_with
from radas.core.status import TrialCounts, experiment_status
from radas.errors import ClusterError, ClusterOfflineError, NotSupportedError, RadasError
from radas.results.listing import NOTHING_STORED, local_listing, read_trial_counts
from radas.storage import store


@checked_keywords
def list_experiments(*, user_name: str | None = None, run_with: str = "local") -> pd.DataFrame:
    """The stored experiments of ``user_name`` (default: ``radas.get_current_user_name()``:
    ``RADAS_USER``, else the radas config's ``user`` key, else the login name), one row each.

    ``run_with="local"``: the experiments stored on this machine, with columns experiment,
    cwd (the folder it was run from), status, finished, errored, total, last_update, path,
    full_name and problem (what could not be read, if anything). ``run_with="cluster:<name>"``:
    the user's jobs on that cluster, as ``radas.get_client(...).list_experiments()``.

    >>> radas.list_experiments(user_name="alice")  # doctest: +SKIP
      experiment            cwd    status  finished  errored  total  ...
    0     ab-grid  /home/alice/p  FINISHED         6        0      6  ...
    """
    user_name = validate_user_name(user_name or get_current_user_name())
    target = parse_run_with(run_with)
    if target.kind != "local":
        return _client(user_name, target).list_experiments()
    return local_listing(user_name)


@checked_keywords
def get_client(*, user_name: str, run_with: str) -> ExperimentsClient:
    """The experiments of ``user_name`` on the cluster ``run_with="cluster:<name>"``.

    >>> client = radas.get_client(user_name="alice", run_with="cluster:dev")  # doctest: +SKIP
    >>> client.display_experiments()  # doctest: +SKIP
    """
    validate_user_name(user_name)
    return _client(user_name, parse_run_with(run_with))


def client_of_job(job_id: str, *, run_with: str) -> ExperimentsClient:
    """The client of the user who submitted the radas job ``job_id`` on the cluster
    ``run_with="cluster:<name>"``, read from the job's metadata: what ``radas logs JOB_ID`` and
    ``radas stop JOB_ID`` act as when no --user is given. JobNotFoundError when the cluster
    has no radas job of that id."""
    backend = _jobs_backend(parse_run_with(run_with))
    return ExperimentsClient(backend.find_job(job_id).user_name, backend)


def _client(user_name: str, target: RunTarget) -> ExperimentsClient:
    return ExperimentsClient(user_name, _jobs_backend(target))


def _jobs_backend(target: RunTarget) -> RayJobsBackend:
    backend = get_backend(target)
    if not isinstance(backend, RayJobsBackend):
        raise NotSupportedError(
            "get_client manages experiments running as jobs on a named cluster; with "
            "run_with='local' they run inside your own process. To look at local results use "
            "radas.run_experiment(..., dos=['analyze']) or radas.Tuner(path)."
        )
    return backend


class ExperimentsClient:
    """List, follow and stop one user's experiment jobs on one cluster.

    Other users' jobs are neither listed nor stoppable through it.
    """

    def __init__(self, user_name: str, backend: RayJobsBackend) -> None:
        self.user_name = user_name
        self.backend = backend

    @property
    def run_with(self) -> str:
        return str(self.backend.target)

    def __repr__(self) -> str:
        return f"radas.get_client(user_name={self.user_name!r}, run_with={self.run_with!r})"

    def jobs(self) -> list[ExperimentJob]:
        """This user's radas jobs on the cluster, oldest first."""
        return self.backend.list_jobs(self.user_name)

    def list_experiments(self) -> pd.DataFrame:
        """One row per job: job_id, experiment, status, start/end time, run_choice, full_name,
        cwd, message, job_status, and the trials finished / errored / total.

        ``status`` is the experiment's (``FINISHED, 3 of 3 trials errored``), from its trials
        stored under the cluster's results root; ``job_status`` is the Ray job's own
        (``SUCCEEDED``). When this machine cannot read the trials, the status says so and the
        counts are missing.
        """
        columns = [
            "job_id",
            "experiment",
            "status",
            "start_time",
            "end_time",
            "run_choice",
            "full_name",
            "cwd",
            "message",
            "job_status",
            "finished",
            "errored",
            "total",
        ]
        rows = []
        for job, status, counts in self._with_statuses(self.jobs()):
            numbers = [counts.finished, counts.errored, counts.total] if counts else [None] * 3
            rows.append(
                [
                    job.job_id,
                    job.experiment_name,
                    status,
                    job.start_time,
                    job.end_time,
                    job.run_choice,
                    job.full_name,
                    job.cwd,
                    job.message,
                    job.status,
                    *numbers,
                ]
            )
        return pd.DataFrame(rows, columns=columns).astype(
            {name: "Int64" for name in ("finished", "errored", "total")}
        )

    def _with_statuses(
        self, jobs: list[ExperimentJob]
    ) -> list[tuple[ExperimentJob, str, TrialCounts | None]]:
        """Each job with its experiment's status (``radas.core.status``) and trial counts."""
        counts = job_trial_counts(self.backend, self.user_name, jobs)
        listed = []
        for job in jobs:
            trials, unknown = counts[job.job_id]
            listed.append((job, experiment_status(job.status, trials, unknown=unknown), trials))
        return listed

    def experiment_outcome(self, job_id: str) -> tuple[str, TrialCounts | None]:
        """The status of the job's experiment, as ``list_experiments`` shows it (``FINISHED,
        3 of 3 trials errored``; ``get_job_status`` gives the Ray job's own, ``SUCCEEDED``),
        and its trial counts (``.total``, ``.finished``, ``.errored``; None when they cannot
        be read from here).

        >>> client.experiment_outcome(job_id)  # doctest: +SKIP
        ('FINISHED, 3 of 3 trials errored', TrialCounts(total=3, finished=0, errored=3))
        """
        job = self.backend.get_job(job_id, self.user_name)
        # the experiment's other jobs are listed with it: its stored trials are the newest's
        same = [other for other in self.jobs() if other.full_name == job.full_name]
        if job.job_id not in {other.job_id for other in same}:
            same.append(job)  # not listed yet
        same = [job if other.job_id == job.job_id else other for other in same]
        [(_, status, counts)] = [
            listed for listed in self._with_statuses(same) if listed[0].job_id == job.job_id
        ]
        return status, counts

    def display_experiments(self) -> None:
        """Print this user's experiments with their status and the code to stop running ones."""
        print(self.experiments_text())

    def experiments_text(self, *, user_from: str = "", shell: bool = False) -> str:
        """What ``display_experiments`` prints; ``user_from``: where the user name came from,
        shown after it in the first line (``radas ls``: ``RADAS_USER``, ``--user``, ...);
        ``shell``: how to stop a running job as a ``radas stop`` command, not Python."""
        jobs = self.jobs()
        whose = f"{self.user_name!r} ({user_from})" if user_from else repr(self.user_name)
        title = f"Experiments of {whose} on {self.run_with}: {len(jobs)} job(s)"
        if not jobs:
            return title
        header = f"{'job id':<48} {'experiment':<20} {'started':<19}  {'ended':<19}  status"
        lines = [title, header]
        for job, status, _ in self._with_statuses(jobs):
            lines.append(
                f"{job.job_id:<48} {job.experiment_name[:20]:<20} "
                f"{_time(job.start_time):<19}  {_time(job.end_time):<19}  {status}"
            )
            if job.active and shell:
                cluster = self.backend.cluster.name
                lines.append(f"    stop it: radas stop {job.job_id} --cluster {cluster}")
            elif job.active:
                lines.append(f"    stop it: {self!r}.stop_job_by_id({job.job_id!r})")
        return "\n".join(lines)

    def get_job_status(self, job_id: str) -> str:
        return self.backend.get_job(job_id, self.user_name).status

    def get_job_logs(self, job_id: str) -> str:
        """Everything the job printed so far."""
        self.backend.get_job(job_id, self.user_name)
        return self.backend.logs(job_id)

    async def follow_job(self, job_id: str) -> str:
        """Stream the job's output until it ends; returns its final status."""
        job = await asyncio.to_thread(self.backend.get_job, job_id, self.user_name)
        try:
            return await self.backend.follow(job_id)
        except ClusterOfflineError as err:
            stored_at = posixpath.join(self.backend.results_root(self.user_name), job.full_name)
            raise self.backend.went_away(err, job_id, job.experiment_name, stored_at) from err

    def stop_job_by_id(self, job_id: str, *, wait: bool = True, timeout_s: float = 180) -> str:
        """Stop one of this user's jobs gracefully (Tune saves its state; ``restore`` continues).

        Returns the Ray job's status: ``"STOPPED"`` once stopped (with ``wait=True``). A job
        that had ended is left alone, and the line says how its experiment ended
        (``FINISHED, 3 of 3 trials errored``).
        """
        job = self.backend.get_job(job_id, self.user_name)
        if not job.active:
            status, _ = self.experiment_outcome(job_id)
            print_info(f"job {job_id} already ended: {status}; nothing to stop")
            return job.status
        self.backend.stop(job)
        print_info(f"stopping job {job_id} (experiment {job.experiment_name!r})")
        if not wait:
            return self.get_job_status(job_id)
        status = ""

        def stopped() -> bool:
            nonlocal status
            status = self.get_job_status(job_id)
            return status not in ACTIVE_STATUSES

        wait_until(stopped, timeout_s, what=f"job {job_id} to stop", error=ClusterError)
        return status

    def follow_job_sync(self, job_id: str) -> str:
        return asyncio.run(self.follow_job(job_id))


def _time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


# --- trial counts of the jobs -----------------------------------------------------------


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
    root = backend.results_root(user_name)
    unreadable = _unreadable(root)
    newest = {job.full_name: job.job_id for job in jobs}  # jobs come oldest first
    found: dict[str, tuple[TrialCounts | None, str]] = {}
    for job in jobs:
        if unreadable is not None:
            found[job.job_id] = (None, unreadable)
            continue
        path = store.location(root) / job.full_name
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
        if store.location(root).is_dir():
            return None
    except (OSError, RadasError) as err:
        return f"results root not readable here: {type(err).__name__}: {str(err)[:120]}"
    return f"results root not readable here: {root} is not found on this machine"


def _recorded_outcome(path: store.Location, job_id: str) -> TrialCounts | None:
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
