"""Experiment folders on a local path or in an object store, read and written one way.

``location(path_or_uri)`` gives a ``pathlib.Path`` for a local path (so everything local works
exactly as it always did) and a ``UriPath`` for a URI such as ``s3://bucket/prefix`` or
``gs://bucket/prefix``: the few ``Path`` operations radas's readers and writers use
(``/``, ``name``, ``exists``, ``read_text``, ``iterdir``, ``glob``, ``replace``, ...), done
through a ``pyarrow.fs`` filesystem, the one Ray Tune writes through.

S3 endpoints: a URI under a configured cluster's ``results_root`` uses its
``results_endpoint_url`` (inside a radas job: ``$RADAS_RESULTS_ENDPOINT_URL``); otherwise
pyarrow's own resolution applies (``AWS_ENDPOINT_URL``, else AWS). Credentials always come from
the usual AWS variables and files of the machine, never from radas's config.

>>> location("/tmp/results/alice")
PosixPath('/tmp/results/alice')
>>> str(location("s3://lab/results") / "alice")  # doctest: +SKIP
's3://lab/results/alice'
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
import os
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from radas.errors import StorageError

# pyarrow's filesystems for these schemes; anything else with "://" is refused
URI_SCHEMES = ("s3", "gs", "gcs")
_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)
_filesystems: dict[tuple[Any, ...], pafs.FileSystem] = {}
# (config file stamp, (root, endpoint) -> clusters)
_configured: tuple[Any, dict[tuple[str, str | None], list[str]]] | None = None


def is_uri(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an object store (``scheme://...``) rather than a local path."""
    return "://" in str(path)


def location(path: AnyPath) -> Location:
    """``path`` as a ``Path`` (local) or a ``UriPath`` (a URI)."""
    if isinstance(path, UriPath):
        return path
    if not is_uri(path):
        return Path(path)
    uri = str(path)
    scheme = urlsplit(uri).scheme
    if scheme not in URI_SCHEMES:
        raise StorageError(
            f"{uri}: radas stores results on a local or shared path, or in an object store "
            f"URI with one of the schemes {', '.join(s + '://' for s in URI_SCHEMES)}; "
            f"{scheme}:// is not one of them."
        )
    filesystem, fs_path = filesystem_and_path(uri)
    return UriPath(filesystem, fs_path, scheme)


def on_filesystem(filesystem: pafs.FileSystem, fs_path: str) -> Location:
    """A location given as Ray Tune gives it: a pyarrow filesystem and a path on it."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        return Path(fs_path)
    scheme = {"gcs": "gs"}.get(filesystem.type_name, filesystem.type_name)
    return UriPath(filesystem, fs_path, scheme)


def filesystem_and_path(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``uri`` (with its S3 endpoint) and the path on it."""
    parts = urlsplit(uri)
    endpoint = endpoint_for(uri) if parts.scheme == "s3" else None
    key = (parts.scheme, endpoint, *(os.environ.get(name) for name in _CREDENTIAL_VARS))
    fs_path = f"{parts.netloc}{parts.path}".rstrip("/")
    if key not in _filesystems:
        try:
            if endpoint:
                _filesystems[key] = pafs.S3FileSystem(endpoint_override=endpoint)
            else:
                _filesystems[key] = pafs.FileSystem.from_uri(uri)[0]
        except (OSError, ValueError, ImportError) as err:
            raise StorageError(
                f"Cannot open the object store of {uri} ({err}). Check the URI; for S3 the "
                "credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or "
                "~/.aws/credentials, and an S3-compatible server's address from the cluster's "
                "results_endpoint_url (or AWS_ENDPOINT_URL)."
            ) from err
    return _filesystems[key], fs_path


# results_root -> endpoint of the cluster being worked with (``endpoint_scope``): reads and
# writes under that root go to its endpoint, whatever other clusters share the root's URI
_scoped_endpoints: contextvars.ContextVar[dict[str, str | None] | None] = contextvars.ContextVar(
    "radas_scoped_endpoints", default=None
)


@contextlib.contextmanager
def endpoint_scope(endpoints: dict[str, str | None]) -> Iterator[None]:
    """Within the block (and the threads ``asyncio.to_thread`` starts from it), a URI under
    one of ``endpoints``' roots is read through that root's endpoint: a cluster's results are
    read from the S3 server the cluster's own entry names, also when another configured
    cluster keeps results under the same URI on another server."""
    scoped = {root.rstrip("/"): endpoint for root, endpoint in endpoints.items()}
    token = _scoped_endpoints.set({**(_scoped_endpoints.get() or {}), **scoped})
    try:
        yield
    finally:
        _scoped_endpoints.reset(token)


def scoped_endpoints() -> dict[str, str | None]:
    """The endpoints of the ``endpoint_scope`` this runs in (to enter it again later)."""
    return dict(_scoped_endpoints.get() or {})


def endpoint_for(uri: str) -> str | None:
    """The S3 endpoint for ``uri``: inside a radas job the job's; within an
    ``endpoint_scope`` (a cluster's run or reads) the scope's; else that of the configured
    cluster whose ``results_root`` holds it (StorageError when clusters sharing that root
    name different endpoints); None leaves it to pyarrow (``AWS_ENDPOINT_URL``, else AWS)."""
    job_root = os.environ.get("RADAS_RESULTS_ROOT")
    if job_root and _within(uri, job_root):
        return os.environ.get("RADAS_RESULTS_ENDPOINT_URL") or None
    for root, endpoint in (_scoped_endpoints.get() or {}).items():
        if _within(uri, root):
            return endpoint
    configured = {
        (root, endpoint): names
        for (root, endpoint), names in _configured_endpoints().items()
        if _within(uri, root)
    }
    if len({endpoint for _, endpoint in configured}) > 1:
        listed = "; ".join(
            f"{', '.join(names)}: {endpoint or 'no results_endpoint_url'}"
            for (_, endpoint), names in sorted(configured.items(), key=str)
        )
        raise StorageError(
            f"{uri} is under the results_root of clusters on different S3 servers ({listed}), "
            "so it does not say which server holds it. Read it through its cluster: "
            "run_experiment(..., run_with='cluster:<name>', dos=['analyze']) or `radas "
            "analyze NAME --run-with cluster:<name>`; or give the roots different prefixes."
        )
    return next((endpoint for _, endpoint in configured), None)


def _within(uri: str, root: str) -> bool:
    root = root.rstrip("/")
    return uri == root or uri.startswith(root + "/")


def _configured_endpoints() -> dict[tuple[str, str | None], list[str]]:
    """(results_root, results_endpoint_url) -> the configured clusters that keep their results
    there, for every URI results_root (read again when the config file changes; a config
    that cannot be read gives none)."""
    global _configured
    from radas.clusters.config import config_path, load_clusters
    from radas.errors import RadasError

    path = config_path()
    try:
        stamp: Any = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return {}
    if _configured is None or _configured[0] != stamp:
        try:
            clusters = load_clusters()
        except RadasError:
            clusters = {}
        endpoints: dict[tuple[str, str | None], list[str]] = {}
        for cluster in clusters.values():
            if is_uri(cluster.results_root):
                key = (cluster.results_root.rstrip("/"), cluster.results_endpoint_url)
                endpoints.setdefault(key, []).append(cluster.name)
        _configured = (stamp, endpoints)
    return _configured[1]


class UriPath:
    """A file or folder in an object store, with the ``pathlib.Path`` operations radas uses.

    Object stores have no folders: a "folder" exists when something is stored under it,
    ``mkdir`` does nothing, and ``replace`` is a copy and a delete (the target appears whole).
    """

    def __init__(self, filesystem: pafs.FileSystem, fs_path: str, scheme: str) -> None:
        self.filesystem = filesystem
        self.fs_path = fs_path.rstrip("/")
        self.scheme = scheme

    def __str__(self) -> str:
        return f"{self.scheme}://{self.fs_path}"

    def __repr__(self) -> str:
        return f"UriPath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UriPath) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))

    def __truediv__(self, name: str | os.PathLike[str]) -> UriPath:
        return self._at(posixpath.join(self.fs_path, str(name)))

    def _at(self, fs_path: str) -> UriPath:
        return UriPath(self.filesystem, fs_path, self.scheme)

    @property
    def name(self) -> str:
        return posixpath.basename(self.fs_path)

    @property
    def parent(self) -> UriPath:
        return self._at(posixpath.dirname(self.fs_path))

    def with_name(self, name: str) -> UriPath:
        return self.parent / name

    def _type(self) -> pafs.FileType:
        return self.filesystem.get_file_info(self.fs_path).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def read_bytes(self) -> bytes:
        with self.filesystem.open_input_stream(self.fs_path) as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def write_bytes(self, data: bytes) -> int:
        """One upload: readers see the object whole or not at all."""
        with self.filesystem.open_output_stream(self.fs_path) as stream:
            stream.write(data)
        return len(data)

    def write_text(self, data: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(data.encode(encoding))

    def iterdir(self) -> Iterator[UriPath]:
        selector = pafs.FileSelector(self.fs_path, allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            yield self._at(info.path)

    def glob(self, pattern: str) -> Iterator[UriPath]:
        """Entries of this folder whose name matches ``pattern`` (one level, no ``**``)."""
        return (path for path in self.iterdir() if fnmatch.fnmatchcase(path.name, pattern))

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        self.filesystem.create_dir(self.fs_path, recursive=True)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def replace(self, target: UriPath) -> UriPath:
        self.filesystem.move(self.fs_path, target.fs_path)
        return target

    def move_tree(self, target: UriPath) -> None:
        """Copy everything under this folder to ``target``, then delete it here."""
        pafs.copy_files(
            self.fs_path,
            target.fs_path,
            source_filesystem=self.filesystem,
            destination_filesystem=target.filesystem,
        )
        self.filesystem.delete_dir(self.fs_path)

    def expanduser(self) -> UriPath:
        return self


Location = Path | UriPath
AnyPath = str | os.PathLike[str] | UriPath  # what ``location`` takes


def rename(source: Location, target: Location) -> None:
    """Move ``source`` over ``target`` (both on the same store): atomic on a local disk; in
    an object store the target appears whole (a copy, then the source is deleted)."""
    if isinstance(source, UriPath) and isinstance(target, UriPath):
        source.replace(target)
        return
    if isinstance(source, Path) and isinstance(target, Path):
        source.replace(target)
        return
    raise StorageError(f"Cannot move {source} to {target}: they are on different stores.")


@contextlib.contextmanager
def unreachable_as_error(path: AnyPath, *, during: str, then: str) -> Iterator[None]:
    """In an object store, an OSError raised inside (the store stopped answering, or refused
    a request) becomes a StorageError that says what is kept and, in ``then``, how to go on.

    >>> with unreachable_as_error("s3://lab/r", during="while reading", then="retry"):
    ...     raise OSError("curlCode: 7, Could not connect to server")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    radas.errors.StorageError: The results store of s3://lab/r did not answer while reading ...
    """
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        if not is_uri(str(path)):
            raise
        raise StorageError(
            f"The results store of {path} did not answer {during} ({err}). What was stored "
            f"before is kept; once the store answers again, {then}."
        ) from err


def arrow_source(path: Location) -> tuple[str, pafs.FileSystem | None]:
    """``(path, filesystem)`` for pyarrow readers and writers (``filesystem=None``: local)."""
    if isinstance(path, UriPath):
        return path.fs_path, path.filesystem
    return str(path), None


def check_writable(root: str, *, what: str) -> None:
    """Fail fast, before anything is submitted, when the object store of ``root`` cannot be
    used from here: the bucket is missing, the credentials are refused, the endpoint does not
    answer. Writes and deletes one small probe object. Local paths are not checked here."""
    if not is_uri(root):
        return
    store = location(root)
    assert isinstance(store, UriPath)
    bucket = store.fs_path.split("/", 1)[0]
    endpoint = endpoint_for(root) if store.scheme == "s3" else None
    where = endpoint or os.environ.get("AWS_ENDPOINT_URL") or f"the {store.scheme} default"
    fix = (
        f"Check that the bucket {bucket!r} exists, that {where} answers from this machine, "
        "and that this machine has credentials for it (AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials; for an S3-compatible server set the "
        f"cluster's results_endpoint_url or AWS_ENDPOINT_URL). {what}"
    )
    try:
        found = store.filesystem.get_file_info(bucket).type
    except OSError as err:
        raise StorageError(
            f"The results store {root} did not answer a request from this machine ({err}). {fix}"
        ) from err
    if found == pafs.FileType.NotFound:
        raise StorageError(f"The results store {root}: bucket {bucket!r} does not exist. {fix}")
    probe = store / f".radas-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"radas checks that results can be written here\n")
        probe.unlink(missing_ok=True)
    except OSError as err:
        raise StorageError(f"The results store {root} refused a write ({err}). {fix}") from err
