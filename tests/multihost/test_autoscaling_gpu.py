"""A GPU node type that scales from zero (Ray's real autoscaler, tests/support/autoscaling_bed.py):
one type of 4 CPUs and 1 GPU, min 0, max 1. The GPU is a resource Ray accounts for (it sets
CUDA_VISIBLE_DEVICES per trial), with no device behind it: this machine has none. So the
shares, the packing and the out-of-memory retry are real Ray's; computing on the GPU is
scripts/gpu-check.sh's, on a machine with one."""

from __future__ import annotations

import os

import pytest
from ray import tune

import radas
from support.autoscaling_bed import NodeType, proved_bed

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("autoscaling")]

NAME = "autogpu"


@pytest.fixture(scope="module")
def gpu_bed():
    types = {"gpu4": NodeType({"CPU": 4, "GPU": 1}, max_workers=1)}
    with proved_bed(NAME, types, idle_timeout_minutes=0.25) as bed:
        bed.wait_scaled_to(0)
        yield bed


def gpu_share(config):
    import ray

    share = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    try:
        radas.verify_gpu()
        verdict = "passed"
    except radas.GPUNotAvailableError as err:
        verdict = f"refused: {err}"
    if config.get("cuda_oom_below", 0) > share:
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0)")
    return {
        "gpu": share,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "verify_gpu": verdict,
    }


def test_four_trials_share_one_gpu_of_a_type_launched_from_zero(gpu_bed, project, capsys):
    results = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="gpu-share",
        trainable=gpu_share,
        param_space={"i": tune.grid_search([0, 1, 2, 3])},
        run_with=f"cluster:{NAME}",
        cpu_per_trial=1,  # a quarter of the type's 4 CPUs: a quarter of its GPU
        run_choice="run",
    )
    df = results["df"]
    assert set(df["status"]) == {"TERMINATED"} and len(df) == 4
    assert set(df["gpu"]) == {0.25}
    assert set(df["cuda_visible_devices"]) == {"0"}  # Ray's per-trial device list
    # a GPU Ray accounts for without a device is never taken for one
    assert all(verdict.startswith("refused: ") for verdict in df["verify_gpu"]), df["verify_gpu"]
    assert "trials are sized from its largest node type, gpu4" in capsys.readouterr().out
    assert len(gpu_bed.launched()) >= 2  # the proof's node, then one for this sweep


def test_a_cuda_out_of_memory_trial_runs_again_with_twice_the_gpu(gpu_bed, project):
    results = radas.run_experiment_sync(
        user_name="alice",
        experiment_name="gpu-oom",
        trainable=gpu_share,
        param_space={"i": tune.grid_search([0, 1]), "cuda_oom_below": 0.5},
        run_with=f"cluster:{NAME}",
        cpu_per_trial=1,
        run_choice="run",
    )
    df = results["df"]
    assert set(df["status"]) == {"TERMINATED"}, df[["config/i", "status", "error"]]
    assert set(df["gpu"]) == {0.5}
    assert results["outcome"].cpu_per_trial == 2
    assert len(results["outcome"].memory_retried) == 2
