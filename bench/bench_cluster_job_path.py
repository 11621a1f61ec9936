"""The cluster-job path's checks and bounds, timed (issue 23), with the servers of
tests/ray/test_cluster_jobs.py on 127.0.0.1.

1. Path roots the cluster does not share (a head in a mount namespace of its own, where the
   roots are an empty tmpfs; needs root): seconds from ``run_experiment_sync`` to the
   ClusterConfigError, against the same 1-trial run on a local cluster whose roots are shared
   (the least the job cost before, when it ran to its end and then found no results).
2. A server that trickles its answers (headers, then a byte every 0.5 s):
   ``list_experiments`` with RADAS_CLUSTER_TIMEOUT_S=2, against one request with a per-read
   timeout of 2 s (what radas sent before), given up on after ``TRICKLE_CAP_S``.
3. A head whose answer to a submission comes 3 s late (RADAS_CLUSTER_TIMEOUT_S=2): the run's
   seconds; and one that answers the first 2 submissions "try again later".

    .venv/bin/python bench/bench_cluster_job_path.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

HOME = Path(tempfile.mkdtemp(prefix="radas-bench-"))
os.environ["RADAS_HOME"] = str(HOME)
os.environ["RADAS_CONFIG"] = str(HOME / "config.toml")
os.environ["RADAS_CLUSTER_TIMEOUT_S"] = "2"
TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "ray"), str(TESTS)]  # test_cluster_jobs, and its support.*

import requests  # noqa: E402
from test_cluster_jobs import (  # noqa: E402
    _can_unshare,
    head_with_private_folder,
    register_at,
    run_on,
    slow_head,
    trickling_server,
)

import radas  # noqa: E402
from radas.clusters import start_local_cluster  # noqa: E402
from radas.clusters.config import unregister_cluster  # noqa: E402
from radas.errors import ClusterError  # noqa: E402

TRICKLE_CAP_S = 60.0


def timed(function, *args, **kwargs) -> tuple[float, str]:
    start = time.monotonic()
    try:
        function(*args, **kwargs)
        outcome = "ok"
    except (ClusterError, requests.RequestException) as err:
        outcome = type(err).__name__
    return time.monotonic() - start, outcome


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="radas-bench-work-"))
    os.chdir(work)
    if _can_unshare():
        with head_with_private_folder(f"unshared-{uuid.uuid4().hex[:6]}", work / "mnt") as c:
            took, outcome = timed(run_on, c.name, experiment_name="e")
        print(f"1. roots not shared: refused in {took:.1f} s ({outcome})")
    else:
        print("1. roots not shared: skipped (needs root for a mount namespace)")
    shared = start_local_cluster(f"shared-{uuid.uuid4().hex[:6]}", num_cpus=2)
    try:
        took, outcome = timed(run_on, shared.name, experiment_name="e")
        print(f"   the same run with shared roots: {took:.1f} s ({outcome})")

        with slow_head(shared.name, delay_submit_s=3) as (name, _proxy):
            took, outcome = timed(run_on, name, experiment_name="slow")
        print(f"3. submission answered 3 s late (status bound 2 s): {took:.1f} s ({outcome})")
        with slow_head(shared.name, refuse_submits=2) as (name, proxy):
            took, outcome = timed(run_on, name, experiment_name="again")
        print(
            f"   2 'try again later' answers, then accepted: {took:.1f} s ({outcome}, "
            f"{proxy.submissions} submissions)"
        )
    finally:
        shared.stop()
        unregister_cluster(shared.name)

    with trickling_server() as port:
        name = register_at(f"http://127.0.0.1:{port}", work)
        client = radas.get_client(user_name="alice", run_with=f"cluster:{name}")
        took, outcome = timed(client.list_experiments)
        print(f"2. trickling server: list_experiments ended in {took:.1f} s ({outcome})")
        start = time.monotonic()
        try:
            with requests.get(
                f"http://127.0.0.1:{port}/api/jobs/", timeout=(2, 2), stream=True
            ) as response:
                for _ in response.iter_content(1):
                    if time.monotonic() - start > TRICKLE_CAP_S:
                        break
        except requests.RequestException:
            pass
        took = time.monotonic() - start
        capped = " (given up: still reading)" if took > TRICKLE_CAP_S else ""
        print(f"   one request with a 2 s per-read timeout: {took:.1f} s{capped}")
        unregister_cluster(name)


if __name__ == "__main__":
    main()
