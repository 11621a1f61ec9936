"""The private names of Ray that radas reads or sets, no fix: each is used where it says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

# The logger of Ray's trial storage, which logs a line for every checkpoint it stores
# (ray/train/_internal/storage.py): radas.report(state=...) keeps it at WARNING.
CHECKPOINT_LOGGER = "ray.train._internal.storage"


def keep_local_ray_on_loopback() -> None:
    """Turn Ray's "cluster mode" off in this process before ``ray.init``, so it keeps
    127.0.0.1 instead of the machine's address (``ray._private.ray_constants``, read at
    import from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, which the caller sets for Ray's own
    processes)."""
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


# ``python -c`` program that runs ``ray start`` for a local cluster kept on the loopback
# interface: ``ray start`` refuses extra nodes with cluster mode off, so it is turned back on
# here, and Ray's replacement of 127.0.0.1 by the machine's address (``resolve_ip_for_localhost``)
# is turned off, so --node-ip-address stays as given.
LOOPBACK_RAY_START = """
import sys
import ray._private.ray_constants as ray_constants
import ray._private.services as services
ray_constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.exit(main())
"""


def walk_job_upload(
    directory: Path, excludes: list[str], record: Callable[[Path], None], *, gitignore: bool
) -> None:
    """Call ``record(path)`` for every path under ``directory`` that Ray's job upload takes:
    Ray's own walk (``ray._private.runtime_env.packaging``), so radas's count is what Ray
    sends."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    _dir_travel(
        directory, [_get_excludes(directory, list(excludes))], record, include_gitignore=gitignore
    )


def run_config_verbose(run_config: Any) -> Any:
    """The ``verbose=`` the user gave a ``RunConfig`` (None if none): RunConfig replaces None
    by its default and keeps what was given in ``_verbose``."""
    return getattr(run_config, "_verbose", run_config.verbose)


def stored_tune_config(tuner_state: dict[str, Any]) -> Any:
    """The ``TuneConfig`` in an unpickled ``tuner.pkl`` (Tune pickles its ``TunerInternal``'s
    ``__dict__``), or None."""
    return tuner_state.get("_tune_config")


# The logger of Ray's package upload (a job's working directory): INFO for every upload.
UPLOAD_LOGGER = "ray._private.runtime_env.packaging"


def pop_from_cluster_memory(key: str) -> bytes | None:
    """The value stored under ``key`` in the connected cluster's key-value store (the GCS),
    deleted there; None if there is none (``ray.experimental.internal_kv``)."""
    from ray.experimental import internal_kv

    value = internal_kv._internal_kv_get(key)
    internal_kv._internal_kv_del(key)
    return value


def forget_registered_trainables() -> None:
    """Drop what Tune registered in the connected cluster's memory (its trainables), as Tune
    does at the exit of a process (``ray.tune.registry._unregister_all``)."""
    from ray.tune.registry import _unregister_all

    _unregister_all()
