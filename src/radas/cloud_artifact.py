"""Save and load Python objects by path, from the client and inside trainables on a cluster.

::

    import radas.cloud_artifact as rda

    rda.init(user_name="alice")                  # where this code runs; see init()
    rda.save_cloud_artifact("models/w.npy", weights)
    weights = rda.load_cloud_artifact("models/w.npy")
    rda.list_cloud_artifacts("models")           # ['models/w.npy']
    rda.rm_cloud_artifact("models/w.npy")

The extension chooses the format (``.pkl`` any object, ``.json``, ``.txt``, ``.npy``/``.npz``,
``.parquet``/``.csv`` DataFrames, ``.pt`` with torch, anything else bytes; see
``radas.storage.serializers``). Paths are relative to the user's own root and can never leave
it; saves are atomic (a reader sees the old or the new version, never half of one).

Where artifacts live: ``$RADAS_HOME/artifacts/<user>`` locally; on a cluster its
``artifact_root`` (a shared path or an ``s3://`` URL; default ``<results_root>/.radas-artifacts``
when the cluster's results are in an object store, else ``<data_root>/.radas-artifacts``)
``/<user>``.
"""

from __future__ import annotations

import os
from typing import Any

from radas.errors import StorageError
from radas.storage.artifacts import ArtifactStore, open_store

_store: ArtifactStore | None = None


def init(
    user_name: str,
    *,
    run_with: str | None = None,
    root: str | os.PathLike[str] | None = None,
    endpoint_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ArtifactStore:
    """Choose the store the other functions of this module use (per process), and return it.

    - ``rda.init(user_name="alice")``: where this code runs. Inside a trainable (or the job)
      on a cluster that is the cluster's store, found from the job's environment; elsewhere
      ``$RADAS_HOME/artifacts/alice``.
    - ``run_with="cluster:<name>"``: that cluster's store, from the client (the same artifacts
      its trainables see); ``run_with="local"``: the local one.
    - ``root=``: any local/shared path or URL (``s3://bucket/prefix``); ``endpoint_url`` for a
      self-hosted S3-compatible server; ``storage_options`` go to the fsspec filesystem.

    S3 credentials come from the machine (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or
    ~/.aws/credentials), never from radas.

    >>> import radas.cloud_artifact as rda
    >>> rda.init(user_name="alice", run_with="local").location.endswith("artifacts/alice")
    True
    """
    global _store
    _store = open_store(
        user_name,
        run_with=run_with,
        root=root,
        endpoint_url=endpoint_url,
        storage_options=storage_options,
    )
    return _store


def get_store() -> ArtifactStore:
    """The store ``init`` chose in this process; StorageError when ``init`` was not called.

    >>> import radas.cloud_artifact as rda
    >>> _ = rda.init(user_name="alice", run_with="local")
    >>> rda.get_store().user_name
    'alice'
    """
    if _store is None:
        raise StorageError(
            "radas.cloud_artifact is not initialised in this process: call "
            "rda.init(user_name='<you>') first (inside a trainable too; on the client add "
            "run_with='cluster:<name>' to use a cluster's store)."
        )
    return _store


def save_cloud_artifact(path: str, obj: Any) -> str:
    """Save ``obj`` at ``path`` (relative to your root; the extension picks the format).

    Atomic: readers see the previous version until the new one is complete. Returns where it
    was stored (a path or URL).

    >>> import radas.cloud_artifact as rda
    >>> _ = rda.init(user_name="alice", run_with="local")
    >>> rda.save_cloud_artifact("doc/config.json", {"lr": 0.1}).endswith("doc/config.json")
    True
    """
    return get_store().save(path, obj)


def load_cloud_artifact(path: str) -> Any:
    """Load the artifact at ``path``; ArtifactNotFoundError names the location looked at.

    >>> import radas.cloud_artifact as rda
    >>> _ = rda.init(user_name="alice", run_with="local")
    >>> _ = rda.save_cloud_artifact("doc/config.json", {"lr": 0.1})
    >>> rda.load_cloud_artifact("doc/config.json")
    {'lr': 0.1}
    """
    return get_store().load(path)


def rm_cloud_artifact(path: str, *, recursive: bool = False) -> None:
    """Remove the artifact at ``path`` (a folder of artifacts needs ``recursive=True``).

    >>> import radas.cloud_artifact as rda
    >>> _ = rda.init(user_name="alice", run_with="local")
    >>> _ = rda.save_cloud_artifact("doc/note.txt", "hello")
    >>> rda.rm_cloud_artifact("doc/note.txt")
    >>> rda.artifact_exists("doc/note.txt")
    False
    """
    get_store().remove(path, recursive=recursive)


def artifact_exists(path: str) -> bool:
    """Whether an artifact (or a folder of artifacts) is stored at ``path``.

    >>> import radas.cloud_artifact as rda
    >>> _ = rda.init(user_name="alice", run_with="local")
    >>> rda.artifact_exists("no/such/thing.pkl")
    False
    """
    return get_store().exists(path)


exists = artifact_exists


def list_cloud_artifacts(prefix: str = "") -> list[str]:
    """The paths of your artifacts (under the folder ``prefix``), sorted.

    >>> import radas.cloud_artifact as rda
    >>> _ = rda.init(user_name="alice", run_with="local")
    >>> _ = rda.save_cloud_artifact("doc/a.txt", "a")
    >>> "doc/a.txt" in rda.list_cloud_artifacts("doc")
    True
    """
    return get_store().list(prefix)


__all__ = [
    "artifact_exists",
    "exists",
    "get_store",
    "init",
    "list_cloud_artifacts",
    "load_cloud_artifact",
    "rm_cloud_artifact",
    "save_cloud_artifact",
]
