"""radas on one real GPU: verify_gpu in fractional-GPU trials, a CUDA out-of-memory retried with
a bigger share, and the throughput of 4 trials packed on the GPU against 1 trial at a time.

Run it through ``scripts/gpu-check.sh`` (sized for 2-3 minutes, stopped at 290 s; needs one
NVIDIA GPU and a CUDA build of torch: exits 2 at once without them, 1 when a check fails). It
prints plain lines of numbers and ends with one ``GPU CHECK: ...`` summary line.

``RADAS_GPU_CHECK_DRY=1 python bench/gpu_check.py`` is a dry run for developers without a GPU:
the same sweeps on the CPU, with the CUDA out-of-memory error raised by hand. It checks the
plumbing (shares, retry, timing) and says so; it proves nothing about a GPU and prints no PASS.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

USER = "gpucheck"
FEATURES, WIDTH, BATCH, DATA_SIZE = 64, 256, 512, 65536
WARMUP_STEPS, CALIBRATION_STEPS = 20, 200
# each trial trains about this long alone on the device (the dry run: on one core)
TRAIN_SECONDS, DRY_TRAIN_SECONDS = 8.0, 2.0
PACKED_TRIALS = 4


class CheckFailed(Exception):
    pass


def failed(err: Exception) -> str:
    """A part's FAIL (with the traceback printed when the error is not the check's own)."""
    if not isinstance(err, CheckFailed):
        traceback.print_exc()
    return f"FAIL ({err})"


def needs_a_gpu(why: str) -> None:
    print(f"GPU CHECK: FAIL: this check needs a GPU: {why}", file=sys.stderr)
    sys.exit(2)


def gpu_device_name() -> str:
    """The one CUDA device torch sees; exits at once (status 2) when there is none."""
    try:
        import torch
    except ImportError:
        needs_a_gpu(f"torch is not installed for {sys.executable}; use a venv with a CUDA torch.")
    if not torch.cuda.is_available():
        needs_a_gpu(
            f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA device."
        )
    if torch.cuda.device_count() != 1:
        needs_a_gpu(
            f"exactly one GPU, and torch sees {torch.cuda.device_count()}: "
            "set CUDA_VISIBLE_DEVICES=0."
        )
    return torch.cuda.get_device_name(0)


def training_step(seed: int, device: str):
    """A small MLP on synthetic data made here with ``seed``; returns ``step() -> loss``."""
    import torch

    torch.manual_seed(seed)
    inputs = torch.randn(DATA_SIZE, FEATURES, device=device)
    labels = (inputs @ torch.randn(FEATURES, device=device) > 0).long()
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, WIDTH),
        torch.nn.ReLU(),
        torch.nn.Linear(WIDTH, WIDTH),
        torch.nn.ReLU(),
        torch.nn.Linear(WIDTH, 2),
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch_starts = itertools.cycle(range(0, DATA_SIZE, BATCH))

    def step():
        start = next(batch_starts)
        x, y = inputs[start : start + BATCH], labels[start : start + BATCH]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def trial_device(dry: bool) -> tuple[str, str]:
    """In a trial: ("cuda", the GPU's name) once radas.verify_gpu() passed (it raises
    GPUNotAvailableError otherwise: the trial errors), or the CPU in the dry run."""
    import torch

    import radas

    if dry:
        torch.set_num_threads(1)  # the dry run's 4 trials share a few cores
        return "cpu", "cpu (dry run)"
    return "cuda", radas.verify_gpu()["device"]


def timed_steps(step, steps: int, device: str) -> tuple[float, float]:
    """``steps`` training steps after a warm-up: the wall-clock time they start and end."""
    import torch

    for _ in range(WARMUP_STEPS):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.time()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return started, time.time()


def calibrate(config: dict) -> dict:
    """The first trial (it also starts radas's Ray): one training step's time, alone."""
    device, _ = trial_device(config["dry"])
    started, ended = timed_steps(training_step(0, device), CALIBRATION_STEPS, device)
    return {"seconds_per_step": (ended - started) / CALIBRATION_STEPS}


def train(config: dict) -> None:
    """One trial of the throughput sweeps: verify_gpu, then ``steps`` timed training steps."""
    import ray

    import radas

    device, device_name = trial_device(config["dry"])
    assigned = ray.get_runtime_context().get_assigned_resources()
    step = training_step(config["seed"], device)
    loss_first = step().item()
    started, ended = timed_steps(step, config["steps"], device)
    radas.report(
        {
            "device": device_name,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "gpu_share": assigned.get("GPU", 0.0),
            "cpu_share": assigned.get("CPU", 0.0),
            "train_start": started,
            "train_end": ended,
            "samples": config["steps"] * BATCH,
            "loss_first": loss_first,
            "loss_last": step().item(),
        }
    )


def needs_half_a_gpu(config: dict) -> dict:
    """Runs out of GPU memory with less than half the GPU (so radas retries it with more)."""
    import ray
    import torch

    assigned = ray.get_runtime_context().get_assigned_resources()
    # the dry run has no GPU: the trial's share of the CPUs stands in for it
    share = assigned["CPU"] / config["node_cpus"] if config["dry"] else assigned.get("GPU", 0.0)
    with open(config["attempts_file"], "a") as attempts:
        attempts.write(f"{share:g} {'out-of-memory' if share < 0.5 else 'fits'}\n")
    if share < 0.5:
        if config["dry"]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (dry run: raised by hand)")
        too_much = 4 * torch.cuda.get_device_properties(0).total_memory
        torch.empty(too_much, dtype=torch.uint8, device="cuda")  # torch.cuda.OutOfMemoryError
        raise CheckFailed(f"allocating {too_much / 2**30:.0f} GiB on the GPU did not fail")
    return {"share": share}


def sweep(name: str, trainable, param_space: dict, cpu_per_trial: float) -> tuple[dict, float]:
    import radas

    started = time.perf_counter()
    results = radas.run_experiment_sync(
        user_name=USER,
        experiment_name=name,
        trainable=trainable,
        param_space=param_space,
        run_choice="run",
        cpu_per_trial=cpu_per_trial,
    )
    return results, time.perf_counter() - started


def busy_seconds(intervals) -> float:
    """The length of the union of (start, end) intervals: the time some trial was training."""
    total, covered_to = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > covered_to:
            total += end - max(start, covered_to)
            covered_to = end
    return total


def training_sweep(label: str, steps: int, cpu_per_trial: float, dry: bool) -> dict:
    """4 identical training trials (seeds 0-3); prints one line per trial and the throughput."""
    from ray import tune

    space = {"seed": tune.grid_search(list(range(PACKED_TRIALS))), "steps": steps, "dry": dry}
    results, seconds = sweep(f"gpu-check-{label}", train, space, cpu_per_trial)
    trials = results["df"].sort_values("config/seed").to_dict("records")
    failed = [trial for trial in trials if trial["status"] != "TERMINATED"]
    if failed:
        raise CheckFailed(
            f"{len(failed)} of {len(trials)} {label} trials failed: {failed[0]['error']}"
        )
    for trial in trials:
        train_s = trial["train_end"] - trial["train_start"]
        print(
            f"{label} seed={trial['config/seed']}: device={trial['device']} "
            f"CUDA_VISIBLE_DEVICES={trial['cuda_visible_devices']!r} "
            f"gpu_share={trial['gpu_share']:g} cpu_share={trial['cpu_share']:g} "
            f"train={train_s:.2f} s "
            f"({trial['samples'] / train_s:.0f} samples/s) "
            f"loss {trial['loss_first']:.3f} -> {trial['loss_last']:.3f}"
        )
    samples = sum(trial["samples"] for trial in trials)
    training_s = busy_seconds((trial["train_start"], trial["train_end"]) for trial in trials)
    throughput = {
        "trials": trials,
        "samples_per_s": samples / training_s,
        "trials_per_min": len(trials) / seconds * 60,
    }
    print(
        f"{label}: {len(trials)} trials, sweep {seconds:.1f} s ({throughput['trials_per_min']:.1f} "
        f"trials/min), {samples} samples trained in {training_s:.2f} s "
        f"({throughput['samples_per_s']:.0f} samples/s)"
    )
    return throughput


def check_trials(trials: list[dict], share: float, dry: bool) -> str:
    """Every trial trained (its loss went down) and, on the GPU, passed verify_gpu (a trial that
    did not raised and failed the sweep) with its GPU share and CUDA_VISIBLE_DEVICES set."""
    for trial in trials:
        seed = trial["config/seed"]
        if trial["loss_last"] >= trial["loss_first"]:
            raise CheckFailed(f"seed {seed}: the loss did not go down")
        if dry:
            continue
        if not trial["cuda_visible_devices"]:
            raise CheckFailed(f"seed {seed}: CUDA_VISIBLE_DEVICES was not set in the trial")
        if not math.isclose(trial["gpu_share"], share):
            raise CheckFailed(f"seed {seed}: GPU share {trial['gpu_share']:g}, not {share:g}")
    if dry:
        return f"DRY-RUN (not called; {len(trials)} trials trained on the CPU)"
    return f"PASS ({len(trials)}/{len(trials)})"


def check_oom_retry(node_cpus: float, dry: bool, home: Path) -> str:
    """Part 2: a CUDA out-of-memory at 0.25 GPU, retried by radas at 0.5 GPU, finishes."""
    attempts_file = home / "oom-attempts.txt"
    space = {"dry": dry, "node_cpus": node_cpus, "attempts_file": str(attempts_file)}
    results, seconds = sweep("gpu-check-oom", needs_half_a_gpu, space, node_cpus / PACKED_TRIALS)
    trial = results["df"].to_dict("records")[0]
    lines = attempts_file.read_text().splitlines() if attempts_file.exists() else []
    attempts = [line.split() for line in lines]
    retried = len(results["outcome"].memory_retried)
    for number, (share, what) in enumerate(attempts, 1):
        print(f"cuda-oom attempt {number}: share={share} {what}")
    print(f"cuda-oom: status={trial['status']} memory_retried={retried} sweep {seconds:.1f} s")
    shares = " -> ".join(share for share, _ in attempts)
    if trial["status"] != "TERMINATED":
        raise CheckFailed(f"the trial did not finish after the retry: {trial['error']}")
    if [what for _, what in attempts] != ["out-of-memory", "fits"] or retried != 1:
        raise CheckFailed(f"expected one out-of-memory attempt and one retry, saw {shares}")
    if dry:
        return f"DRY-RUN ({shares} of the CPUs, the OOM raised by hand)"
    return f"PASS ({shares} GPU)"


def main() -> int:
    dry = os.environ.get("RADAS_GPU_CHECK_DRY") == "1"
    if dry:
        print("DRY RUN on the CPU (RADAS_GPU_CHECK_DRY=1): checks the sweep plumbing only, no GPU")
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit(f"the dry run needs torch (a CPU build will do) for {sys.executable}")
    device_name = "cpu (dry run)" if dry else gpu_device_name()
    # nothing goes to ~/.radas or the working directory
    home = Path(tempfile.mkdtemp(prefix="radas-gpu-check-"))
    os.environ["RADAS_HOME"] = str(home)
    os.environ["RADAS_CONFIG"] = str(home / "config.toml")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.chdir(home)
    try:
        return run_checks(device_name, dry, home)
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(home, ignore_errors=True)


def run_checks(device_name: str, dry: bool, home: Path) -> int:
    import ray
    import torch

    import radas

    started = time.perf_counter()
    results, _ = sweep("gpu-check-calibrate", calibrate, {"dry": dry}, cpu_per_trial=1)
    calibration = results["df"].to_dict("records")[0]
    if calibration["status"] != "TERMINATED":
        print(f"GPU CHECK: FAIL: the calibration trial failed: {calibration['error']}")
        return 1
    resources = ray.cluster_resources()  # radas's in-process Ray: this machine, one node
    cpus, gpus = resources["CPU"], resources.get("GPU", 0.0)
    print(
        f"device={device_name} torch={torch.__version__} cuda={torch.version.cuda} "
        f"ray={ray.__version__} radas={radas.__version__}; Ray sees {cpus:g} CPUs, {gpus:g} GPUs"
    )
    if not dry and gpus != 1:
        needs_a_gpu(f"Ray sees {gpus:g} GPUs on this machine, the check needs exactly 1.")
    per_step = calibration["seconds_per_step"]
    steps = max(CALIBRATION_STEPS, round((DRY_TRAIN_SECONDS if dry else TRAIN_SECONDS) / per_step))
    print(f"calibration: {per_step * 1e3:.3f} ms per step alone -> {steps} steps per trial")
    packed_cpus = cpus / PACKED_TRIALS
    print(
        f"packed: cpu_per_trial={packed_cpus:g} ({1 / PACKED_TRIALS:g} of the machine each); "
        f"whole: cpu_per_trial={cpus:g} (all of it, one trial at a time)"
    )

    summary = {name: "FAIL" for name in ("verify_gpu", "cuda_oom_retry", "packed_4x0.25", "1x1.0")}
    packed = whole = None
    try:  # 1. four trials on a quarter of the GPU each
        packed = training_sweep("packed", steps, packed_cpus, dry)
        summary["packed_4x0.25"] = f"{packed['samples_per_s']:.0f} samples/s"
        summary["verify_gpu"] = check_trials(packed["trials"], 1 / PACKED_TRIALS, dry)
    except Exception as err:
        summary["verify_gpu"] = failed(err)
    try:  # 2. a CUDA out-of-memory, retried by radas with twice the share
        summary["cuda_oom_retry"] = check_oom_retry(cpus, dry, home)
    except Exception as err:
        summary["cuda_oom_retry"] = failed(err)
    try:  # 3. the same work, one trial at a time on the whole GPU
        whole = training_sweep("whole", steps, cpus, dry)
        summary["1x1.0"] = f"{whole['samples_per_s']:.0f} samples/s"
        check_trials(whole["trials"], 1.0, dry)
    except Exception as err:
        summary["1x1.0"] = failed(err)
    if packed and whole:
        ratio = packed["samples_per_s"] / whole["samples_per_s"]
        summary["ratio"] = f"{ratio:.2f}"
        print(
            f"packed/whole: {ratio:.2f}x samples/s, "
            f"{packed['trials_per_min'] / whole['trials_per_min']:.2f}x trials/min"
        )
    fields = ", ".join(f"{name}={value}" for name, value in summary.items())
    took = f"took {time.perf_counter() - started:.0f} s"
    if dry:
        print(
            f"GPU CHECK DRY RUN (CPU only, no GPU checked): device={device_name}, {fields}, {took}"
        )
    else:
        print(f"GPU CHECK: device={device_name}, {fields}, {took}")
    return 1 if any(value.startswith("FAIL") for value in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
