"""``run_with="local"``: Ray started in-process on this machine, results under $RADAS_HOME."""

from __future__ import annotations

import copy
import logging
import os
import time
from typing import Any

import ray
import ray._private.ray_constants as ray_constants

from radas._spec import RunTarget, SweepOutcome, SweepSpec
from radas.console import print_warning, ray_output_wanted
from radas.errors import NotSupportedError
from radas.storage.dirs import get_ray_results_dir
from radas.sweep import run_sweep

WORKER_SETUP_HOOK = "radas._worker.setup"

# The runtime_env radas started the in-process Ray with (None: radas did not start it).
_started_with: dict[str, Any] | None = None
# How long resources may stay held between two fits before radas calls them leaked.
LEAK_SETTLE_S = 15.0
_COUNTED_RESOURCES = ("CPU", "GPU", "memory")


class LocalBackend:
    target = RunTarget("local")

    def results_root(self, user_name: str) -> str:
        return get_ray_results_dir(user_name, run_with="local")

    async def run(self, spec: SweepSpec, *, runtime_env: dict[str, Any]) -> SweepOutcome:
        ensure_local_ray(runtime_env)
        # Tune runs in this (normally the main) thread, so Ctrl-C reaches Tune's own handler:
        # it saves the experiment state and returns, and run_choice='restore' continues.
        return run_sweep(spec, before_fit=release_leaked_resources)

    async def attach(self, spec: SweepSpec, *, stop: bool) -> SweepOutcome:
        choice = "stop_attach" if stop else "attach"
        raise NotSupportedError(
            f"run_choice={choice!r} follows an experiment running as a job on a Ray cluster; "
            "on run_with='local' the experiment runs inside your own process, so there is "
            "nothing to attach to. Use run_choice='restore' to continue a stopped local "
            "experiment, or dos=['analyze'] to analyze it."
        )


def ensure_local_ray(runtime_env: dict[str, Any]) -> None:
    """Start (or reuse) the in-process Ray, bound to 127.0.0.1, with ``runtime_env``."""
    global _started_with
    wanted = {"worker_process_setup_hook": WORKER_SETUP_HOOK, **runtime_env}
    if ray.is_initialized():
        if _started_with is None or _started_with == wanted:
            return  # the user's own Ray, or ours with the same environment
        ray.shutdown()
    # Ray turns 127.0.0.1 into the machine's network address unless "cluster mode" is off;
    # a local run has no other nodes, so keep every Ray server (this process and the ones
    # Ray starts) on the loopback interface.
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray.init(
        address="local",
        include_dashboard=False,
        runtime_env=copy.deepcopy(wanted),  # ray.init adds keys to the dict it is given
        # Ray's start-up records (its banner, token-auth notice) only when asked for
        logging_level=logging.INFO if ray_output_wanted() else logging.ERROR,
        _node_ip_address="127.0.0.1",
    )
    _started_with = wanted


def release_leaked_resources() -> None:
    """Restart radas's own in-process Ray if, between two fits, it holds resources nothing uses.

    Ray 2.60 can leak a placement-group bundle when a group is removed while its resources are
    being prepared (ray-project/ray#64693, fix proposed in #66188); Tune does that often with
    ``reuse_actors=True``. The leaked CPUs stay reserved for the rest of the Ray session, so a
    later trial asking for the whole node (an out-of-memory retry) waited forever. Between
    fits no trial of radas runs, so what stays reserved longer than ``LEAK_SETTLE_S`` (after
    Tune's asynchronous clean-up) is leaked; a fresh Ray session (about 3 s) frees it, and the
    experiment continues from its stored state. A Ray the user started is left alone.
    """
    if _started_with is None or not ray.is_initialized():
        return
    deadline = time.monotonic() + LEAK_SETTLE_S
    while held := _held_resources():
        if time.monotonic() > deadline:
            amounts = ", ".join(f"{name} {amount:g}" for name, amount in held.items())
            print_warning(
                f"Ray holds resources no trial uses ({amounts}; a Ray placement-group leak, "
                "ray-project/ray#64693): restarting radas's in-process Ray before the next fit"
            )
            hook = "worker_process_setup_hook"
            runtime_env = {k: v for k, v in _started_with.items() if k != hook}
            ray.shutdown()
            ensure_local_ray(runtime_env)
            return
        time.sleep(0.2)


def _held_resources() -> dict[str, float]:
    total, available = ray.cluster_resources(), ray.available_resources()
    held = {
        name: total[name] - available.get(name, 0.0) for name in _COUNTED_RESOURCES if name in total
    }
    return {name: amount for name, amount in held.items() if amount > 1e-6 * max(1.0, total[name])}
