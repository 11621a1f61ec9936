"""Artifact stores: Python objects saved by path under one user's root.

A store is ``<artifact root>/<user_name>``, where the artifact root is a local or shared path
(``LocalArtifactStore``) or an object store URL such as ``s3://bucket/prefix``
(``FsspecArtifactStore``, through fsspec; ``endpoint_url`` for self-hosted S3-compatible
servers). Both implement the ``ArtifactStore`` protocol; ``open_store`` picks one.

Safety, for every store:

- Paths are relative to the user's root and can never leave it: empty, ``.`` and ``..`` parts,
  absolute paths, ``~``, URLs and backslashes are refused, and so is a first folder named like
  another user's root next to ours. On local paths the resolved path (symlinks followed) must
  stay inside the root. Refused paths raise ``ArtifactPathError`` before anything is touched.
- Each file or folder name in a path is at most ``MAX_NAME_BYTES`` (255) bytes of UTF-8, the
  limit of common filesystems, on every store (so a path that works on one works on all).
- Writes are atomic. Local: the object is written to a hidden temporary file in the same
  folder (``.<name>.radas-tmp-<pid>-<random>``; for names too long to take that suffix,
  ``.<digest of name>.radas-tmp-...``), then renamed over the artifact; a writer that
  dies leaves the previous version in place, and its temporary file is swept an hour later.
  Object stores: an upload becomes visible only when complete; a failed save aborts it.
- The object is checked against its extension before anything is written (``serializers``).

The stores live in ``local_artifacts`` and ``object_artifacts``, the path rules they share in
``artifact_paths``; this module is their protocol, ``open_store`` and the names callers use.
"""

from __future__ import annotations

import os
import re
from typing import Any, Protocol, runtime_checkable

from radas.core.temporary import MAX_NAME_BYTES, TEMP_MARKER, temporary_name, temporary_prefix
from radas.errors import InvalidArgumentError
from radas.storage.artifact_paths import split_artifact_path
from radas.storage.dirs import check_storage_user_name, storage_roots
from radas.storage.local_artifacts import LocalArtifactStore
from radas.storage.object_artifacts import FsspecArtifactStore

__all__ = [
    "MAX_NAME_BYTES",
    "TEMP_MARKER",
    "ArtifactStore",
    "FsspecArtifactStore",
    "LocalArtifactStore",
    "open_store",
    "split_artifact_path",
    "temporary_name",
    "temporary_prefix",
]


@runtime_checkable
class ArtifactStore(Protocol):
    """Save, load, remove, test and list artifacts by path under one user's root."""

    user_name: str
    location: str  # the user's root: a path or URL

    def save(self, path: str, obj: Any) -> str: ...

    def load(self, path: str) -> Any: ...

    def remove(self, path: str, *, recursive: bool = False) -> None: ...

    def exists(self, path: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]: ...


def open_store(
    user_name: str,
    *,
    run_with: str | None = None,
    root: str | os.PathLike[str] | None = None,
    endpoint_url: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> ArtifactStore:
    """The artifact store of ``user_name``: for ``run_with`` (see ``storage.dirs``), or at
    ``root`` (a path or a URL such as ``s3://bucket/prefix``).

    >>> store = open_store("alice", run_with="local")
    >>> store.location.endswith("artifacts/alice")
    True
    """
    check_storage_user_name(user_name)
    if root is not None and run_with is not None:
        raise InvalidArgumentError(
            "Pass either root= (where artifacts live) or run_with= (use that cluster's "
            "artifact root), not both."
        )
    if endpoint_url is not None and not re.match(r"https?://", endpoint_url):
        raise InvalidArgumentError(
            f"endpoint_url={endpoint_url!r} is not an http(s) URL; give the S3-compatible "
            "server's address, e.g. 'http://127.0.0.1:9000'."
        )
    if root is None:
        roots = storage_roots(run_with)
        root = roots.artifact_root
        endpoint_url = endpoint_url or roots.artifact_endpoint_url
    root = os.fspath(root)
    if "://" in root and not root.startswith("file://"):
        return FsspecArtifactStore(
            user_name, root, endpoint_url=endpoint_url, storage_options=storage_options
        )
    if endpoint_url:
        raise InvalidArgumentError(
            f"endpoint_url is for S3-compatible stores, but the artifact root {root!r} is a "
            "local path. Use an s3:// root, or leave endpoint_url out."
        )
    return LocalArtifactStore(user_name, root.removeprefix("file://"))
