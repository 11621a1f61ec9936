"""Per-user directories: results root, data dir, cold data dir, and the artifact root.

Each user has ``<root>/<user_name>`` under every root. Which roots depend on ``run_with``:

- ``"local"``: under ``$RADAS_HOME`` (default ``~/.radas``): ``ray-results/``, ``data/``,
  ``cold-data/`` and ``artifacts/``.
- ``"cluster:<name>"``: that cluster's ``results_root``, ``data_root``, ``cold_data_root`` and
  ``artifact_root`` from the radas config (default ``<results_root>/.radas-artifacts`` when the
  results are in an object store, else ``<data_root>/.radas-artifacts``). Inside a radas job on
  that cluster the same roots come from the job's environment (``RADAS_CLUSTER``,
  ``RADAS_DATA_ROOT``, ...; see ``ClusterConfig.job_env``), so no config file is needed there.
  A cluster whose results are in an object store may have no shared data path: its data dirs
  are then refused, with the way to use cloud artifacts instead.
- ``None`` (the default): where this code runs: inside a radas job on a cluster (its driver
  and trials), that cluster; anywhere else, local.

So the client asks with ``run_with="cluster:<name>"``, a trainable just with ``user_name``, and
both get the same path.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from radas.clusters.config import (
    ARTIFACTS_DIRNAME,
    cluster_artifact_endpoint_url,
    cluster_artifact_root,
    config_path,
    default_artifact_root,
    get_cluster,
)
from radas.core.naming import validate_user_name
from radas.core.spec import parse_run_with
from radas.errors import InvalidNameError, StorageError
from radas.storage.home import radas_home

_JOB_ROOT_VARS = ("RADAS_RESULTS_ROOT",)


@dataclass(frozen=True)
class StorageRoots:
    """The roots of one place radas runs (``where``: ``"local"`` or ``"cluster:<name>"``)."""

    where: str
    results_root: str
    data_root: str
    cold_data_root: str
    artifact_root: str
    artifact_endpoint_url: str | None = None


def storage_roots(run_with: str | None = None) -> StorageRoots:
    """The storage roots for ``run_with`` (``None``: where this code runs; see the module doc).

    >>> storage_roots("local").data_root.endswith("data")
    True
    """
    if run_with is None:
        cluster_name = os.environ.get("RADAS_CLUSTER")
        run_with = f"cluster:{cluster_name}" if cluster_name else "local"
    target = parse_run_with(run_with)
    if target.kind == "local":
        home = radas_home()
        return StorageRoots(
            where="local",
            results_root=str(home / "ray-results"),
            data_root=str(home / "data"),
            cold_data_root=str(home / "cold-data"),
            artifact_root=str(home / "artifacts"),
        )
    name = target.cluster or ""
    env = os.environ
    if env.get("RADAS_CLUSTER") == name and all(env.get(var) for var in _JOB_ROOT_VARS):
        # inside a radas job on this cluster: the job carries the roots
        results_root, data_root = env["RADAS_RESULTS_ROOT"], env.get("RADAS_DATA_ROOT", "")
        return StorageRoots(
            where=str(target),
            results_root=results_root,
            data_root=data_root,
            cold_data_root=env.get("RADAS_COLD_DATA_ROOT", ""),
            artifact_root=env.get("RADAS_ARTIFACT_ROOT")
            or default_artifact_root(results_root, data_root),
            artifact_endpoint_url=env.get("RADAS_ARTIFACT_ENDPOINT_URL") or None,
        )
    cluster = get_cluster(name)
    return StorageRoots(
        where=str(target),
        results_root=cluster.results_root,
        data_root=cluster.data_root,
        cold_data_root=cluster.cold_data_root,
        artifact_root=cluster_artifact_root(cluster),
        artifact_endpoint_url=cluster_artifact_endpoint_url(cluster),
    )


def get_ray_results_dir(user_name: str, run_with: str | None = None) -> str:
    """The directory holding this user's experiments for ``run_with``, created if missing.

    ``run_with=None`` means where this code runs (a cluster inside its jobs, else local).

    >>> get_ray_results_dir("alice", run_with="local").endswith("ray-results/alice")
    True
    """
    roots = storage_roots(run_with)
    if "://" in roots.results_root:  # an object store: nothing to create
        check_storage_user_name(user_name)
        return posixpath.join(roots.results_root.rstrip("/"), user_name)
    return _user_dir(roots.results_root, user_name, roots, "results_root")


def get_data_dir(user_name: str, run_with: str | None = None) -> str:
    """This user's data directory, shared by the submitting machine and the cluster's workers.

    Created on first use. On the client pass the cluster you run on; inside a trainable
    ``run_with`` can be left out (the job says which cluster it runs on), and the path is the
    same. Locally: ``$RADAS_HOME/data/<user_name>``.

    >>> import radas
    >>> path = radas.get_data_dir("alice", run_with="local")
    >>> path.endswith("data/alice")
    True
    """
    roots = storage_roots(run_with)
    return _user_dir(roots.data_root, user_name, roots, "data_root")


def get_cold_data_dir(user_name: str, run_with: str | None = None) -> str:
    """This user's cold data directory (large, rarely read data), like ``get_data_dir``.

    Locally: ``$RADAS_HOME/cold-data/<user_name>``.

    >>> import radas
    >>> radas.get_cold_data_dir("alice", run_with="local").endswith("cold-data/alice")
    True
    """
    roots = storage_roots(run_with)
    return _user_dir(roots.cold_data_root, user_name, roots, "cold_data_root")


def figures_dir(user_name: str) -> Path:
    """Where saved figures go on this machine (never inside the working directory)."""
    return radas_home() / "figures" / validate_user_name(user_name)


def check_storage_user_name(user_name: object) -> str:
    """``validate_user_name`` plus the one name reserved in shared roots."""
    validate_user_name(user_name)
    assert isinstance(user_name, str)
    if user_name == ARTIFACTS_DIRNAME:
        raise InvalidNameError(
            f"user_name={user_name!r} is reserved: radas keeps every user's cloud artifacts in "
            "a folder of that name inside the data root. Choose another user_name."
        )
    return user_name


def _user_dir(root: str, user_name: str, roots: StorageRoots, key: str) -> str:
    check_storage_user_name(user_name)
    if not root or "://" in root:
        shown = f"is {root!r}" if root else "is not set"
        raise StorageError(
            f"{roots.where} has no shared data path: its {key} {shown}, and a data directory "
            "must be a path mounted on this machine and on every node. Keep data that both "
            "sides need as cloud artifacts instead (import radas.cloud_artifact as rda; "
            f"rda.init(user_name={user_name!r}, run_with={roots.where!r}); "
            "rda.save_cloud_artifact(...)), or set the cluster's "
            f"{key} to a shared directory in {config_path()}."
        )
    path = Path(root).expanduser() / user_name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if roots.where == "local":
            fix = "Set RADAS_HOME to a writable directory (default ~/.radas)."
        else:
            fix = (
                f"The {key} of {roots.where} ({root}) must be writable and mounted at the same "
                "path on this machine and on every node: mount it, or point the cluster's "
                f"{key} at a shared directory in {config_path()}."
            )
        raise StorageError(f"Cannot create {path} ({err.strerror or err}). {fix}") from err
    return str(path)
