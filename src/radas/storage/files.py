"""Writing radas's own files so that a crash at any instant leaves the old version or the new
one, never a mix, and a full disk says so.

Every write goes to a temporary name next to the target (a dot file: readers skip it),
is flushed to disk, then renamed over the target (in an object store: uploaded under the
temporary name, then moved). A write that hits ENOSPC or EDQUOT raises
``StorageFullError`` naming the path and the bytes it needed; the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from radas.core.temporary import replace_file, temporary_sibling
from radas.errors import StorageFullError
from radas.storage import store as _store

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# pyarrow's IO errors carry the OS message but not always the errno.
NO_SPACE_MESSAGES = ("No space left on device", "Disk quota exceeded")


def is_no_space(err: BaseException) -> bool:
    if isinstance(err, StorageFullError):
        return True
    if getattr(err, "errno", None) in NO_SPACE_ERRNOS:
        return True
    return isinstance(err, OSError) and any(text in str(err) for text in NO_SPACE_MESSAGES)


def storage_full_error(path: _store.AnyPath, needed: int | None) -> StorageFullError:
    """The error for a write of ``needed`` bytes to ``path`` that found no space."""
    amount = f"{needed:,} bytes" if needed is not None else "more space"
    return StorageFullError(
        f"No space left to write {path} (needed {amount}; RADAS_HOME or the cluster's results "
        "root is full). What was stored before is kept and consistent: free space there, "
        "then continue with run_choice='restore'."
    )


@contextlib.contextmanager
def no_space_as_error(path: _store.AnyPath, needed: int | None) -> Iterator[None]:
    """Turn ENOSPC / EDQUOT raised inside into ``StorageFullError`` (chained)."""
    try:
        yield
    except StorageFullError:
        raise
    except OSError as err:
        if is_no_space(err):
            raise storage_full_error(path, needed) from err
        raise


def write_atomic(path: _store.AnyPath, data: str | bytes) -> None:
    """Replace ``path`` (a local path or an object-store location) by ``data`` all at once
    (a temporary file of this write's own, fsync, rename): a reader sees the old content or
    the new, and writers at the same time, threads or processes, each leave a whole file."""
    target = _store.location(path)
    payload = data.encode() if isinstance(data, str) else data
    if isinstance(target, _store.UriPath):
        _upload_atomic(target, payload)
        return
    with no_space_as_error(target, len(payload)):
        replace_file(target, payload)


def _upload_atomic(target: _store.UriPath, payload: bytes) -> None:
    temporary = temporary_sibling(target)
    try:
        temporary.write_bytes(payload)
        temporary.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
