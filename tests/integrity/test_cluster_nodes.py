"""A 2-node local cluster: trials spread over both nodes, and a lost node loses no trial."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import pytest
from ray import tune

import radas
from radas.core.poll import wait_until
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HEAD_RESOURCE = "node:__internal_head__"  # Ray gives the head node this resource


@pytest.fixture(scope="module")
def two_nodes():
    from radas.clusters import start_local_cluster

    cluster = start_local_cluster("twonodes", num_cpus=1, worker_nodes=1, worker_cpus=1)
    yield cluster
    cluster.stop()


def where_am_i(config):
    """Marks where it runs (``start-<i>-<head|worker>-...``). A trial on the head waits for a
    trial on the worker: with one CPU per node, Tune must then start one there (else, with
    actors reused, the head's quick trials may all end before the worker's actor has started,
    seconds under load). With ``meet`` the worker's trial waits for the head's in turn; without,
    it runs until its node is lost with it (the test fails if that does not happen)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    head = any(n["NodeID"] == node and HEAD_RESOURCE in n["Resources"] for n in ray.nodes())
    role = "head" if head else "worker"
    (config["marks"] / f"start-{config['i']}-{role}-{uuid.uuid4().hex}").touch()
    if head or config["meet"]:
        other = "worker" if head else "head"
        with contextlib.suppress(TimeoutError):  # the test's assertion says what went wrong
            wait_until(
                lambda: list(config["marks"].glob(f"start-*-{other}-*")),
                180,
                what=f"a trial on the {other}",
                max_delay_s=0.1,
            )
    else:
        time.sleep(180)
    time.sleep(config["seconds"])
    return {"node": role}


def test_trials_run_on_both_nodes_and_survive_losing_one(two_nodes, project):
    spread, lose = project / "spread", project / "lose"
    spread.mkdir()
    lose.mkdir()
    first = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="spread",
        trainable=where_am_i,
        param_space={
            "i": tune.grid_search(list(range(4))),
            "seconds": 0.5,
            "marks": spread,
            "meet": True,
        },
        run_with="cluster:twonodes",
        run_choice="run",
    )
    assert set(first["df"]["node"]) == {"head", "worker"}, first["df"][["config/i", "node"]]

    def kill_worker_when_it_runs_a_trial():
        wait_for(lambda: list(lose.glob("start-*-worker-*")), what="a trial on the worker")
        two_nodes.kill_worker_node(two_nodes.workers[0])

    killer = threading.Thread(target=kill_worker_when_it_runs_a_trial, daemon=True)
    killer.start()
    second = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="lose-a-node",
        trainable=where_am_i,
        param_space={
            "i": tune.grid_search(list(range(6))),
            "seconds": 1,
            "marks": lose,
            "meet": False,  # the worker's trial runs until the node is lost
        },
        run_with="cluster:twonodes",
        run_choice="run",
    )
    killer.join(timeout=5)
    assert not two_nodes.workers, "the worker node was not killed"
    df = second["df"]
    assert sorted(df["config/i"]) == list(range(6))
    assert set(df["status"]) == {"TERMINATED"}, df[["config/i", "status", "error"]]
    assert set(df["node"]) == {"head"}  # the trial lost with the worker finished on the head
    assert second["outcome"].finished_trials == 6


def test_availability_counts_a_machines_ram_once_for_its_nodes(two_nodes):
    """Both nodes run on this machine: each declares Ray's ``memory`` as if it were alone
    (issue 23: three nodes showed '64.0 of 64.0 GiB unreserved' on 23.5 GiB of RAM)."""
    from radas.clusters import availability, get_cluster_availability
    from radas.clusters.config import get_cluster

    config = get_cluster("twonodes")

    def status():
        return get_cluster_availability()["twonodes"]

    wait_for(lambda: status().nodes == 2 and status().physical_memory, what="both nodes' RAM")
    nodes = availability._get(config.address, "/nodes?view=summary", config.resolve_token(), 5)
    alive = [n for n in nodes["summary"] if n.get("raylet", {}).get("state") == "ALIVE"]
    declared = sum(n["raylet"]["resourcesTotal"]["memory"] for n in alive)
    ram = status().physical_memory["total"]
    assert len({n["hostname"] for n in alive}) == 1  # one machine
    assert status().total["memory"] == pytest.approx(min(declared, ram))
    assert status().total["memory"] <= ram
    text = str(get_cluster_availability())
    assert f"of {min(declared, ram) / 2**30:.1f} GiB unreserved for trials" in text
