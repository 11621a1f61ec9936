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
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from radas.errors import (
    ArtifactNotFoundError,
    ArtifactPathError,
    InvalidArgumentError,
    RadasError,
    StorageError,
)
from radas.storage.dirs import check_storage_user_name, storage_roots
from radas.storage.serializers import Serializer, serializer_for

TEMP_MARKER = ".radas-tmp-"
MAX_NAME_BYTES = 255  # one file or folder name (NAME_MAX of ext4, xfs, NFS, APFS)
MAX_LOCAL_PATH_BYTES = 4095  # a whole local path (PATH_MAX less its NUL)
_TEMP_SUFFIX_BYTES = 20  # "<pid>-<8 hex>" after the marker
STALE_TEMP_S = 3600.0
# Where an upload is atomic by itself (visible only when complete) and files can be discarded.
ATOMIC_UPLOAD_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
S3_PROTOCOLS = frozenset({"s3", "s3a"})
# Every S3 request ends: a server that accepts the connection and never answers (a black hole)
# fails a call after S3_ATTEMPTS x (connect + read timeout), ~40 s, not s3fs's 5 x botocore's
# 5 attempts of 15 s each (400-490 s measured)
S3_READ_TIMEOUT_S = 10
S3_CONNECT_TIMEOUT_S = 5
S3_ATTEMPTS = 2  # s3fs retries a failed request once; botocore does not retry inside it
# The URL schemes an artifact root may have: object stores, and fsspec's in-process "memory"
# (for tests). Anything else (ftp://, http://, sftp://...) is refused before any network use.
ARTIFACT_URL_PROTOCOLS = ATOMIC_UPLOAD_PROTOCOLS | {"memory"}
# Parts of uploads and ranges of downloads on object stores: small enough that a save or load
# holds little more than the object itself in memory, big enough for few requests per GiB.
OBJECT_BLOCK_SIZE = 16 * 2**20
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


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


def split_artifact_path(path: object, *, location: str, allow_empty: bool = False) -> list[str]:
    """The parts of a relative artifact path; ArtifactPathError for anything that could leave
    the user's root.

    >>> split_artifact_path("models/best.pkl", location="/r/alice")
    ['models', 'best.pkl']
    """
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise ArtifactPathError(
            f"An artifact path must be a str such as 'models/best.pkl', not "
            f"{type(path).__qualname__} ({path!r})."
        )
    parts = path.split("/")
    if allow_empty and path.endswith("/"):
        parts = parts[:-1]
    if path == "":
        if allow_empty:
            return []
        problem = "is empty"
    elif "\x00" in path:
        problem = "contains a NUL character"
    elif "://" in path:
        problem = "is a URL"
    elif path.startswith(("/", "\\", "~")) or _WINDOWS_DRIVE.match(path):
        problem = "is absolute"
    elif "\\" in path:
        problem = "contains a backslash (separate folders with '/')"
    elif ".." in parts:
        problem = "goes up with '..'"
    elif any(part in ("", ".") for part in parts):
        problem = "has an empty or '.' part (e.g. '//', './' or a trailing '/')"
    elif any(TEMP_MARKER in part for part in parts):
        problem = f"contains {TEMP_MARKER!r}, which radas reserves for its temporary files"
    elif long := [part for part in parts if len(part.encode("utf-8")) > MAX_NAME_BYTES]:
        problem = (
            f"has a name of {len(long[0].encode('utf-8'))} bytes ({long[0][:40]!r}...), over "
            f"the limit of {MAX_NAME_BYTES} bytes per file or folder name; shorten it, or "
            "split it into folders"
        )
    else:
        return parts
    raise ArtifactPathError(
        f"Artifact path {path!r} {problem}. Artifact paths are relative to your own root "
        f"({location}), e.g. 'models/best.pkl', and can never leave it. Nothing was read or "
        "written."
    )


def temporary_prefix(name: str) -> str:
    """How the temporary files of writers of ``name`` start: ``.<name>.radas-tmp-``, or
    ``.<digest>.radas-tmp-`` when a long ``name`` would push them over ``MAX_NAME_BYTES``.

    >>> temporary_prefix("w.npy")
    '.w.npy.radas-tmp-'
    """
    prefix = f".{name}{TEMP_MARKER}"
    if len(prefix.encode("utf-8")) + _TEMP_SUFFIX_BYTES > MAX_NAME_BYTES:
        prefix = f".{hashlib.sha256(name.encode('utf-8')).hexdigest()[:32]}{TEMP_MARKER}"
    return prefix


def temporary_name(name: str) -> str:
    """A fresh temporary file name for one write of ``name`` (see ``temporary_prefix``)."""
    return f"{temporary_prefix(name)}{os.getpid()}-{secrets.token_hex(4)}"


class _StoreBase:
    user_name: str
    location: str
    users_location: str  # the folder that holds every user's root

    def _is_user_root(self, name: str) -> bool:
        raise NotImplementedError

    def _names_in(self, parts: list[str]) -> list[str]:
        raise NotImplementedError

    def _parts(self, path: object, *, allow_empty: bool = False) -> list[str]:
        parts = split_artifact_path(path, location=self.location, allow_empty=allow_empty)
        first = parts[0] if len(parts) > 1 else None
        if first is not None and first != self.user_name and self._is_user_root(first):
            raise ArtifactPathError(
                f"Artifact path {path!r} starts with {first!r}, the name of another user's "
                f"root in {self.users_location}. Artifact paths are relative to your own root "
                f"({self.location}) and never reach another user's artifacts; name the folder "
                f"differently (e.g. 'from_{first}/...'). Nothing was read or written."
            )
        return parts

    def _not_found(self, path: str, parts: list[str], full: str) -> ArtifactNotFoundError:
        try:
            siblings = self._names_in(parts[:-1])
        except Exception:  # the hint is optional; the error is what matters
            siblings = []
        folder = "/".join(parts[:-1])
        candidates = [f"{folder}/{name}" if folder else name for name in siblings]
        matches = difflib.get_close_matches(path, candidates, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, matches))}?" if matches else ""
        return ArtifactNotFoundError(
            f"No artifact {path!r} for user {self.user_name!r}: nothing is stored at {full}."
            f"{hint} rda.list_cloud_artifacts() lists what is there. The client and its "
            "trainables see the same artifacts when both call rda.init with the same user_name "
            "(on the client with run_with='cluster:<name>' for a cluster's store)."
        )

    def _load_with(self, serializer: Serializer, file: IO[bytes], path: str, full: str) -> Any:
        try:
            return serializer.load(file, path)
        except RadasError:
            raise
        except Exception as err:
            raise StorageError(
                f"Cannot read artifact {path!r} ({full}) as {serializer.label}: "
                f"{type(err).__name__}: {err}. It may have been written by something other "
                "than radas, or under another extension; load it with a raw path (no known "
                "extension) to get its bytes."
            ) from err

    def __repr__(self) -> str:
        return f"{type(self).__name__}(user_name={self.user_name!r}, location={self.location!r})"


class LocalArtifactStore(_StoreBase):
    """Artifacts under a local or shared (e.g. NFS) directory: ``<root>/<user_name>``.

    >>> import tempfile
    >>> store = LocalArtifactStore("alice", tempfile.mkdtemp())
    >>> store.save("x.json", {"a": 1}) and store.load("x.json")
    {'a': 1}
    """

    def __init__(self, user_name: str, root: str | os.PathLike[str]) -> None:
        self.user_name = check_storage_user_name(user_name)
        self.base = Path(root).expanduser().absolute()
        self.root = self.base / user_name
        self.users_location = str(self.base)
        self.location = str(self.root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(
                f"Cannot create the artifact root {self.root} ({err.strerror or err}). The "
                "artifact root must be a writable directory (for a cluster: mounted at the "
                "same path here and on every node); set artifact_root in the cluster's config "
                "or pass root= to rda.init."
            ) from err

    def save(self, path: str, obj: Any) -> str:
        parts = self._parts(path)
        target = self._target(parts, path)
        serializer = serializer_for(parts[-1])
        serializer.check(obj, path)
        if target.is_dir() and not target.is_symlink():
            raise ArtifactPathError(
                f"Cannot save {path!r}: it is a folder of artifacts ({target}). Choose another "
                f"name, or remove it first with rm_cloud_artifact({path!r}, recursive=True)."
            )
        temporary = target.parent / temporary_name(target.name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "xb") as file:
                serializer.dump(obj, file, path)
            os.replace(temporary, target)
        except BaseException as err:
            with contextlib.suppress(OSError):
                temporary.unlink()
            if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:
                raise ArtifactPathError(
                    f"Cannot save {path!r}: the path {target} is too long for this "
                    f"filesystem ({err.strerror}). Use shorter names or fewer folders."
                ) from err
            if isinstance(err, OSError):
                raise StorageError(
                    f"Saving artifact {path!r} to {target} failed: {err.strerror or err}. The "
                    "previous version, if there was one, is unchanged. Check free space and "
                    "permissions there."
                ) from err
            raise
        self._sweep_stale_temporaries(target)
        return str(target)

    def load(self, path: str) -> Any:
        parts = self._parts(path)
        target = self._target(parts, path)
        serializer = serializer_for(parts[-1])
        try:
            file = open(target, "rb")  # noqa: SIM115 (closed below; open errors differ)
        except FileNotFoundError:
            raise self._not_found(path, parts, str(target)) from None
        except IsADirectoryError:
            raise self._folder_error(path, str(target)) from None
        with file:
            return self._load_with(serializer, file, path, str(target))

    def remove(self, path: str, *, recursive: bool = False) -> None:
        parts = self._parts(path)
        target = self._target(parts, path)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            if not recursive:
                count = len(self.list(path))
                raise ArtifactPathError(
                    f"{path!r} is a folder with {count} artifact(s) ({target}): "
                    f"rm_cloud_artifact({path!r}, recursive=True) removes it with everything "
                    "in it."
                )
            shutil.rmtree(target)
        else:
            raise self._not_found(path, parts, str(target))
        parent = target.parent
        while parent != self.root:  # empty folders are not kept (like object stores)
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def exists(self, path: str) -> bool:
        parts = self._parts(path)
        return self._target(parts, path).exists()

    def _is_user_root(self, name: str) -> bool:
        return (self.base / name).is_dir()

    def _names_in(self, parts: list[str]) -> list[str]:
        folder = self.root.joinpath(*parts)
        return [name for name in os.listdir(folder) if TEMP_MARKER not in name]

    def _target(self, parts: list[str], path: str) -> Path:
        target = self.root.joinpath(*parts)
        if len(os.fsencode(target)) > MAX_LOCAL_PATH_BYTES:
            raise ArtifactPathError(
                f"Artifact path {path!r} makes a local path of {len(os.fsencode(target))} "
                f"bytes ({str(target)[:60]}...), over the limit of {MAX_LOCAL_PATH_BYTES}: use "
                "shorter names or fewer folders. Nothing was read or written."
            )
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(target)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise ArtifactPathError(
                f"Artifact path {path!r} leads out of your root ({self.location}) through a "
                f"symbolic link: it resolves to {real}. radas never follows links out of the "
                "root; remove the link or copy the data in. Nothing was read or written."
            )
        return target

    def _folder_error(self, path: str, full: str) -> ArtifactNotFoundError:
        return ArtifactNotFoundError(
            f"{path!r} is a folder of artifacts ({full}), not one artifact: "
            f"rda.list_cloud_artifacts({path!r}) lists what is in it."
        )

    def _sweep_stale_temporaries(self, target: Path) -> None:
        """Remove what writers killed mid-save left for this artifact over an hour ago."""
        prefix = temporary_prefix(target.name)
        cutoff = time.time() - STALE_TEMP_S
        with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.stat().st_mtime < cutoff:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def list(self, prefix: str = "") -> list[str]:
        parts = self._parts(prefix, allow_empty=True)
        start = self._target(parts, prefix)
        if start.is_file():
            return ["/".join(parts)]
        real_root = os.path.realpath(self.root) + os.sep
        found = []
        for directory, _, files in os.walk(start):
            for name in files:
                file = Path(directory, name)
                if TEMP_MARKER in name or (
                    file.is_symlink() and not os.path.realpath(file).startswith(real_root)
                ):
                    continue  # a writer's temporary file, or a link out of the root
                found.append(file.relative_to(self.root).as_posix())
        return sorted(found)


class FsspecArtifactStore(_StoreBase):
    """Artifacts in an object store (or any fsspec filesystem) by URL, e.g. ``s3://bucket/p``.

    S3 goes through s3fs; ``endpoint_url`` points it at a self-hosted S3-compatible server
    (MinIO, Ceph, moto). Credentials come from the standard AWS variables and files of the
    machine it runs on.

    >>> store = FsspecArtifactStore("alice", "s3://lab/radas",
    ...                             endpoint_url="http://127.0.0.1:9000")  # doctest: +SKIP
    """

    def __init__(
        self,
        user_name: str,
        root: str,
        *,
        endpoint_url: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.user_name = check_storage_user_name(user_name)
        self.protocol = root.split("://", 1)[0].lower()
        if self.protocol not in ARTIFACT_URL_PROTOCOLS:
            raise InvalidArgumentError(
                f"The artifact root {root!r} uses {self.protocol}://, which radas does not "
                "store artifacts on: use a local or shared path, or an object store URL ("
                + ", ".join(f"{p}://" for p in sorted(ATOMIC_UPLOAD_PROTOCOLS))
                + "), e.g. root='s3://bucket/prefix'."
            )
        self.endpoint_url = endpoint_url
        options = dict(storage_options or {})
        if self.protocol in S3_PROTOCOLS:
            try:
                import s3fs  # noqa: F401
            except ImportError as err:
                raise StorageError(
                    f"The artifact root {root} is on S3, which needs s3fs: "
                    "`pip install 'radas[s3]'` (on a cluster: runtime_env={'pip': ['s3fs']})."
                ) from err
            if endpoint_url:
                options.setdefault("endpoint_url", endpoint_url)
            # other processes write too: never answer from a stale listing
            options.setdefault("use_listings_cache", False)
            bounds = {
                "connect_timeout": S3_CONNECT_TIMEOUT_S,
                "read_timeout": S3_READ_TIMEOUT_S,
                "retries": {"max_attempts": 1, "mode": "standard"},
            }
            options["config_kwargs"] = {**bounds, **options.get("config_kwargs", {})}
        elif endpoint_url:
            raise InvalidArgumentError(
                f"endpoint_url is for S3-compatible stores, but the artifact root {root!r} is "
                f"{self.protocol}://. Use an s3:// root, or leave endpoint_url out."
            )
        try:
            import fsspec

            self.fs, base_path = fsspec.core.url_to_fs(root, **options)
        except (ImportError, ValueError, TypeError) as err:
            raise StorageError(
                f"Cannot open the artifact root {root!r}: {err}. Use a local path or an "
                "fsspec URL whose package is installed (s3:// needs `pip install 'radas[s3]'`)."
            ) from err
        if self.protocol in S3_PROTOCOLS:
            try:
                _bound_s3_requests(self.fs)
            except (TypeError, ValueError) as err:  # storage_options s3fs does not take
                raise StorageError(
                    f"Cannot open the artifact root {root!r}: {err}. Check storage_options: "
                    "they go to s3fs.S3FileSystem (botocore settings under 'config_kwargs')."
                ) from err
        self.base_path = base_path.rstrip("/")
        self.root_path = f"{self.base_path}/{user_name}"
        self.users_location = self.fs.unstrip_protocol(self.base_path)
        self.location = self.fs.unstrip_protocol(self.root_path)
        self.atomic_upload = self.protocol in ATOMIC_UPLOAD_PROTOCOLS
        self.open_options: dict[str, Any] = (
            {"block_size": OBJECT_BLOCK_SIZE}
            if self.atomic_upload and "default_block_size" not in options
            else {}
        )

    def save(self, path: str, obj: Any) -> str:
        parts = self._parts(path)
        serializer = serializer_for(parts[-1])
        serializer.check(obj, path)
        target = self._join(parts)
        with self._translated("Saving", path, target):
            if self.atomic_upload:
                self._write(target, serializer, obj, path)
            else:  # a filesystem without atomic uploads: temporary file, then move
                parent, name = target.rsplit("/", 1)
                temporary = f"{parent}/{temporary_name(name)}"
                self.fs.makedirs(parent, exist_ok=True)
                try:
                    self._write(temporary, serializer, obj, path)
                    self.fs.mv(temporary, target)
                finally:
                    with contextlib.suppress(Exception):
                        if self.fs.exists(temporary):
                            self.fs.rm(temporary)
        return self.fs.unstrip_protocol(target)

    def load(self, path: str) -> Any:
        parts = self._parts(path)
        serializer = serializer_for(parts[-1])
        target = self._join(parts)
        with self._translated("Loading", path, target):
            try:
                kind = self.fs.info(target).get("type")
            except FileNotFoundError:
                raise self._not_found(path, parts, self.fs.unstrip_protocol(target)) from None
            if kind != "file":  # object stores open a "folder" (a key prefix) as b""
                raise ArtifactNotFoundError(
                    f"{path!r} is a folder of artifacts ({self.fs.unstrip_protocol(target)}), "
                    f"not one artifact: rda.list_cloud_artifacts({path!r}) lists it."
                )
            file = self.fs.open(target, "rb", **self.open_options)
            with file:
                return self._load_with(serializer, file, path, self.fs.unstrip_protocol(target))

    def remove(self, path: str, *, recursive: bool = False) -> None:
        parts = self._parts(path)
        target = self._join(parts)
        with self._translated("Removing", path, target):
            if self.fs.isfile(target):
                self.fs.rm_file(target)
            elif self.fs.isdir(target):
                if not recursive:
                    count = len(self.list(path))
                    raise ArtifactPathError(
                        f"{path!r} is a folder with {count} artifact(s) "
                        f"({self.fs.unstrip_protocol(target)}): rm_cloud_artifact({path!r}, "
                        "recursive=True) removes it with everything in it."
                    )
                self.fs.rm(target, recursive=True)
            else:
                raise self._not_found(path, parts, self.fs.unstrip_protocol(target))

    def exists(self, path: str) -> bool:
        target = self._join(self._parts(path))
        with self._translated("Checking", path, target):
            return bool(self.fs.exists(target))

    def _join(self, parts: list[str]) -> str:
        return "/".join([self.root_path, *parts])

    def _is_user_root(self, name: str) -> bool:
        path = f"{self.base_path}/{name}"
        with self._translated("Checking", name, path):
            return bool(self.fs.isdir(path))

    def _names_in(self, parts: list[str]) -> list[str]:
        listed = self.fs.ls(self._join(parts), detail=False)
        return [str(name).rstrip("/").rsplit("/", 1)[-1] for name in listed]

    def _write(self, target: str, serializer: Serializer, obj: Any, path: str) -> None:
        file = self.fs.open(target, "wb", **self.open_options)
        try:
            serializer.dump(obj, file, path)
        except BaseException:
            # fsspec commits a file when it is closed, even on error: abort the upload and
            # mark the file closed so that nothing partial is ever written
            with contextlib.suppress(Exception):
                file.discard()
            with contextlib.suppress(Exception):
                file.closed = True
            raise
        file.close()

    @contextlib.contextmanager
    def _translated(self, action: str, path: str, target: str):
        try:
            yield
        except RadasError:
            raise
        except Exception as err:
            where = self.fs.unstrip_protocol(target)
            if self.protocol in S3_PROTOCOLS and "Timeout" in type(err).__name__:
                endpoint = self.endpoint_url or "AWS's default endpoint"
                raise StorageError(
                    f"{action} artifact {path!r} at {where} failed: {endpoint} did not answer "
                    f"({S3_ATTEMPTS} tries of {S3_READ_TIMEOUT_S} s; {type(err).__name__}). "
                    "Check that the S3 server runs and answers from this machine (the address, "
                    "a firewall, a proxy), then call again."
                    f"{' The previous version is unchanged.' if action == 'Saving' else ''}"
                ) from err
            if self.protocol in S3_PROTOCOLS:
                endpoint = self.endpoint_url or "AWS's default endpoint"
                hint = (
                    f"Check that the bucket exists, that {endpoint} answers from this machine, "
                    "and that S3 credentials are set here (AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials; on a cluster: on every node "
                    "or in runtime_env={'env_vars': {...}})."
                )
            else:
                hint = "Check that the store is reachable and writable from this machine."
            raise StorageError(
                f"{action} artifact {path!r} at {where} failed: {type(err).__name__}: {err}. "
                f"{hint}{' The previous version is unchanged.' if action == 'Saving' else ''}"
            ) from err

    def list(self, prefix: str = "") -> list[str]:
        parts = self._parts(prefix, allow_empty=True)
        start = self._join(parts)
        with self._translated("Listing", prefix, start):
            found = self.fs.find(start, detail=True)
        root = self.fs._strip_protocol(self.root_path).rstrip("/") + "/"
        names = []
        for name, info in found.items():
            # files only: when a folder's first artifact lands while s3fs lists it, s3fs
            # returns the folder itself (as a "directory") as what it found
            if info.get("type") != "file":
                continue
            name = self.fs._strip_protocol(name)
            if name.startswith(root) and TEMP_MARKER not in name.rsplit("/", 1)[-1]:
                names.append(name[len(root) :])
        return sorted(names)


def _bound_s3_requests(fs: Any) -> None:
    """Make every request of the s3fs filesystem ``fs`` end within its timeouts: s3fs's own
    retries, and no ``Expect: 100-continue`` on uploads (aiohttp waits for the server's
    "100 Continue" with no timeout at all: a put to a server that never answers hung for
    good)."""
    from botocore.handlers import add_expect_header

    fs.retries = S3_ATTEMPTS
    fs.connect()  # makes the client; no request is sent
    fs.s3.meta.events.unregister("before-call.s3", add_expect_header)


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
