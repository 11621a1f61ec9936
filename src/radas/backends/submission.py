"""What a radas Ray Job ships to its cluster, checked before it goes.

The client pickles the ``SweepSpec`` (``pickled_spec``: trainable included, by value for
project code) and puts it in the cluster's memory under a random key (``hand_over_spec``: no
file on any node; the job's driver reads and deletes it, ``take_over_spec``). The job gets
the working directory (``check_working_dir``: its size, secret-looking files), the radas
package itself (``py_modules``) and the environment its driver needs (``job_runtime_env``);
its metadata (``job_metadata``) is how radas finds it again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from radas.backends import shared_roots
from radas.backends.job_client import JobServer, _quiet_ray_sdk
from radas.clusters.config import ClusterConfig
from radas.core.console import ray_output_wanted, warn
from radas.core.secrets import secret_looking_files
from radas.core.spec import SweepSpec
from radas.errors import ClusterError, InvalidArgumentError, WorkingDirTooLargeError

SPEC_HEADER = b"radas-spec-v1\n"  # the first bytes of a spec handed over (hand_over_spec)
DEFAULT_MAX_WORKING_DIR_MB = 100.0
STOP_WAIT_S = 120  # how long a stopped job may take to save its state before Ray kills it


def pickled_spec(spec: SweepSpec) -> bytes:
    """``spec`` pickled for the cluster; InvalidArgumentError when it cannot be."""
    from ray import cloudpickle

    try:
        return cloudpickle.dumps(spec)
    except Exception as err:
        raise InvalidArgumentError(
            f"The experiment cannot be sent to the cluster: pickling it failed ({err}). "
            "Keep unpicklable objects (open files, locks, clients, GPU tensors) out of the "
            "trainable's closure, param_space and tuner_init_kwargs: create them inside "
            "the trainable instead."
        ) from err


def job_runtime_env(
    cluster: ClusterConfig,
    runtime_env: dict[str, Any],
    cwd: Path,
    job_id: str,
    markers: dict[str, list[str]],
) -> dict[str, Any]:
    """The job's runtime_env: the user's, with the working directory ``cwd``, this copy of
    radas, the cluster's environment and what the job's driver reads (its job id, this
    client's Ray version, the root ``markers``)."""
    import ray

    from radas.ray_compat.versions import CLIENT_RAY_VERSION_ENV

    env = {
        **runtime_env,
        "working_dir": str(cwd),
        "py_modules": [
            str(Path(__file__).resolve().parents[1]),
            *runtime_env.get("py_modules", []),
        ],
        "env_vars": {
            **cluster.job_env(),
            **runtime_env.get("env_vars", {}),
            # stop = SIGINT to the driver: Tune saves the state, then the job ends
            "RAY_JOB_STOP_SIGNAL": "SIGINT",
            "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S),
            "RADAS_JOB_ID": job_id,
            CLIENT_RAY_VERSION_ENV: ray.__version__,  # the driver checks its own Ray
            shared_roots.MARKERS_ENV: json.dumps(markers),
            # the driver keeps Ray quiet unless this client asked for its output
            **({"RADAS_VERBOSE": "1"} if ray_output_wanted() else {}),
        },
    }
    env.setdefault("worker_process_setup_hook", "radas.tune.worker.setup")
    return env


def job_metadata(spec: SweepSpec, cwd: Path) -> dict[str, str]:
    """The job's metadata: how radas finds the job of an experiment (``ExperimentJob``)."""
    from radas.core import VERSION

    return {
        "radas_user": spec.user_name,
        "radas_experiment": spec.experiment_name,
        "radas_full_name": spec.full_name,
        "radas_run_choice": spec.run_choice,
        "radas_cwd": str(cwd),
        "radas_version": VERSION,
    }


def hand_over_spec(server: JobServer, pickled: bytes) -> str:
    """Put a pickled ``SweepSpec`` in the cluster's memory (GCS) under a random key, which the
    job's driver names on its command line, reads and deletes (``take_over_spec``). Shipped as
    a file (a py_module), it would stay on every node the job ran on, readable by their users."""
    from secrets import token_hex

    key = f"gcs://radas_spec_{token_hex(16)}.zip"
    server.put_package(key, SPEC_HEADER + pickled)
    return key


def take_over_spec(key: str) -> bytes:
    """In the job's driver (Ray connected): the pickled spec ``hand_over_spec`` stored under
    ``key``, deleted from the cluster's memory."""
    from radas.ray_compat.private import pop_from_cluster_memory

    payload = pop_from_cluster_memory(key)
    if payload is None or not payload.startswith(SPEC_HEADER):
        raise ClusterError(
            "The experiment is gone from the cluster's memory (the cluster restarted after the "
            "job was submitted, or the job was started twice). Submit it again "
            "(run_choice='restore' continues it)."
        )
    return payload[len(SPEC_HEADER) :]


def check_working_dir(directory: Path, excludes: list[str], *, cluster_name: str = "") -> int:
    """Bytes of ``directory`` that Ray would upload (honouring .gitignore and ``excludes``);
    too many raise WorkingDirTooLargeError, secret-looking files get a RadasWarning."""
    from radas.ray_compat.private import walk_job_upload

    limit_mb = float(os.environ.get("RADAS_MAX_WORKING_DIR_MB", DEFAULT_MAX_WORKING_DIR_MB))
    sizes: dict[Path, int] = {}

    def record(path: Path) -> None:
        if path.is_file() and not path.is_symlink():
            sizes[path] = path.stat().st_size

    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    with _quiet_ray_sdk():
        walk_job_upload(directory, excludes, record, gitignore=include_gitignore)
    total = sum(sizes.values())
    if total > limit_mb * 2**20:
        biggest = sorted(sizes.items(), key=lambda item: -item[1])[:5]
        listing = ", ".join(f"{p.relative_to(directory)} ({s / 2**20:.1f} MiB)" for p, s in biggest)
        raise WorkingDirTooLargeError(
            f"The working directory {directory} would upload {total / 2**20:.1f} MiB to the "
            f"cluster (limit {limit_mb:g} MiB). Largest files: {listing}. Run from the "
            "directory with just your code, list big files in .gitignore, or pass "
            "runtime_env={'excludes': ['data/', '*.ckpt']}; put datasets in "
            "radas.get_data_dir(user_name). (RADAS_MAX_WORKING_DIR_MB changes the limit.)"
        )
    found = secret_looking_files(sizes, directory)
    if found:
        excludes_hint = ", ".join(repr(name) for name in found)
        warn(
            f"The working directory {directory} would upload secret-looking file(s) to "
            f"cluster {cluster_name!r}: {', '.join(found)}. Anyone with the cluster's token "
            "can read a job's files. Keep them out: list them in .gitignore, or pass "
            f"runtime_env={{'excludes': [{excludes_hint}]}}; hand secrets to the trials with "
            "param_space['secrets'] = {'NAME': value} instead.",
            stacklevel=4,
        )
    return total
