"""Stopping a local cluster: only the process groups radas started for it.

A cluster whose jobs still run is refused unless forced (then its jobs are asked to stop,
so Tune saves their state); a cluster whose head died has what it left running ended
(``local.end_leftovers``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from radas.clusters.config import get_cluster
from radas.clusters.local import LocalCluster, end_leftovers, recorded_cluster
from radas.clusters.node_processes import is_ray_start
from radas.core.console import print_info, print_warning
from radas.core.poll import wait_until
from radas.errors import ClusterError

if TYPE_CHECKING:
    from radas.backends.job_client import JobServer

JOB_STOP_WAIT_S = 60.0  # cluster down --force: how long jobs may take to save their state


def stop_local_cluster(name: str = "local", *, force: bool = False) -> bool:
    """Stop the local cluster ``name``: only the process groups radas started for it.

    Refused while jobs run on it (ClusterError listing them) unless ``force=True``, which
    stops them first (gracefully: Tune saves their state, ``restore`` continues them; then
    killed after ``JOB_STOP_WAIT_S``). No job driver of the cluster runs when it returns.
    Its config entry stays (it then shows offline), as do its results. A cluster whose head
    died has what it left running ended (its processes are named). False if nothing ran.
    """
    cluster = recorded_cluster(name)
    if cluster is not None and not is_ray_start(cluster.head.pid):
        ended = end_leftovers(cluster)
        if ended:
            print_info(
                f"local cluster {name!r} was down (its head process had exited); ended the "
                f"{len(ended)} process(es) it left running: {', '.join(ended)}"
            )
            return True
        cluster = None
    if cluster is None:
        get_cluster(name)  # unknown names get the UnknownClusterError listing known ones
        return False
    server, running = _running_jobs(cluster)
    if running and not force:
        listing = "\n".join(f"  {job_id}  {what}" for job_id, what in running.items())
        raise ClusterError(
            f"Local cluster {name!r} still runs {len(running)} job(s):\n{listing}\n"
            f"Stopping it would kill them. Stop them first (`radas stop JOB_ID --cluster "
            f"{name}`; run_choice='restore' continues an experiment later), or `radas cluster "
            f"down {name} --force` (stop_local_cluster({name!r}, force=True)) stops them "
            "gracefully, then the cluster."
        )
    if running and server is not None:
        try:
            _stop_jobs(server, list(running))
        except ClusterError as err:  # the server went while stopping: the nodes go anyway
            print_warning(f"stopping the jobs of {name!r} failed ({err}); killing them")
    cluster.stop()
    return True


def _running_jobs(cluster: LocalCluster) -> tuple[JobServer | None, dict[str, str]]:
    """The job server (None when it does not answer) and its running jobs: id -> what."""
    from radas.backends.ray_jobs import ACTIVE_STATUSES, connect

    try:
        server = connect(get_cluster(cluster.name))
        jobs = server.list_jobs()
    except ClusterError as err:
        print_warning(
            f"cannot list the jobs of {cluster.name!r} ({err}); stopping it anyway, with "
            "whatever job drivers run on it"
        )
        return None, {}
    running = {}
    for job in jobs:
        if str(getattr(job.status, "value", job.status)) in ACTIVE_STATUSES:
            metadata = job.metadata or {}
            what = (
                f"experiment {metadata['radas_experiment']!r} of {metadata['radas_user']!r}"
                if "radas_user" in metadata
                else f"entrypoint {job.entrypoint!r}"
            )
            running[job.submission_id or job.job_id] = what
    return server, running


def _stop_jobs(server: JobServer, job_ids: list[str]) -> None:
    """Ask each job to stop (its driver saves Tune's state), wait up to JOB_STOP_WAIT_S."""
    from radas.backends.ray_jobs import ACTIVE_STATUSES

    for job_id in job_ids:
        server.stop_job(job_id)
    print_info(f"stopping {len(job_ids)} job(s): {', '.join(job_ids)}")
    try:
        wait_until(
            lambda: all(server.get_job_status(job) not in ACTIVE_STATUSES for job in job_ids),
            JOB_STOP_WAIT_S,
            what="the jobs to stop",
        )
    except TimeoutError:
        print_warning(f"jobs still running after {JOB_STOP_WAIT_S:g} s are killed with the cluster")
