"""The artifact store in an object store (or any fsspec filesystem), by URL.

S3 goes through s3fs with every request bounded in time (``S3_*``); an upload becomes
visible only when complete, and a failed save aborts it. Errors of the store are said as
``StorageError``s that name the endpoint and what to check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from radas.core.temporary import TEMP_MARKER, temporary_name
from radas.errors import (
    ArtifactNotFoundError,
    ArtifactPathError,
    InvalidArgumentError,
    RadasError,
    StorageError,
)
from radas.storage.artifact_paths import StoreBase
from radas.storage.dirs import check_storage_user_name
from radas.storage.serializers import Serializer, serializer_for

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


class FsspecArtifactStore(StoreBase):
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
                    "`pip install 'radas-ray[s3]'` (on a cluster: runtime_env={'pip': ['s3fs']})."
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
                "fsspec URL whose package is installed (s3:// needs `pip install 'radas-ray[s3]'`, "
                "gs:// `pip install 'radas-ray[gcs]'`)."
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
    def _translated(self, action: str, path: str, target: str) -> Iterator[None]:
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
