"""A real out-of-memory kill by Ray's memory monitor, retried with more resources by radas."""

from __future__ import annotations

import psutil
import pytest
from ray import tune

import radas

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def hog(config):
    import time

    import numpy as np

    block = np.ones(config["bytes"] // 8)  # touches every page: real resident memory
    time.sleep(6)
    return {"allocated_gib": block.nbytes / 2**30}


@pytest.fixture(scope="module")
def tight_cluster():
    """A 2-CPU local cluster whose memory monitor kills workers above a threshold set so that
    one trial's allocation fits and two at once do not (from the memory in use right now)."""
    from radas.clusters import start_local_cluster

    memory = psutil.virtual_memory()
    allocation = int(0.25 * memory.total)
    in_use = memory.total - memory.available
    threshold = (in_use + 1.5 * allocation) / memory.total
    cluster = start_local_cluster(
        "oomcluster",
        num_cpus=2,
        env={
            "RAY_memory_usage_threshold": f"{threshold:.3f}",
            "RAY_memory_monitor_refresh_ms": "100",
        },
    )
    yield cluster, allocation
    cluster.stop()


def test_oom_killed_trial_is_retried_with_more_resources_and_completes(tight_cluster, project):
    _, allocation = tight_cluster
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="real-oom",
        trainable=hog,
        param_space={"i": tune.grid_search([0, 1]), "bytes": allocation},
        run_with="cluster:oomcluster",
        run_choice="run",
        cpu_per_trial=1,
    )
    df = results["df"]
    assert set(df["status"]) == {"TERMINATED"}, df[["status", "error"]]
    retried = results["outcome"].memory_retried
    assert 1 <= len(retried) <= 2
    assert df.set_index("trial_id").loc[retried, "cpu_per_trial"].tolist() == [2.0] * len(retried)
    assert results["outcome"].cpu_per_trial == 2
