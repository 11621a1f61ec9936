"""A cluster's shape from what Ray publishes (radas.clusters.shape): node types, what the
autoscaler launches, sizing from the largest type, refusals, overrides. The reports below are
the autoscaler's status as Ray 2.59's v1 autoscaler published it on
tests/support/autoscaling_bed.py (the dashboard's camelCase JSON and the GCS's snake_case);
tests/multihost/test_autoscaling.py runs the same code against the live autoscaler."""

from __future__ import annotations

import json

import pytest

from radas.clusters import shape, shape_record
from radas.errors import NodeLaunchError, ResourceRequestError
from radas.ray_compat.autoscaler import v2_status_as_v1
from radas.resources import NodeCapacity, trial_resources
from radas.tune import progress

HEAD = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
WORKER = "fffffffffffffffffffffffffffffffffffffffffffffffffff00001"
# the dashboard's /api/cluster_status while the first worker launches
LAUNCHING = {
    "autoscalerReport": {
        "activeNodes": {"ray.head.default": 1},
        "idleNodes": None,
        "pendingNodes": [],
        "pendingLaunches": {"cpu2": 1},
        "failedNodes": [],
        "nodeAvailabilitySummary": {"nodeAvailabilities": {}},
        "pendingResources": {"CPU": 2},
        "nodeTypeMapping": {HEAD: "ray.head.default"},
        "legacy": True,
    },
    "loadMetricsReport": {"resourceDemand": [[{"CPU": 1.0}, 1]]},
}
# the GCS's record once the worker runs, and a launch of a GPU type failed
RUNNING = {
    "autoscaler_report": {
        "active_nodes": {"ray.head.default": 1, "cpu2": 1},
        "pending_launches": {},
        "pending_nodes": [],
        "failed_nodes": [],
        "node_availability_summary": {
            "node_availabilities": {
                "gpu4": {
                    "node_type": "gpu4",
                    "is_available": False,
                    "last_checked_timestamp": 1796615636.0,
                    "unavailable_node_information": {
                        "category": "QuotaExceeded",
                        "description": "no GPU quota in us-east-1",
                    },
                }
            }
        },
        "node_type_mapping": {HEAD: "ray.head.default", WORKER: "cpu2"},
    }
}
CONFIG = {  # a cluster launcher's autoscaling config, as on the head
    "max_workers": 3,
    "head_node_type": "ray.head.default",
    "available_node_types": {
        "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}},
        "cpu2": {"resources": {"CPU": 2}, "min_workers": 0, "max_workers": 2},
        "gpu4": {"resources": {"CPU": 4, "GPU": 1}, "max_workers": 1},
    },
}
ALIVE = [
    {"resources": {"CPU": 0.0, "memory": 16e9}, "node_id": HEAD, "ip": "127.0.0.1"},
    {"resources": {"CPU": 2.0, "memory": 15e9}, "node_id": WORKER, "ip": "127.0.0.1"},
]


def test_node_types_with_what_runs_and_launches():
    declared = shape.types_from_autoscaler_config(CONFIG)
    assert declared[0] == {
        "name": "ray.head.default",
        "resources": {"CPU": 0},
        "min_workers": 0,
        "max_workers": 0,
    }
    launching = shape.from_reports(ALIVE[:1], LAUNCHING, declared)
    types = {t.name: t for t in launching.node_types}
    assert (types["cpu2"].running, types["cpu2"].launching, types["cpu2"].max_workers) == (0, 1, 2)
    assert launching.autoscaling and launching.largest() == NodeCapacity(4, 1, 0)
    assert launching.waiting_text() == "waiting for 1 × cpu2 the autoscaler is launching"
    assert types["cpu2"].describe() == "cpu2: 0 running, 1 launching, up to 2 (2 CPUs, 0 GPUs each)"

    running = shape.from_reports(ALIVE, RUNNING, declared)
    cpu2 = {t.name: t for t in running.node_types}["cpu2"]
    assert cpu2.running == 1 and cpu2.resources["memory"] == 15e9  # measured on its node
    assert running.failures == ("gpu4: no GPU quota in us-east-1",)
    assert running.waiting_text() == (
        "the autoscaler's last launch failed: gpu4: no GPU quota in us-east-1"
    )


def test_a_request_is_refused_only_when_no_type_holds_it():
    cluster = shape.from_reports(ALIVE[:1], LAUNCHING, shape.types_from_autoscaler_config(CONFIG))
    largest = cluster.largest()
    assert trial_resources(1, largest) == {"cpu": 1, "gpu": 0.25}  # from the gpu4 type
    cluster.check_request({"cpu": 4, "gpu": 1}, "cluster:c")  # gpu4 holds it
    cluster.check_request({"cpu": 2}, "cluster:c")  # so does cpu2
    with pytest.raises(ResourceRequestError, match=r"ask for 2 CPUs, 2 GPUs, and no node type"):
        cluster.check_request({"cpu": 2, "gpu": 2}, "cluster:c")
    with pytest.raises(ResourceRequestError, match=r"1 TPU.*cpu2: 0 running, 1 launching"):
        cluster.check_request({"cpu": 1, "TPU": 1}, "cluster:c")


def test_the_dashboards_camel_case_is_read_back_to_the_types_names():
    """The dashboard's JSON turns every key to camelCase, type names too; a head without an
    autoscaling config reports each node as a type of its own (``node_<id>``)."""
    declared = [{"name": "worker_gpu", "resources": {"CPU": 4, "GPU": 1}, "max_workers": 2}]
    report = {"autoscalerReport": {"activeNodes": {"workerGpu": 1}, "pendingLaunches": {}}}
    cluster = shape.from_reports([], report, declared)
    assert [(t.name, t.running) for t in cluster.node_types] == [("worker_gpu", 1)]
    readonly = {"autoscalerReport": {"activeNodes": {"node" + "F73F9578Bdef" + "0" * 44: 1}}}
    plain = shape.from_reports(ALIVE, readonly, None)
    assert not plain.autoscaling and plain.largest() == NodeCapacity(2, 0, 15e9)


def test_types_no_config_declares_are_known_only_from_their_nodes():
    reported = shape.from_reports(ALIVE[:1], LAUNCHING, None)
    assert reported.autoscaling and reported.largest() is None  # cpu2's size is not known
    sized = shape.sizing(reported, shape.Overrides(), "cluster:k")
    assert sized.capacity is None and "could not read the node types" in sized.note
    with_worker = shape.from_reports(ALIVE, RUNNING, None)
    assert with_worker.largest() == NodeCapacity(2, 0, 15e9)  # from the running cpu2 node
    overridden = shape.sizing(reported, shape.Overrides(cpus=8, gpus=1), "cluster:k")
    assert overridden.capacity == NodeCapacity(8, 1, 0)


def test_the_config_overrides_the_cluster_and_says_so():
    cluster = shape.from_reports(ALIVE[:1], LAUNCHING, shape.types_from_autoscaler_config(CONFIG))
    same = shape.sizing(cluster, shape.Overrides(cpus=4, gpus=1), "cluster:c")
    assert same.capacity == NodeCapacity(4, 1, 0) and "radas uses the config's" not in same.note
    assert "trials are sized from its largest node type, gpu4" in same.note
    other = shape.sizing(cluster, shape.Overrides(cpus=32, gpus=8), "cluster:c")
    assert other.capacity == NodeCapacity(32, 8, 0)
    assert "the radas config says 32 CPUs, 8 GPUs per node" in other.note
    assert (
        "largest node has 4 CPUs, 1 GPUs" in other.note and "radas uses the config's" in other.note
    )


def test_without_an_autoscaler_the_alive_nodes_are_the_types():
    cluster = shape.from_reports(ALIVE, None, None)
    assert not cluster.autoscaling and cluster.largest() == NodeCapacity(2, 0, 15e9)
    sized = shape.sizing(cluster, shape.Overrides(), "this machine")
    assert sized.capacity == NodeCapacity(2, 0, 15e9) and sized.note is None


def test_autoscaler_v2s_status_reads_as_v1s_report():
    """KubeRay's autoscaler v2 publishes its status in the GCS, not v1's record: built here
    from Ray's own v2 schema (no live v2 autoscaler on this bed)."""
    from ray.autoscaler.v2.schema import ClusterStatus, LaunchRequest, NodeInfo, Stats

    def node(kind: str, node_id: str) -> NodeInfo:
        return NodeInfo(
            instance_type_name="m5.xlarge",
            ray_node_type_name=kind,
            instance_id=f"i-{node_id}",
            ip_address="10.0.0.1",
            node_id=node_id,
        )

    def launch(kind: str, count: int, details: str | None = None) -> LaunchRequest:
        return LaunchRequest(
            instance_type_name="m5.xlarge",
            ray_node_type_name=kind,
            count=count,
            state=LaunchRequest.Status.PENDING,
            request_ts_s=0,
            details=details,
        )

    status = ClusterStatus(
        active_nodes=[node("head", HEAD), node("cpu2", WORKER)],
        pending_launches=[launch("cpu2", 1)],
        failed_launches=[launch("gpu4", 1, "InsufficientInstanceCapacity")],
        stats=Stats(gcs_request_time_s=0.0),  # (required on Ray 2.55)
    )
    report = v2_status_as_v1(status)
    declared = shape.types_from_autoscaler_config(CONFIG)
    cluster = shape.from_reports(ALIVE, report, declared)
    cpu2 = {t.name: t for t in cluster.node_types}["cpu2"]
    assert (cpu2.running, cpu2.launching, cpu2.resources["memory"]) == (1, 1, 15e9)
    assert cluster.failures == ("gpu4: InsufficientInstanceCapacity",)
    assert cluster.waiting_text().startswith("waiting for 1 × cpu2 the autoscaler is launching")


def test_a_shape_survives_its_record():
    cluster = shape.from_reports(ALIVE, RUNNING, shape.types_from_autoscaler_config(CONFIG))
    assert shape.ClusterShape.from_dict(json.loads(json.dumps(cluster.to_dict()))) == cluster


def test_pending_trials_show_what_is_launching_and_give_up_on_failing_launches(monkeypatch):
    """The progress line reads the autoscaler's report while trials pend (here handed a
    shape instead of a live autoscaler: tests/multihost/test_autoscaling.py has the live one)."""
    declared = shape.types_from_autoscaler_config(CONFIG)
    reports = {"now": shape.from_reports(ALIVE[:1], LAUNCHING, declared)}
    monkeypatch.setattr(shape, "launch_status", lambda: reports["now"])
    monkeypatch.setenv(progress.LAUNCH_FAILURE_ENV, "60")
    line = progress.ProgressLine("exp")
    line._read_launch_status(pending=2, running=0, now=0.0)
    assert line._waiting == "waiting for 1 × cpu2 the autoscaler is launching"
    reports["now"] = shape.from_reports(ALIVE[:1], RUNNING, declared)  # gpu4 failed
    line._read_launch_status(pending=2, running=0, now=10.0)
    line._read_launch_status(pending=2, running=1, now=40.0)  # a trial runs: not stuck
    line._read_launch_status(pending=2, running=0, now=50.0)
    line._read_launch_status(pending=2, running=0, now=100.0)
    with pytest.raises(NodeLaunchError, match=r"for 60 s while 2 trial\(s\) waited.*no GPU quota"):
        line._read_launch_status(pending=2, running=0, now=110.0)
    line._read_launch_status(pending=0, running=0, now=120.0)
    assert line._waiting is None


def test_a_damaged_or_unwritable_record_is_gone_without_a_crash(tmp_path):
    """The record the driver leaves for the client is a convenience: a damaged one reads as
    none (the client then leaves the check to the driver), and a results root that cannot
    take it does not stop the sweep."""
    cluster = shape.from_reports(ALIVE, RUNNING, shape.types_from_autoscaler_config(CONFIG))
    shape_record.record(cluster, str(tmp_path))
    kept, read_at = shape_record.recorded(str(tmp_path))
    assert kept == cluster and read_at > 0
    record = tmp_path / shape_record.RECORD_FILE
    for damage in ("", "{not json", '{"read_at": 1}', '{"shape": {"node_types": [{"x": 1}]}}'):
        record.write_text(damage)
        assert shape_record.recorded(str(tmp_path)) is None, damage
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    shape_record.record(cluster, str(blocked))  # raises nothing
    assert shape_record.recorded(str(blocked)) is None
