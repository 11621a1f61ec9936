"""The storage scenario on a real local Ray cluster (``ray start`` on 127.0.0.1): data dirs and
cloud artifacts shared by the submitting side and the trainables, on the cluster's shared path
and on a real S3-compatible server (moto's server mode on 127.0.0.1)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from ray import tune

import radas
import radas.cloud_artifact as rda
from radas.clusters import register_cluster
from radas.clusters.config import get_cluster, unregister_cluster
from support.moto_s3 import moto_s3_server

pytestmark = pytest.mark.cluster
RUN_WITH = "cluster:testcluster"
USER = "storage-user"


def reads_data_and_saves_an_artifact(config):
    """Reads what the client put in the data dir; saves an artifact for the client."""
    import radas
    import radas.cloud_artifact as rda

    data_dir = radas.get_data_dir(USER)  # no run_with: the job says which cluster
    values = json.loads((Path(data_dir) / "input.json").read_text())["values"]
    total = sum(values) * config["i"]
    store = rda.init(user_name=USER)  # no paths: the job's store
    rda.save_cloud_artifact(
        f"results/trial-{config['i']}.pkl",
        {
            "total": total,
            "square": lambda x: x * x,  # cloudpickle: lambdas survive
            "data_dir": data_dir,
            "store": store.location,
        },
    )
    return {"total": total}


@pytest.mark.slow
def test_data_dir_in_and_artifacts_out_on_a_cluster(cluster, project):
    data_dir = radas.get_data_dir(USER, run_with=RUN_WITH)
    assert data_dir == str(Path(get_cluster("testcluster").data_root) / USER)
    (Path(data_dir) / "input.json").write_text(json.dumps({"values": [1, 2, 3]}))

    results = radas.run_experiment_sync(
        user_name=USER,
        experiment_name="storage",
        trainable=reads_data_and_saves_an_artifact,
        param_space={"i": tune.grid_search([1, 2])},
        run_with=RUN_WITH,
        run_choice="run",
    )
    assert sorted(results["df"]["total"]) == [6, 12]

    store = rda.init(user_name=USER, run_with=RUN_WITH)
    assert rda.list_cloud_artifacts("results") == ["results/trial-1.pkl", "results/trial-2.pkl"]
    for i in (1, 2):
        saved = rda.load_cloud_artifact(f"results/trial-{i}.pkl")
        assert saved["total"] == 6 * i
        assert saved["square"](7) == 49
        assert saved["data_dir"] == data_dir  # the same path on both sides
        assert saved["store"] == store.location


@pytest.fixture(scope="module")
def s3():
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def s3_cluster(cluster, s3):
    """The test cluster under a second name whose artifact store is the moto S3 server."""
    alias = dataclasses.replace(
        get_cluster("testcluster"),
        name="testcluster-s3",
        managed_by_radas=False,
        artifact_root=s3.url("cluster-artifacts"),
        artifact_endpoint_url=s3.endpoint_url,
    )
    register_cluster(alias)
    yield f"cluster:{alias.name}"
    unregister_cluster(alias.name)


def scales_an_input_from_s3(config):
    import numpy as np

    import radas.cloud_artifact as rda

    rda.init(user_name=USER)  # the job's store: S3, with the endpoint from the cluster config
    scale = rda.load_cloud_artifact("inputs/scale.json")["scale"]
    rda.save_cloud_artifact(f"outputs/{config['i']}.npy", np.full(3, scale * config["i"]))
    rda.save_cloud_artifact(f"outputs/{config['i']}-store.txt", rda.get_store().location)
    return {"scaled": scale * config["i"]}


@pytest.mark.slow
def test_s3_artifacts_between_client_and_trainables(s3_cluster, s3, project):
    store = rda.init(user_name=USER, run_with=s3_cluster)
    assert store.location == f"s3://{s3.bucket}/cluster-artifacts/{USER}"
    rda.save_cloud_artifact("inputs/scale.json", {"scale": 10})

    results = radas.run_experiment_sync(
        user_name=USER,
        experiment_name="s3-storage",
        trainable=scales_an_input_from_s3,
        # S3 credentials come from each machine's environment; here radas hands them to the
        # trials (never through runtime_env, which Ray logs)
        param_space={"i": tune.grid_search([1, 2]), "secrets": s3.env},
        run_with=s3_cluster,
        run_choice="run",
    )
    assert sorted(results["df"]["scaled"]) == [10, 20]

    for i in (1, 2):
        np.testing.assert_array_equal(rda.load_cloud_artifact(f"outputs/{i}.npy"), [10 * i] * 3)
        assert rda.load_cloud_artifact(f"outputs/{i}-store.txt") == store.location
    # really on the S3 server, not on a local path
    listed = boto3.client("s3", endpoint_url=s3.endpoint_url).list_objects_v2(
        Bucket=s3.bucket, Prefix=f"cluster-artifacts/{USER}/outputs/"
    )
    assert sorted(item["Key"].rsplit("/", 1)[-1] for item in listed["Contents"]) == [
        "1-store.txt",
        "1.npy",
        "2-store.txt",
        "2.npy",
    ]
