"""Artifact paths and what every artifact store shares.

An artifact path is relative to the user's root and can never leave it
(``split_artifact_path``); a writer's temporary files carry ``TEMP_MARKER`` in their names
(``radas.core.temporary``). ``StoreBase`` holds the checks and errors common to the local store
(``local_artifacts``) and the object store (``object_artifacts``): a first folder named like
another user's root, a missing artifact (with close names), an unreadable one.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import IO, Any

from radas.core.temporary import MAX_NAME_BYTES, TEMP_MARKER
from radas.errors import ArtifactNotFoundError, ArtifactPathError, RadasError, StorageError
from radas.storage.serializers import Serializer

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


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


class StoreBase:
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
