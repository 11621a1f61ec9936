"""Fix 8: a lost trial runs again in the same fit; the trainable's own exits read right.

Ray: ``ray/tune/experiment/trial.py``, ``Trial.should_recover`` (asked by
``TuneController._process_trial_failure`` right after ``Trial.handle_error``) counts every
error alike against ``FailureConfig(max_failures=)``. Ours also says yes when the sweep's
policy does (``trials_recovered_by``: a lost trial with retries left). A trainable's
``os._exit`` is noted in the cluster's memory (``record_own_exit``), as Ray reports it exactly
as a crashed worker. ``docs/architecture.md``, "The Ray boundary".
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from ray.exceptions import RayActorError

from radas.ray_compat import sweeps
from radas.ray_compat.private import pop_from_cluster_memory

# The exception of each trial's last failure, from handle_error to should_recover.
_trial_failures: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
# The policy that decides, per thread running radas's fits (Tune's controller runs in the
# thread that called fit()): (trial, exception) -> whether the trial runs again in this fit.
_thread_recoveries: dict[int, Callable[[Any, Any], bool]] = {}


@contextlib.contextmanager
def trials_recovered_by(decide: Callable[[Any, Any], bool]) -> Iterator[None]:
    """In this thread, for the block: a failed trial of radas's fits runs again in the same
    fit when ``decide(trial, exception)`` says so (fix 8), besides what the user's
    ``FailureConfig(max_failures=)`` allows. Without the fixes, nothing changes."""
    thread = threading.get_ident()
    _thread_recoveries[thread] = decide
    try:
        yield
    finally:
        del _thread_recoveries[thread]


def note_failure(trial: Any, exception: Any) -> None:
    """Keep ``exception`` as ``trial``'s last failure, for ``should_recover``, which Tune asks
    next (called by fix 4's ``handle_error``)."""
    _trial_failures[trial] = exception


def recovering_in_fit() -> bool:
    """Whether radas decides in-fit recoveries in this thread now (fix 8 installed, a policy
    given): a lost trial Tune still reports as errored had no retry left."""
    return bool(sweeps.running) and threading.get_ident() in _thread_recoveries


def _wrap_should_recover(original: Callable[..., Any]) -> Callable[..., Any]:
    def should_recover(self: Any) -> bool:
        if original(self):  # the user's FailureConfig(max_failures=...)
            return True
        decide = _thread_recoveries.get(threading.get_ident())
        return decide is not None and bool(decide(self, _trial_failures.get(self)))

    return should_recover


_OWN_EXIT_KEY = "radas-own-exit:{actor_id}"


def record_own_exit(code: int) -> None:
    """In a trial's worker, before ``os._exit(code)`` of the trainable: note the code in the
    cluster's memory under the worker's actor, where ``own_exit_code`` finds it (Ray reports
    the exit as a crashed worker's)."""
    import ray
    from ray.experimental import internal_kv

    actor_id = ray.get_runtime_context().get_actor_id()
    if actor_id:
        internal_kv._internal_kv_put(
            _OWN_EXIT_KEY.format(actor_id=actor_id), str(int(code)).encode(), overwrite=True
        )


def own_exit_code(error: Any) -> int | None:
    """The ``os._exit`` code the trainable of the dead actor of ``error`` recorded (taken from
    the cluster's memory), or None."""
    actor_id = getattr(error, "actor_id", None)
    if not isinstance(error, RayActorError) or not actor_id:
        return None
    try:
        value = pop_from_cluster_memory(_OWN_EXIT_KEY.format(actor_id=actor_id))
        return int(value) if value else None
    except Exception:  # the note is a courtesy: without it the exit reads as a lost worker
        return None


def install(replace: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
    from ray.tune.experiment import Trial

    replace(Trial, "should_recover", _wrap_should_recover)
