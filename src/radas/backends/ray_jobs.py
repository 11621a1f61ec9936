"""``run_with="cluster:<name>"``: the experiment runs as a Ray Job on a named cluster.

The client pickles the ``SweepSpec`` (trainable included, by value for project code), puts it
in the cluster's memory under a random key (``submission.hand_over_spec``: no file on any
node; the driver reads and deletes it), ships the working directory and the radas package
itself (``py_modules``), and submits ``python -m radas.backends.job_driver <key>``, which runs
``sweep.run_sweep`` on the cluster. Before the sweep starts, the driver checks that the
cluster sees the config's path roots as the client does (``_shared_roots``). The client
streams the job's output, and reads the results from the cluster's results root when it ends.

A submission (uploads included) has its own bound, ``RADAS_SUBMIT_TIMEOUT_S``; when it
times out or the connection breaks, radas asks whether its job id (the same for every client
starting this run) exists before reporting, and follows the job when it does.

Jobs carry metadata (user, experiment, full name), which is how every lifecycle operation
finds "the job of this experiment". Every call to the job server goes through
``_job_client.JobServer``: bounded in time, its errors translated into RadasErrors. The async
methods make those calls in worker threads (``asyncio.to_thread``) and wait with
``asyncio.sleep`` (``radas.core.poll``), so several experiments are followed in one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import posixpath
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from radas.backends import shared_roots
from radas.backends.experiment_jobs import ACTIVE_STATUSES, ExperimentJob
from radas.backends.job_client import HTTPStatusError, JobServer, _quiet_ray_sdk, cluster_timeout_s
from radas.backends.submission import (
    check_working_dir,
    hand_over_spec,
    job_metadata,
    job_runtime_env,
    pickled_spec,
)
from radas.clusters import availability
from radas.clusters.config import ClusterConfig, config_path
from radas.core.console import RelayedOutput, print_info, print_warning
from radas.core.naming import user_option
from radas.core.poll import async_wait_until
from radas.core.secrets import HAND_OVER_ENV, hand_over
from radas.core.spec import RunTarget, SweepOutcome, SweepSpec
from radas.errors import (
    ClusterConfigError,
    ClusterError,
    ClusterOfflineError,
    ExperimentNotFoundError,
    ExperimentRunningError,
    JobFailedError,
    JobNotFoundError,
    StorageError,
)
from radas.results import tune_state
from radas.storage import store as _store

OUTCOME_FILE = "radas_job_outcome.json"
LOG_TAIL_LINES = 40
STATUS_POLL_S = 0.5  # the longest pause between two questions for a followed job's status
_RUN_NUMBER = re.compile(r"-r(\d+)$")  # the end of a job id made by _job_id


def connect(cluster: ClusterConfig, timeout_s: float | None = None) -> JobServer:
    """The job server of ``cluster``, authenticated with its Ray token; every call is bounded
    by ``timeout_s`` (default ``$RADAS_CLUSTER_TIMEOUT_S``, 10 s) and raises ClusterErrors."""
    return JobServer(cluster, timeout_s)


class RayJobsBackend:
    """Runs experiments as Ray Jobs on one named cluster."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster
        self.target = RunTarget("cluster", cluster.name)
        self._client: JobServer | None = None

    @property
    def client(self) -> JobServer:
        if self._client is None:
            self._client = connect(self.cluster)
        return self._client

    def results_root(self, user_name: str) -> str:
        root = self.cluster.results_root
        if _store.is_uri(root):  # an object store: the client reads it from there
            return posixpath.join(root.rstrip("/"), user_name)
        return str(Path(root) / user_name)

    def store_scope(self) -> contextlib.AbstractContextManager[None]:
        """Reads of this cluster's results go to its own S3 endpoint (``_store``), also when
        another configured cluster keeps results under the same URI on another server."""
        root = self.cluster.results_root
        if not _store.is_uri(root):
            return contextlib.nullcontext()
        return _store.endpoint_scope({root: self.cluster.results_endpoint_url})

    # --- listing and control -------------------------------------------------------------

    def list_jobs(self, user_name: str | None = None) -> list[ExperimentJob]:
        """radas jobs on this cluster (of ``user_name`` only, when given), oldest first."""
        jobs = [ExperimentJob.from_details(details) for details in self.client.list_jobs()]
        mine = [j for j in jobs if j is not None and user_name in (None, j.user_name)]
        return sorted(mine, key=lambda job: job.start_time or datetime.min)

    def experiment_jobs(self, user_name: str, full_name: str) -> list[ExperimentJob]:
        return [job for job in self.list_jobs(user_name) if job.full_name == full_name]

    def running_probe(self, user_name: str, full_name: str) -> Callable[[], bool]:
        """Whether the experiment's job runs, for the Tuner to ask at each read (a run holds
        the experiment's lock on the cluster, out of this machine's sight when the results
        are in an object store). A cluster that does not answer is not asked again: the lock
        alone tells then."""
        answers = True

        def job_running() -> bool:
            nonlocal answers
            if answers:
                try:
                    return any(job.active for job in self.experiment_jobs(user_name, full_name))
                except ClusterError:
                    answers = False
            return False

        return job_running

    def get_job(self, job_id: str, user_name: str) -> ExperimentJob:
        """The job ``job_id`` if it is a radas job of ``user_name``; else JobNotFoundError."""
        try:
            details = self.client.get_job_info(job_id)
        except JobNotFoundError as err:
            raise JobNotFoundError(self._no_such_job(job_id, user_name)) from err
        job = ExperimentJob.from_details(details)
        if job is None or job.user_name != user_name:
            raise JobNotFoundError(self._no_such_job(job_id, user_name))
        return job

    def find_job(self, job_id: str) -> ExperimentJob:
        """The radas job ``job_id``, whoever submitted it (its user is in its metadata:
        ``job.user_name``); JobNotFoundError when the cluster has no radas job of that id."""
        try:
            job = ExperimentJob.from_details(self.client.get_job_info(job_id))
        except JobNotFoundError:
            job = None
        if job is None:
            name = self.cluster.name
            raise JobNotFoundError(
                f"No radas job {job_id!r} on cluster:{name} (no such job, or one radas did "
                f"not submit). `radas ls --cluster {name}` lists your job ids (with --user "
                "NAME, another user's)."
            )
        return job

    def stop(self, job: ExperimentJob) -> bool:
        """Ask the job to stop: its driver gets SIGINT, Tune saves state and exits."""
        return bool(self.client.stop_job(job.job_id))

    def logs(self, job_id: str) -> str:
        return self.client.get_job_logs(job_id)

    async def follow(self, job_id: str) -> str:
        """Stream the job's output here until it ends; returns its final status.

        The output streams as Ray delivers it (in bursts); the end is noticed by polling the
        status (off the event loop), then the rest of the output is printed. Ctrl-C detaches
        (the job keeps running) and says how to attach again. The cluster going away raises
        ClusterOfflineError once, and the output stream is closed with it. The output passes
        through ``console.RelayedOutput`` (no ANSI codes into a pipe, no job-supervisor
        records unless asked for).
        """
        printed = 0
        output = RelayedOutput(sys.stdout)

        async def stream() -> None:
            nonlocal printed
            async for chunk in self.client.tail_job_logs(job_id):
                output.write(chunk)
                printed += len(chunk)

        try:
            streaming = asyncio.create_task(stream())
            try:
                status = await self._wait_until_ended(job_id)
            finally:
                streaming.cancel()
                # its error, if any, is the status poll's too: retrieved here, reported once
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await streaming
            output.write((await asyncio.to_thread(self.logs, job_id))[printed:])
            output.close()
        except (asyncio.CancelledError, KeyboardInterrupt):
            print_warning(
                f"detached from job {job_id}; it keeps running on cluster:{self.cluster.name}. "
                "Follow it again with run_choice='attach', stop it with run_choice="
                f"'stop_attach', or in a shell: radas logs {job_id} --cluster "
                f"{self.cluster.name} --follow"
            )
            raise
        return status

    def went_away(
        self, err: ClusterOfflineError, job_id: str, experiment_name: str, stored_at: str
    ) -> ClusterOfflineError:
        """The one error for "the cluster went away while following ``job_id``"."""
        return ClusterOfflineError(
            f"cluster:{self.cluster.name} went away while radas followed job {job_id} of "
            f"experiment {experiment_name!r} ({err}) Results stored so far are kept at "
            f"{stored_at}. Once the cluster is back (a local one: `radas cluster up "
            f"{self.cluster.name}`), run_choice='restore' continues the experiment "
            "(run_choice='attach' if its job is still running)."
        )

    async def _wait_until_ended(self, job_id: str) -> str:
        """The job's final status, asked with back-off up to ``STATUS_POLL_S``. A question the
        cluster does not answer is asked again: the cluster counts as gone (the
        ClusterOfflineError is raised) once it has not answered for ``RADAS_CLUSTER_TIMEOUT_S``
        (a busy head may miss one answer)."""
        failing_since: float | None = None

        def ended() -> str | None:
            nonlocal failing_since
            try:
                status = self.client.get_job_status(job_id)
            except ClusterOfflineError:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= self.client.timeout_s:
                    raise
                return None
            failing_since = None
            return None if status in ACTIVE_STATUSES else status

        return await async_wait_until(
            ended, float("inf"), what=f"job {job_id} to end", max_delay_s=STATUS_POLL_S
        )

    # --- the Backend interface ---------------------------------------------------------

    async def run(self, spec: SweepSpec, *, runtime_env: dict[str, Any]) -> SweepOutcome:
        job_id = await asyncio.to_thread(self._check_and_submit, spec, runtime_env)
        print_info(
            f"{spec.experiment_name}: submitted as job {job_id} to cluster:{self.cluster.name}; "
            "streaming its output (Ctrl-C detaches, the job keeps running)"
        )
        return await self._follow_to_outcome(job_id, spec)

    def _check_request_fits(self, spec: SweepSpec) -> None:
        """Refuse, before submitting, a request no node type of the cluster can hold: sized
        from the config's overrides where given, else from the cluster's nodes (a cluster
        without an autoscaler) or from the node types its last radas job read (one with an
        autoscaler). Where neither is known, the job's driver checks on the cluster."""
        status = availability.probe(self.cluster, timeout_s=cluster_timeout_s())
        status.sizing().check(spec.cpu_per_trial, where=f"cluster:{self.cluster.name}")

    def _check_and_submit(self, spec: SweepSpec, runtime_env: dict[str, Any]) -> str:
        """Check that the experiment may start on this cluster, submit it; its job id."""
        self._check_request_fits(spec)
        _store.check_writable(
            self.cluster.results_root,
            what=f"Nothing was submitted to cluster:{self.cluster.name}; its results_root is "
            f"set in {config_path()}.",
        )
        earlier = self.experiment_jobs(spec.user_name, spec.full_name)
        running = [job for job in earlier if job.active]
        if running:
            raise ExperimentRunningError(
                f"Experiment {spec.experiment_name!r} is still running on "
                f"cluster:{self.cluster.name} as job {running[-1].job_id}. Use "
                "run_choice='attach' to follow it, or run_choice='stop_attach' to stop it "
                "(its state is saved; run_choice='restore' continues it later)."
            )
        if spec.run_choice == "restore" and not tune_state.has_stored_experiment(
            spec.experiment_path
        ):
            raise ExperimentNotFoundError(
                f"Nothing to restore for experiment {spec.experiment_name!r} on "
                f"cluster:{self.cluster.name}: no stored state at {spec.experiment_path}. "
                "Start it with run_choice='run'."
            )
        # Every client starting this run now computes the same id; the job server accepts an id
        # once, so of two clients starting it together exactly one gets its job.
        job_id = _job_id(spec.user_name, spec.experiment_name, spec.full_name, earlier)
        markers = self._write_root_markers(job_id)
        try:
            self._submit(spec, runtime_env, job_id, markers)
        except ClusterOfflineError as err:  # no answer: the job may exist all the same
            if isinstance(err.__cause__, HTTPStatusError):  # an answer: "still starting"
                shared_roots.remove_own_markers(markers)
                raise
            if self._created_anyway(job_id, spec):
                print_info(
                    f"{spec.experiment_name}: cluster:{self.cluster.name} did not confirm the "
                    f"submission, but job {job_id} exists: following it"
                )
                return job_id
            # the markers stay: should the job appear later, its driver looks for them
            raise ClusterOfflineError(
                f"{err} No job {job_id} exists on the cluster: nothing was submitted. Once "
                "the cluster answers, run the experiment again (should the job still appear, "
                f"`radas ls --cluster {self.cluster.name}{user_option(spec.user_name)}` shows "
                "it, run_choice='attach' "
                "follows it, and a new run is refused while it runs)."
            ) from err
        except ClusterError as err:
            shared_roots.remove_own_markers(markers)
            if not self._started_by_another_client(err, job_id, spec):
                raise
            raise ExperimentRunningError(
                f"Experiment {spec.experiment_name!r} was just started on cluster:"
                f"{self.cluster.name} by another client (job {job_id}). Use "
                "run_choice='attach' to follow it, or run_choice='stop_attach' to stop it "
                "(its state is saved; run_choice='restore' continues it later)."
            ) from err
        except BaseException:
            shared_roots.remove_own_markers(markers)
            raise
        return job_id

    def _write_root_markers(self, job_id: str) -> dict[str, list[str]]:
        """The markers the job's driver looks for under the cluster's path roots."""
        try:
            return shared_roots.write_markers(self.cluster, job_id)
        except OSError as err:
            raise StorageError(
                f"Cannot write to results_root {self.cluster.results_root!r} of cluster:"
                f"{self.cluster.name} from this machine ({err}). The client reads the results "
                "there: it must be a folder this machine and every node share, or an object "
                f'store (results_root = "s3://bucket/prefix") in [clusters.{self.cluster.name}] '
                f"of {config_path()}. Nothing was submitted."
            ) from err

    def _created_anyway(self, job_id: str, spec: SweepSpec) -> bool:
        """Whether job ``job_id`` of ``spec`` exists although its submission got no answer: a
        busy head may create it after radas stopped waiting, so radas asks for up to
        ``RADAS_CLUSTER_TIMEOUT_S``. False also when the cluster does not answer at all."""
        from radas.core.poll import wait_until

        def exists() -> bool:
            try:
                return self.get_job(job_id, spec.user_name).full_name == spec.full_name
            except ClusterError:  # none (yet), or no answer: asked again
                return False

        try:
            return bool(wait_until(exists, self.client.timeout_s, what=f"job {job_id} to appear"))
        except TimeoutError:
            return False

    async def attach(self, spec: SweepSpec, *, stop: bool) -> SweepOutcome:
        jobs = await asyncio.to_thread(self.experiment_jobs, spec.user_name, spec.full_name)
        if not jobs:
            raise JobNotFoundError(
                f"No job of experiment {spec.experiment_name!r} on cluster:"
                f"{self.cluster.name} for user {spec.user_name!r}. "
                f"{self._what_exists(spec.user_name)} Start it with run_choice='run'."
            )
        job = jobs[-1]
        if stop:
            if not job.active:
                raise JobNotFoundError(
                    f"Nothing of experiment {spec.experiment_name!r} is running on cluster:"
                    f"{self.cluster.name}: its latest job {job.job_id} is {job.status}. "
                    "Use run_choice='attach' (or dos=['analyze']) to analyze it, or "
                    "run_choice='restore' to continue it."
                )
            await asyncio.to_thread(self.stop, job)
            print_info(
                f"{spec.experiment_name}: stopping job {job.job_id} (Tune saves the "
                "experiment's state; run_choice='restore' continues it)"
            )
        if job.active or stop:
            print_info(f"{spec.experiment_name}: following job {job.job_id}")
            return await self._follow_to_outcome(job.job_id, spec)
        print_info(f"{spec.experiment_name}: job {job.job_id} already ended ({job.status})")
        return await asyncio.to_thread(self._outcome, job.job_id, spec)

    # --- internals -----------------------------------------------------------------------

    async def _follow_to_outcome(self, job_id: str, spec: SweepSpec) -> SweepOutcome:
        try:
            status = await self.follow(job_id)
        except ClusterOfflineError as err:
            raise self.went_away(err, job_id, spec.experiment_name, spec.experiment_path) from err
        if status == "FAILED":
            details = await asyncio.to_thread(self.client.get_job_info, job_id)
            logs = await asyncio.to_thread(self.logs, job_id)
            unseen = shared_roots.unseen_in(logs)
            if unseen:
                shared_roots.remove_markers(self.cluster, job_id)
                raise ClusterConfigError(shared_roots.not_shared_message(self.cluster.name, unseen))
            tail = "\n".join(logs.splitlines()[-LOG_TAIL_LINES:])
            raise JobFailedError(
                f"Job {job_id} of experiment {spec.experiment_name!r} failed on cluster:"
                f"{self.cluster.name}: {details.message}\nThe end of its output:\n{tail}\n"
                f"All of it: `radas logs {job_id} --cluster {self.cluster.name}`. Results "
                "stored before the failure are kept: fix the cause, then "
                "run_choice='restore' continues the experiment.",
                job_id=job_id,
                logs_tail=tail,
            )
        if status == "STOPPED":
            print_info(f"{spec.experiment_name}: job {job_id} stopped")
        return await asyncio.to_thread(self._outcome, job_id, spec)

    def _outcome(self, job_id: str, spec: SweepSpec) -> SweepOutcome:
        with self.store_scope():
            return self._stored_outcome(job_id, spec)

    def _stored_outcome(self, job_id: str, spec: SweepSpec) -> SweepOutcome:
        stored = _store.location(spec.experiment_path) / OUTCOME_FILE
        if stored.exists():
            record = json.loads(stored.read_text())
            if record.pop("job_id", None) == job_id:
                return SweepOutcome(**record)
        trials = tune_state.load_trial_states(spec.experiment_path)
        if not trials:
            raise ExperimentNotFoundError(
                f"Job {job_id} ended but no results are stored at {spec.experiment_path}; "
                f"see its output with `radas logs {job_id} --cluster {self.cluster.name}`."
            )
        return SweepOutcome.of_trials(spec.experiment_path, trials)

    def _submit(
        self,
        spec: SweepSpec,
        runtime_env: dict[str, Any],
        job_id: str,
        markers: dict[str, list[str]],
    ) -> str:
        import ray

        from radas.ray_compat.versions import check_pair

        # the cluster's Ray unpickles and runs what this client's Ray pickled
        problem = check_pair(ray.__version__, self.client.ray_version, self.cluster.name)
        if problem:
            raise ClusterError(f"{problem} Nothing was submitted.")
        cwd = Path.cwd()
        check_working_dir(cwd, runtime_env.get("excludes", []), cluster_name=self.cluster.name)
        pickled = pickled_spec(spec)
        env = job_runtime_env(self.cluster, runtime_env, cwd, job_id, markers)
        with self.client.submitting():  # one bound for the uploads and the submission
            spec_key = hand_over_spec(self.client, pickled)
            if spec.secrets:  # never in the runtime_env (Ray logs it): only their key is
                env["env_vars"][HAND_OVER_ENV] = hand_over(self.client, spec.secrets)
            with _quiet_ray_sdk():
                return self.client.submit_job(
                    entrypoint=f"python -u -m radas.backends.job_driver {spec_key}",
                    submission_id=job_id,
                    runtime_env=env,
                    metadata=job_metadata(spec, cwd),
                )

    def _started_by_another_client(self, err: ClusterError, job_id: str, spec: SweepSpec) -> bool:
        """Whether the job server refused ``job_id`` because another client of the same
        experiment submitted it first (Ray reports that as an error status with a traceback,
        so radas asks whether the job exists rather than reading the message)."""
        if not isinstance(err.__cause__, HTTPStatusError):
            return False  # no answer (timeout, offline): the job may even be ours
        try:
            job = self.get_job(job_id, spec.user_name)
        except JobNotFoundError:
            return False
        return job.full_name == spec.full_name

    def _what_exists(self, user_name: str) -> str:
        names = sorted({job.experiment_name for job in self.list_jobs(user_name)})
        if not names:
            return f"User {user_name!r} has no experiments there."
        return f"User {user_name!r} has: {', '.join(map(repr, names))}."

    def _no_such_job(self, job_id: str, user_name: str) -> str:
        return (
            f"No job {job_id!r} of user {user_name!r} on cluster:{self.cluster.name} (it does "
            "not exist, or belongs to another user: a client lists and stops its user's jobs "
            "only). "
            f"{self._what_exists(user_name)} `radas ls --cluster {self.cluster.name} --user "
            f"{user_name}` lists their job ids."
        )


def _job_id(
    user_name: str, experiment_name: str, full_name: str, earlier: list[ExperimentJob]
) -> str:
    """The submission id of the experiment's next run, the same for every client starting it
    now: ``radas-<user>-<name>-<hash of user and full name>-r<run number>``, where the run
    number follows the earlier jobs of the experiment (also when some were deleted).

    >>> _job_id("alice", "lr sweep", "_home_alice_lr_sweep", [])
    'radas-alice-lr-sweep-be0070eda1-r1'
    """
    numbers = [int(match[1]) for job in earlier if (match := _RUN_NUMBER.search(job.job_id))]
    run_number = max([len(earlier), *numbers]) + 1
    safe = "".join(c if c.isalnum() else "-" for c in experiment_name)[:40].strip("-")
    digest = hashlib.sha256(f"{user_name}/{full_name}".encode()).hexdigest()[:10]
    return f"radas-{user_name}-{safe}-{digest}-r{run_number}"
