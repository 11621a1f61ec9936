"""cpu_per_trial, out-of-memory retries with doubled resources, failure kinds, GPU checks."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from ray import tune

import radas
from radas import resources
from radas.clusters import shape
from radas.errors import GPUNotAvailableError, ResourceRequestError, TrialsOutOfMemoryError
from radas.ray_compat.oom import ActorOutOfMemoryError
from radas.resources import NodeCapacity

# The local Ray has this machine's CPUs: a retry with doubled cpu_per_trial needs two.
needs_two_local_cpus = pytest.mark.skipif(
    (os.cpu_count() or 1) < 2, reason="doubling cpu_per_trial needs 2 CPUs"
)


def test_request_is_proportional_to_the_largest_node():
    gpu_node = NodeCapacity(cpus=16, gpus=4, memory_bytes=64 * 2**30)
    assert resources.trial_resources(1, gpu_node) == {
        "cpu": 1,
        "gpu": 0.25,
        "memory": 4 * 2**30,
    }
    assert resources.trial_resources(8, gpu_node)["gpu"] == 2.0
    assert resources.trial_resources(6, gpu_node)["gpu"] == 1.0  # whole GPUs above one
    assert resources.trial_resources(16, gpu_node)["memory"] == 64 * 2**30  # never above the node
    assert resources.next_cpu_per_trial(1, gpu_node) == 2
    assert resources.next_cpu_per_trial(12, gpu_node) == 16
    assert resources.next_cpu_per_trial(16, gpu_node) is None
    with pytest.raises(ResourceRequestError, match=r"cpu_per_trial=32 .* \(16 CPUs, 4 GPUs"):
        resources.check_fits(32, gpu_node, where="cluster:gpu")


def test_nodes_of_one_size_each_fit_a_trial_of_that_size():
    """Ray measures each node's memory when it starts: three 1-CPU hosts of one kind report
    different amounts (as on the multi-host bed); a 1-CPU trial must fit on each of them."""
    nodes = [
        {"CPU": 1.0, "memory": 23_059_197_696.0, "node:__internal_head__": 1.0},
        {"CPU": 1.0, "memory": 22_759_042_816.0},
        {"CPU": 1.0, "memory": 22_759_042_900.0},
        {"CPU": 0.5, "memory": 1e9},
    ]
    request = resources.trial_resources(1, _largest(nodes))
    assert request == {"cpu": 1, "memory": 22_759_042_816}
    assert all(request["memory"] <= node["memory"] for node in nodes[:3])
    gpu = _largest([{"CPU": 8, "GPU": 1, "memory": 9e9}, {"CPU": 8, "memory": 1e9}])
    assert gpu == NodeCapacity(cpus=8, gpus=1, memory_bytes=9e9)  # only nodes of the same size


def _largest(nodes: list[dict[str, float]]) -> NodeCapacity | None:
    """The largest node of a cluster without an autoscaler whose alive nodes are ``nodes``."""
    return shape.from_reports([{"resources": node} for node in nodes], None, None).largest()


def test_failures_are_classified_by_kind():
    from ray import exceptions

    class TorchOOM(RuntimeError):
        pass

    assert resources.classify_failure(ActorOutOfMemoryError("low on memory")) == "memory"
    assert (
        resources.classify_failure(None, "torch.OutOfMemoryError: CUDA out of memory.") == "memory"
    )
    assert resources.classify_failure(exceptions.ActorUnavailableError("gone", b"x" * 16)) == "lost"
    assert resources.classify_failure(None, "ray.exceptions.NodeDiedError: node died") == "lost"
    assert resources.classify_failure(TorchOOM("boom")) == "error"
    assert resources.classify_failure(ValueError("bad lr")) == "error"
    assert resources.classify_failure(None, "ValueError: bad lr") == "error"


def needs_two_cpus(config):
    import ray

    (config["marks"] / f"{config['big']}-{config['i']}-{uuid.uuid4().hex}").touch()
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
    if config["big"] and cpus < 2:
        raise MemoryError("this trial needs the memory of 2 CPUs")
    return {"cpus": cpus}


@needs_two_local_cpus
@pytest.mark.slow
def test_memory_errors_are_retried_with_doubled_cpus_only_for_those_trials(project, capsys):
    marks = project / "marks"
    marks.mkdir()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="oom-retry",
        trainable=needs_two_cpus,
        param_space={
            "big": tune.grid_search([True, False]),
            "i": tune.grid_search([0, 1]),
            "marks": marks,
        },
        cpu_per_trial=1,
        run_choice="run",
    )
    out = capsys.readouterr().out
    df = results["df"]
    assert set(df["status"]) == {"TERMINATED"}
    big, small = df[df["config/big"]], df[~df["config/big"]]
    assert big["cpus"].tolist() == [2.0, 2.0] and big["cpu_per_trial"].tolist() == [2.0, 2.0]
    assert small["cpus"].tolist() == [1.0, 1.0] and small["cpu_per_trial"].tolist() == [1.0, 1.0]
    assert [len(list(marks.glob(f"False-{i}-*"))) for i in (0, 1)] == [1, 1]  # untouched
    assert [len(list(marks.glob(f"True-{i}-*"))) for i in (0, 1)] == [2, 2]  # failed once
    assert "Start with cpu_per_trial=2 next time" in out
    assert sorted(results["outcome"].memory_retried) == sorted(big["trial_id"])


def test_other_failures_are_not_retried_with_more_resources(project):
    marks = project / "marks"
    marks.mkdir()

    def broken(config):
        (marks / uuid.uuid4().hex).touch()
        raise ValueError("a bug, not a lack of memory")

    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="not-oom",
        trainable=broken,
        param_space={"i": tune.grid_search([0, 1])},
        run_choice="run",
    )
    assert set(results["df"]["status"]) == {"ERROR"}
    assert results["df"]["cpu_per_trial"].tolist() == [1.0, 1.0]
    assert len(list(marks.iterdir())) == 2
    assert results["outcome"].memory_retried == []


@pytest.mark.slow
def test_still_out_of_memory_at_the_largest_node_fails_clearly(project):
    def always_oom(config):
        raise MemoryError("never enough")

    with pytest.raises(TrialsOutOfMemoryError) as info:
        radas.run_experiment_sync(
            user_name="tester",
            experiment_name="hopeless",
            trainable=always_oom,
            param_space={"i": tune.grid_search([0, 1])},
            run_choice="run",
        )
    # doubled from 1 up to the largest node: this machine's CPUs, as the local Ray has them
    most = shape.current_largest_node().cpus
    assert len(info.value.trial_ids) == 2 and info.value.cpu_per_trial == most
    assert f"cpu_per_trial={most:g}, the most one node can give" in str(info.value)
    assert "dos=['analyze']" in str(info.value)


def test_a_request_bigger_than_the_machine_is_refused_before_running(project):
    too_many = 4 * (os.cpu_count() or 1)
    with pytest.raises(ResourceRequestError, match=rf"cpu_per_trial={too_many} asks for more"):
        radas.run_experiment_sync(
            user_name="tester",
            experiment_name="huge",
            trainable=lambda c: {},
            param_space={},
            run_choice="run",
            cpu_per_trial=too_many,
        )


@needs_two_local_cpus
@pytest.mark.slow
def test_optuna_trials_that_ran_out_of_memory_are_retried_not_duplicated(project):
    from ray.tune.search.optuna import OptunaSearch

    def oom_for_big_x(config):
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0)
        if config["x"] > 5 and cpus < 2:
            raise MemoryError("large x needs more memory")
        return {"loss": (config["x"] - 2) ** 2}

    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="optuna-oom",
        trainable=oom_for_big_x,
        param_space={"x": tune.uniform(0, 10)},
        run_choice="run",
        tuner_init_kwargs=dict(
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(seed=1),
                metric="loss",
                mode="min",
                num_samples=12,
            )
        ),
    )
    df = results["df"]
    assert len(df) == 12 and df["trial_id"].is_unique
    assert set(df["status"]) == {"TERMINATED"}
    assert (df.loc[df["config/x"] > 5, "cpu_per_trial"] == 2).all()
    assert ((df["config/x"] - 2) ** 2 - df["loss"]).abs().max() < 1e-9


def test_verify_gpu_refuses_cpu_fallback(project):
    def on_cpu(config):
        try:
            radas.verify_gpu()
        except GPUNotAvailableError as err:
            return {"refused": str(err)}
        return {"refused": ""}

    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="gpu-check",
        trainable=on_cpu,
        param_space={},
        run_choice="run",
    )
    assert "given 0 GPU(s) by Ray" in results["df"]["refused"].item()
    with pytest.raises(GPUNotAvailableError, match="would run on the CPU"):
        radas.verify_gpu()  # on this (client) process: no GPU assigned either


@pytest.mark.gpu
def test_verify_gpu_on_a_real_gpu(project):
    torch = pytest.importorskip("torch", reason="torch is not installed here")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")

    def on_gpu(config):
        info = radas.verify_gpu()
        x = torch.randn(256, 256, device="cuda")
        return {"device": info["device"], "norm": float((x @ x.T).trace().cpu())}

    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="gpu-real",
        trainable=on_gpu,
        param_space={},
        run_choice="run",
    )
    assert results["df"]["status"].item() == "TERMINATED"
    assert results["df"]["gpu_per_trial"].item() > 0


def needs_the_whole_node(config):
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources()["CPU"]
    if config["big"] and cpus < config["whole"]:
        raise MemoryError("not enough memory with less than the whole node's share")
    return {"cpus": cpus}


@pytest.mark.slow  # three fits and a restart of Ray: 29 s under load
@needs_two_local_cpus
def test_resources_held_between_fits_are_freed_so_a_whole_node_retry_runs(
    project, monkeypatch, capsys
):
    """Ray 2.60 can leak a placement-group bundle (ray-project/ray#64693): one CPU stays
    reserved for the rest of the session, and an out-of-memory retry asking for the whole
    node waited forever. The leak cannot be caused on demand, so an actor nobody uses stands
    in for it here: radas restarts its own in-process Ray before the fit, and the retry runs."""
    import ray

    from radas.backends import local

    monkeypatch.setattr(local, "LEAK_SETTLE_S", 1.0)
    local.ensure_local_ray({})
    assert local._started_with is not None  # radas's own Ray (the only one radas restarts)
    whole = shape.current_largest_node().cpus  # this machine's CPUs: the last retry asks for all

    @ray.remote(num_cpus=1)
    class Holder:
        def ping(self) -> int:
            return 1

    holder = Holder.remote()
    assert ray.get(holder.ping.remote()) == 1
    assert local._held_resources().get("CPU") == 1

    results = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="held-cpu",
        trainable=needs_the_whole_node,
        param_space={"big": tune.grid_search([False, True]), "whole": whole},
        cpu_per_trial=1,
        run_choice="run",
    )
    cpus = results["df"].set_index("config/big")["cpu_per_trial"].to_dict()
    assert cpus == {False: 1, True: whole}
    assert set(results["df"]["status"]) == {"TERMINATED"}
    output = capsys.readouterr()
    assert "restarting radas's in-process Ray" in output.out + output.err
    deadline = time.monotonic() + 60  # Tune removes its placement groups asynchronously
    while local._held_resources() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert local._held_resources() == {}
