"""The artifact store on a local or shared (e.g. NFS) directory: ``<root>/<user_name>``.

A save writes a hidden temporary file in the artifact's folder and renames it over the
artifact (a writer that dies leaves the previous version; its temporary file is swept an hour
later); symbolic links never lead out of the root, and a whole path stays under the
system's limit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from pathlib import Path
from typing import Any

from radas.core.temporary import TEMP_MARKER, temporary_name, temporary_prefix
from radas.errors import ArtifactNotFoundError, ArtifactPathError, StorageError
from radas.storage.artifact_paths import StoreBase
from radas.storage.dirs import check_storage_user_name
from radas.storage.serializers import serializer_for

MAX_LOCAL_PATH_BYTES = 4095  # a whole local path (PATH_MAX less its NUL)
STALE_TEMP_S = 3600.0


class LocalArtifactStore(StoreBase):
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
