"""Temporary files: each write gets its own, and a local file replaced whole goes through one.

A file replaced "all at once" is written under a temporary name beside it, then renamed over
it. The temporary name is new for every write (process id and a random part), so two writers
of one file, whether threads of one process, processes or hosts sharing a folder, never write
into each other's temporary file. It starts with a dot (readers that list a folder pass over
it) and carries ``TEMP_MARKER`` (radas's stores leave such files out and clean up stale ones).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Protocol, TypeVar

TEMP_MARKER = ".radas-tmp-"
MAX_NAME_BYTES = 255  # one file or folder name (NAME_MAX of ext4, xfs, NFS, APFS)
_TEMP_SUFFIX_BYTES = 20  # "<pid>-<8 hex>" after the marker


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


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    def with_name(self, name: str, /) -> _Named: ...


P = TypeVar("P", bound=_Named)


def temporary_sibling(path: P) -> P:
    """A fresh temporary file beside ``path`` (a local path or an object-store location) for
    one write of it."""
    return path.with_name(temporary_name(path.name))  # type: ignore[return-value]


def replace_file(path: Path, payload: bytes) -> None:
    """Replace the local file ``path`` by ``payload`` all at once: written to a temporary
    file of this write's own beside it, flushed to disk, then renamed over it; the temporary
    file is removed when anything fails (an OSError, a full disk among them, is raised)."""
    temporary = temporary_sibling(path)
    try:
        with open(temporary, "xb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
