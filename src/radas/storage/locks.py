"""One run at a time per experiment: an OS file lock held while a run or restore executes.

The lock file lives outside the experiment's folder (which a ``run`` moves to ``.archive/``),
at ``<user's results root>/.locks/<full name>.lock``; it holds who took it (pid, host, start
time, the cluster job) so the refusal can say who runs the experiment. ``flock`` locks belong
to the open file: the kernel drops them when the holder exits, however it dies, so a killed
run never leaves a stale lock. Lock files are never deleted (deleting one while another
process opens it would let two holders lock two different files).

An object store cannot lock: for a results root that is a URI the lock is taken on the local
disk of the host that runs the sweep (``$RADAS_HOME/locks/<hash of the root>/``), which keeps
two runs of one experiment on that host apart; across clients, a cluster's deterministic job
submission id (``backends.ray_jobs``) lets exactly one start it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from radas.core.console import warn
from radas.core.poll import wait_until
from radas.errors import ExperimentRunningError, StorageError
from radas.storage import store as _store

LOCKS_DIR = ".locks"
PROBE_WAIT_S = 0.5


def lock_path(storage_root: str | Path, full_name: str) -> Path:
    if _store.is_uri(storage_root):
        from radas.storage.dirs import radas_home

        digest = hashlib.sha256(str(storage_root).rstrip("/").encode()).hexdigest()[:16]
        return radas_home() / "locks" / digest / f"{full_name}.lock"
    return Path(storage_root) / LOCKS_DIR / f"{full_name}.lock"


@contextlib.contextmanager
def experiment_lock(
    storage_root: str | Path, full_name: str, experiment_name: str
) -> Iterator[None]:
    """Hold the experiment's lock for the ``with`` block; ExperimentRunningError when another
    process (on any machine sharing the results root) holds it."""
    path = lock_path(storage_root, full_name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise StorageError(
            f"{experiment_name}: cannot run or restore it, the results root {storage_root} "
            f"is not writable here ({err.strerror}: {path}, the experiment's lock, is the "
            "first file a run writes). Its stored results can still be read: dos=['analyze'] "
            "or radas.Tuner(path).get_dataframe(). To run, make the folder writable, or use "
            "a writable results root (RADAS_HOME, or the cluster's results_root)."
        ) from err
    try:
        try:
            _lock_exclusively(descriptor)
        except BlockingIOError as err:
            raise ExperimentRunningError(_running_message(experiment_name, path)) from err
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            _warn_unlocked(experiment_name, path, err)
        else:
            _record_holder(descriptor, experiment_name)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _lock_exclusively(descriptor: int) -> None:
    """``flock`` LOCK_EX without waiting for a run, tried for ``PROBE_WAIT_S``: a reader's
    probe (``is_held``) holds a shared lock for an instant, which is no run. BlockingIOError
    when it stays held."""

    def locked() -> bool:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        wait_until(locked, PROBE_WAIT_S, what="the experiment's lock", max_delay_s=0.1)
    except TimeoutError as err:
        raise BlockingIOError(str(err)) from err


def refuse_if_held(experiment_path: _store.AnyPath, experiment_name: str) -> None:
    """ExperimentRunningError (as ``experiment_lock`` raises it) when a run of the experiment
    holds its lock now: for a caller that would otherwise wait for its turn and then run the
    experiment again (``backends.local``)."""
    if is_held(experiment_path):
        location = _store.location(experiment_path)
        path = lock_path(str(location.parent), location.name)
        raise ExperimentRunningError(_running_message(experiment_name, path))


def is_held(experiment_path: _store.AnyPath) -> bool:
    """Whether a run or restore of the experiment at ``experiment_path`` holds its lock now
    (on this host, or on any host sharing a results root that can lock).

    A probe: a shared lock taken and dropped at once (a run starting in that instant tries
    again: ``_lock_exclusively``). The lock file is opened read-only and never created, so
    readers leave nothing behind.
    """
    location = _store.location(experiment_path)
    path = lock_path(str(location.parent), location.name)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # never locked here
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # a file system that cannot lock: the runs themselves run unlocked
    finally:
        os.close(descriptor)  # releases the probe's lock
    return False


def _record_holder(descriptor: int, experiment_name: str) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "experiment_name": experiment_name,
        "job_id": os.environ.get("RADAS_JOB_ID"),
        "cluster": os.environ.get("RADAS_CLUSTER"),
    }
    with contextlib.suppress(OSError):  # who holds it is a courtesy; the lock is what counts
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)


def _running_message(experiment_name: str, path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict):
        holder = {}
    since = f" since {holder['started']}" if holder.get("started") else ""
    if holder.get("job_id"):
        return (
            f"Experiment {experiment_name!r} is running already as job {holder['job_id']} on "
            f"cluster:{holder.get('cluster')}{since}. Use run_choice='attach' to follow it, or "
            "run_choice='stop_attach' to stop it (its state is saved; run_choice='restore' "
            "continues it later)."
        )
    who = (
        f"process {holder['pid']} on host {holder.get('host')!r}{since}"
        if holder.get("pid")
        else "another process (it is just starting)"
    )
    return (
        f"Experiment {experiment_name!r} is running already: {who} holds its lock {path}. "
        "Starting it again now would mix two runs in one folder. Wait for that run to end or "
        "stop it (Ctrl-C there saves its state); then run_choice='restore' continues it and "
        "run_choice='run' starts it afresh. dos=['analyze'] reads what is stored so far "
        "without waiting."
    )


def _warn_unlocked(experiment_name: str, path: Path, err: OSError) -> None:
    message = (
        f"{experiment_name}: the file system of {path.parent} cannot lock files ({err}); "
        "radas cannot tell whether this experiment is started twice at the same time. Start "
        "each experiment from one place only, or use a results root on a local disk or NFS."
    )
    warn(message, stacklevel=4)
