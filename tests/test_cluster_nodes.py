"""A 2-node local cluster: trials spread over both nodes, and a lost node loses no trial."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from ray import tune

import radas

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_nodes():
    from radas.clusters import start_local_cluster

    cluster = start_local_cluster("twonodes", num_cpus=1, worker_nodes=1, worker_cpus=1)
    yield cluster
    cluster.stop()


def where_am_i(config):
    import ray

    (config["marks"] / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
    time.sleep(config["seconds"])
    return {"node": ray.get_runtime_context().get_node_id()}


def test_trials_run_on_both_nodes_and_survive_losing_one(two_nodes, project):
    marks = project / "marks"
    marks.mkdir()
    first = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="spread",
        trainable=where_am_i,
        param_space={"i": tune.grid_search(list(range(4))), "seconds": 2, "marks": marks},
        run_with="cluster:twonodes",
        run_choice="run",
    )
    assert first["df"]["node"].nunique() == 2

    def kill_worker_when_busy():
        deadline = time.monotonic() + 120
        while len(list(marks.glob("start-*"))) < 4 + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        two_nodes.kill_worker_node(two_nodes.workers[0])

    killer = threading.Thread(target=kill_worker_when_busy, daemon=True)
    killer.start()
    second = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="lose-a-node",
        trainable=where_am_i,
        param_space={"i": tune.grid_search(list(range(8))), "seconds": 3, "marks": marks},
        run_with="cluster:twonodes",
        run_choice="run",
    )
    killer.join(timeout=5)
    assert not two_nodes.workers, "the worker node was not killed"
    df = second["df"]
    assert sorted(df["config/i"]) == list(range(8))
    assert set(df["status"]) == {"TERMINATED"}, df[["config/i", "status", "error"]]
    assert second["outcome"].finished_trials == 8
