"""What each trial asks Ray for (``cpu_per_trial``), why a failed trial failed, and GPU checks.

``cpu_per_trial=c`` asks for ``c`` CPUs and, in proportion, the GPUs and memory that come with
them on the cluster's largest node type (``radas.clusters.shape``: on a cluster that scales, a
type may have no node yet): ``c * gpus / cpus`` GPUs and ``c * memory / cpus`` bytes of Ray's
``memory`` resource.

A trial can fail for three kinds of reasons, and radas treats them differently:

- ``"memory"``: it ran out of memory (Ray's memory monitor killed it, ``MemoryError``, CUDA
  out of memory, the kernel's OOM killer). radas runs it again with ``cpu_per_trial`` doubled:
  more of every resource, so fewer trials share a node.
- ``"lost"``: the node or worker process under it went away. Nothing is wrong with the trial:
  radas runs it again as it was.
- ``"error"``: the trainable raised. Running it again would fail again: it stays an error.
  So does a trainable that ended its own worker (``sys.exit(3)``, ``os._exit(1)``), which Ray
  reports as a dead worker: ``own_error_line`` tells them apart and names what it did.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Literal

from radas.errors import GPUNotAvailableError, InvalidArgumentError, ResourceRequestError

FailureKind = Literal["memory", "lost", "error"]

MEMORY_MARKERS = (
    "OutOfMemoryError",
    "out of memory",  # CUDA/torch: "CUDA out of memory", "CUDA error: out of memory"
    "MemoryError",
    "killed due to the node running low on memory",
    "low on memory",
    "SIGKILL",  # a worker the kernel's OOM killer ended
    "signal 9",
)
LOST_MARKERS = (
    "ActorDiedError",
    "ActorUnavailableError",
    "NodeDiedError",
    "WorkerCrashedError",
    "The actor died unexpectedly",
    "is unavailable:",
)


@dataclass(frozen=True)
class NodeCapacity:
    """What one node offers: CPUs, GPUs and Ray's ``memory`` resource in bytes."""

    cpus: float
    gpus: float = 0.0
    memory_bytes: float = 0.0

    def describe(self) -> str:
        text = f"{self.cpus:g} CPUs, {self.gpus:g} GPUs"
        return text + (f", {self.memory_bytes / 2**30:.1f} GiB memory" if self.memory_bytes else "")


# Ray's resource granularity (ray._private.ray_constants.MIN_RESOURCE_GRANULARITY):
# a smaller request rounds to 0 and Tune's trial actor is never scheduled
MIN_CPU_PER_TRIAL = 0.0001


def validate_cpu_per_trial(cpu_per_trial: object) -> float:
    if (
        isinstance(cpu_per_trial, bool)
        or not isinstance(cpu_per_trial, (int, float))
        or not cpu_per_trial > 0
    ):
        raise InvalidArgumentError(
            f"cpu_per_trial={cpu_per_trial!r} is not valid: give a positive number of CPUs per "
            "trial, for example cpu_per_trial=1 (fractions such as 0.5 are allowed)."
        )
    if cpu_per_trial < MIN_CPU_PER_TRIAL:
        raise InvalidArgumentError(
            f"cpu_per_trial={cpu_per_trial!r} is below {MIN_CPU_PER_TRIAL:g}, the smallest "
            "share of a CPU Ray can hand out: use at least "
            f"cpu_per_trial={MIN_CPU_PER_TRIAL:g} (e.g. 0.01 runs 100 trials per CPU)."
        )
    return cpu_per_trial


def check_fits(
    cpu_per_trial: float, capacity: NodeCapacity, where: str, node_types: str = ""
) -> None:
    """Refuse a request no node can satisfy, before anything runs (``node_types``: the
    cluster's node types, for the message)."""
    if cpu_per_trial > capacity.cpus:
        raise ResourceRequestError(
            f"cpu_per_trial={cpu_per_trial:g} asks for more than the largest node of {where} "
            f"has ({capacity.describe()}"
            + (f"; its node types: {node_types}" if node_types else "")
            + f"). Use cpu_per_trial <= {capacity.cpus:g}, or a cluster with bigger nodes "
            "(`radas clusters` lists them)."
        )


def trial_resources(cpu_per_trial: float, capacity: NodeCapacity | None = None) -> dict[str, float]:
    """The resource request of one trial.

    GPUs come as a fraction up to one GPU, then in whole GPUs (Ray's rule); memory in bytes.

    >>> trial_resources(2, NodeCapacity(cpus=16, gpus=4, memory_bytes=64 * 2**30))
    {'cpu': 2, 'gpu': 0.5, 'memory': 8589934592}
    >>> trial_resources(2)
    {'cpu': 2}
    """
    request: dict[str, float] = {"cpu": cpu_per_trial}
    if capacity is None or capacity.cpus <= 0:
        return request
    gpus = cpu_per_trial * capacity.gpus / capacity.cpus
    if gpus > 0:
        request["gpu"] = round(gpus, 4) if gpus < 1 else float(math.floor(gpus))
    if capacity.memory_bytes > 0:
        request["memory"] = int(capacity.memory_bytes * cpu_per_trial / capacity.cpus)
    return request


def next_cpu_per_trial(cpu_per_trial: float, capacity: NodeCapacity) -> float | None:
    """Double ``cpu_per_trial`` (capped at the largest node); None when it cannot grow."""
    if cpu_per_trial >= capacity.cpus:
        return None
    return min(cpu_per_trial * 2, capacity.cpus)


def classify_failure(error: BaseException | None, text: str = "") -> FailureKind:
    """Why a trial failed, from the exception Ray stored and/or its traceback text."""
    from ray import exceptions

    if OWN_ERROR_HEADER in text.rpartition(FAILURE_HEADER)[2] or own_error_line(error, text):
        return "error"  # the trainable's own exit or interrupt, read as such (own_error_line)
    names = " ".join(cls.__name__ for cls in type(error).__mro__) if error is not None else ""
    evidence = f"{names}\n{error if error is not None else ''}\n{text}"
    if isinstance(error, (MemoryError, exceptions.OutOfMemoryError)) or any(
        marker in evidence for marker in MEMORY_MARKERS
    ):
        return "memory"
    if error is not None:
        if isinstance(error, exceptions.RayTaskError):
            return "error"  # the trainable's own exception, wrapped by Ray
        if isinstance(error, exceptions.RayActorError) and error.actor_init_failed:
            return "error"  # a class trainable's setup raised (its actor could not start)
        lost_types = (
            exceptions.RayActorError,  # ActorDiedError, ActorUnavailableError
            exceptions.NodeDiedError,
            exceptions.WorkerCrashedError,
            exceptions.LocalRayletDiedError,
        )
        return "lost" if isinstance(error, lost_types) else "error"
    return "lost" if any(marker in text for marker in LOST_MARKERS) else "error"


# Tune starts each failure's traceback in error.txt with this; radas adds the trainable's own
# error after OWN_ERROR_HEADER where Ray's exception misreads it (own_error_line).
FAILURE_HEADER = "Failure # "
OWN_ERROR_HEADER = "[radas] the trainable's own error"
# Ray's detail of a worker that raised SystemExit: "... Worker exits with an exit code 3." (or
# the SystemExit's message instead of the code); Ray's own exits add why after the code ("1. The
# process receives a SIGTERM.": a node drained or preempted; "exit_actor() is called.").
_EXIT_CODE = re.compile(r"Worker exits unexpectedly\. Worker exits with an exit code (.+)\.\s*$")
_RAYS_OWN_EXIT = re.compile(r"\d+\. ")
_CHAINED = "\n\nThe above exception was the direct cause of the following exception:\n"


def own_error_line(
    error: BaseException | None, text: str = "", os_exit_code: int | None = None
) -> str | None:
    """The trainable's own error where Ray's exception reads as something else; None if not.

    - ``sys.exit(3)`` / ``raise SystemExit(3)``: Ray ends the worker with that code and
      reports an ``ActorDiedError`` ("Worker exits with an exit code 3"), as for a lost one
      (not when Ray says why it exited: a SIGTERM from outside is a lost worker).
    - ``os._exit(1)``: the same ``ActorDiedError`` as a crashed or killed worker; radas's worker
      hook records the call (``os_exit_code``, from ``ray_compat.lost_trials.own_exit_code``).
    - ``raise KeyboardInterrupt``: Ray turns it into ``TaskCancelledError`` (Tune never cancels
      a trial's task).
    - An exception whose class cannot be rebuilt from its args (``__init__(self, a, b)``
      calling ``super().__init__(f"{a}{b}")``): Tune's copy of it raises ``TypeError: ...
      __init__() missing ...``, and the real error is only the first part of the traceback.

    The line reads like Python's last traceback line (``SystemExit: 3``, ``KeyboardInterrupt``,
    ``E: ab``) followed by what Ray reported instead where that helps.
    """
    from ray import exceptions

    if os_exit_code is not None:
        return (
            f"os._exit({os_exit_code}): the trainable ended its worker process (Ray reports "
            "it as a dead worker)"
        )
    if isinstance(error, exceptions.RayActorError):
        found = _EXIT_CODE.search(str(error).strip())
        code = found.group(1) if found else "0"
        if code == "0" or _RAYS_OWN_EXIT.match(code):
            return None
        how = f"with code {code}" if code.isdigit() else "with that message"
        return f"SystemExit: {code} (the trainable exited {how}; Ray reports it as a dead worker)"
    if not isinstance(error, exceptions.RayTaskError):
        return None
    if isinstance(error, exceptions.TaskCancelledError):
        return "KeyboardInterrupt (raised in the trainable; Ray reports it as TaskCancelledError)"
    source = text or str(error)
    if isinstance(error, TypeError) and "in skip_exceptions" in source and _CHAINED in source:
        first = [line.strip() for line in source.split(_CHAINED)[0].splitlines() if line.strip()]
        last = first[-1] if first else ""
        if last and not last.startswith(("File ", "^", "ray::")):
            return last
    return None


def own_error_block(line: str) -> str:
    """What radas adds to a trial's error.txt for ``own_error_line``: its header, then the
    line, which is the file's last (what radas shows as the trial's error)."""
    return f"{OWN_ERROR_HEADER} (what Ray reported above misreads it):\n{line}\n"


def verify_gpu(*, framework: str = "torch", min_gpus: int = 1) -> dict[str, Any]:
    """Prove the calling trial really computes on a GPU; raise GPUNotAvailableError if not.

    Checks that Ray assigned GPUs to this trial, that the framework sees a CUDA device, and that
    a small matrix product runs on it with the right result. Call it at the start of a GPU
    trainable, so a CPU fallback fails loudly instead of silently running 100x slower.

    >>> def trainable(config):  # doctest: +SKIP
    ...     info = radas.verify_gpu()          # {'gpu_ids': [...], 'device': 'NVIDIA ...'}
    ...     model = Net().cuda()
    """
    if framework != "torch":
        raise InvalidArgumentError(f"verify_gpu supports framework='torch', got {framework!r}.")
    assigned = _assigned_gpu_ids()
    if len(assigned) < min_gpus:
        raise GPUNotAvailableError(
            f"This trial was given {len(assigned)} GPU(s) by Ray (need {min_gpus}): it would "
            "run on the CPU. Run it on a cluster with GPUs (`radas clusters` shows gpu_per_cpu) "
            "and pick cpu_per_trial so that cpu_per_trial * gpu_per_cpu covers the GPUs it "
            "needs."
        )
    try:
        import torch
    except ImportError as err:
        raise GPUNotAvailableError(
            "verify_gpu(framework='torch') needs PyTorch in the trial's environment: install "
            "it there (e.g. runtime_env={'pip': ['torch']}) or use the cluster's image."
        ) from err
    if not torch.cuda.is_available() or torch.cuda.device_count() < min_gpus:
        raise GPUNotAvailableError(
            f"Ray assigned GPU(s) {assigned}, but torch sees "
            f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} CUDA device(s) "
            "(a CPU-only torch build, or a driver/CUDA mismatch): the trial would fall back "
            "to the CPU. Install a CUDA build of torch on the cluster."
        )
    a = torch.arange(16.0, device="cuda").reshape(4, 4)
    product = a @ torch.eye(4, device="cuda")
    torch.cuda.synchronize()
    if product.device.type != "cuda" or not torch.equal(product.cpu(), a.cpu()):
        raise GPUNotAvailableError("A test matrix product did not run correctly on the GPU.")
    return {
        "gpu_ids": assigned,
        "device": torch.cuda.get_device_name(0),
        "device_count": torch.cuda.device_count(),
        "framework": "torch",
    }


def _assigned_gpu_ids() -> list[Any]:
    try:
        import ray

        if ray.is_initialized():
            return list(ray.get_gpu_ids())
    except Exception:  # not in a Ray worker
        pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [device for device in visible.split(",") if device.strip()]


def error_file_text(trial: Any) -> str:
    """The error file Tune wrote for a failed trial (``trial.error_file``); "" without one."""
    path = getattr(trial, "error_file", None)
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return stream.read()
    except OSError:
        return ""
