"""radas's one boundary with Ray's internals: every name radas uses that Ray does not publish.

Elsewhere radas uses Ray's public and developer APIs (``tune.Tuner``, ``tune.Callback``,
``TrialScheduler``, ``Trial.storage``, ``get_context().get_storage()``) and reads Tune's files
through ``radas.results.tune_state``, whose readers take a file they cannot read as damaged (a
``RadasWarning``), never as a crash. Here are the rest: fixes to Tune's code, radas's subclass
of Ray's job client (``job_client``: timeouts on every request; a Ray whose client differs is
refused with a ``ClusterError`` before anything is sent), and private names radas reads or sets
(``ray._private``, underscored attributes).

Ray changes its internals between releases, and radas runs on whatever Ray a cluster has. So
radas checks every target of its fixes before it changes anything (``TARGETS``: the attribute
exists and has the signature the fix was written for, in the Ray minors of
``radas.ray_compat.versions``: verified on 2.55 and 2.60), and installs all the fixes or none. When
one does not match, radas warns once (a ``RadasWarning`` naming what differs) and runs on Ray's
own behaviour: the same results, with what each fix below removes.

The fixes run only for radas's sweeps, and a ``tune.Tuner`` of the user's own in the same
process runs on Ray's code: fixes 1, 2, 4 and 6 to 10 are installed when a radas sweep starts
and removed when it ends (``fixes_installed``); fix 3 is a scheduler radas hands to its own Tuners
(``default_scheduler``); fix 5 stays once installed (a worker's lines reach the driver seconds
after they were written, after the sweep too: Ray's deduplicator holds repeated lines back, a
busy machine delays them) but outside a sweep it touches only the lines of radas's trials
(their workers' ``pid``, from the trials' results, or their trainable's name: a trial run
again that only prints sends no result from its new worker), and hands every other line to
Ray's as it is.

1. A trial's worker killed by Ray's memory monitor fails its pending actor task with
   ``ray.exceptions.OutOfMemoryError``; Tune's actor manager expects only ``RayActorError`` /
   ``RayTaskError`` and raises ``RuntimeError("Caught unexpected exception")`` for anything
   else, which ends the whole experiment (``ray/air/execution/_internal/actor_manager.py``,
   ``RayActorManager._actor_task_failed``, line 291 in Ray 2.60). The worker is dead, exactly
   as for a ``RayActorError``: radas hands Tune the error as an ``ActorOutOfMemoryError``
   (both), so only that trial fails, and radas retries it with more resources.
2. Result buffering (``TUNE_RESULT_BUFFER_LENGTH`` > 1) never buffers: the controller calls
   ``Trainable.train_buffered(buffer_time_s, max_buffer_length)`` with its arguments swapped,
   ``(buffer_length, buffer_time_s)`` (``ray/tune/execution/tune_controller.py``,
   ``TuneController._schedule_trial_train``, line 1483 in Ray 2.60), so the buffer is "full"
   after one result and every report costs the driver one actor call. radas schedules its own
   ``train_buffered`` (run on the trial's actor through ``__ray_call__``, a developer API) with
   the arguments in their places, so a trial's fast reports reach the driver in batches; every
   result is still processed, in order, by schedulers, searchers and callbacks. Ray's version
   also drops what it buffered when the trainable then raises (radas's returns it and raises
   the error on the next call), and holds a report back for as long as the next one takes (a
   quick report, then a long epoch; radas's waits only while the recent reports came fast).
3. Tune's FIFO scheduler picks the next trial by scanning every trial, finished ones included,
   at every step of the controller (``ray/tune/schedulers/trial_scheduler.py``,
   ``FIFOScheduler.choose_trial_to_run``, line 163 in Ray 2.60): O(trials^2) for a sweep, 39%
   of the driver's time late in a 10,000-trial grid. ``RadasFIFOScheduler`` looks only at the
   live trials and picks the same trial (the first pending one in the order the trials were
   added, else the first paused one). radas passes it as ``TuneConfig(scheduler=...)`` only
   when the user gave no scheduler; the user's own (ASHA, PBT, ...) is used as given.
4. A trial's ``error.txt`` holds ``str(RayTaskError)``, which Ray colours with raw ANSI codes
   whatever it is written to (``ray/tune/experiment/trial.py``, ``Trial.handle_error``, line
   842 in Ray 2.60): radas rewrites the file without them as soon as Tune wrote it.
5. The driver prints its workers' output with ANSI colour codes even into pipes and files (a
   job's log; ``ray/_private/worker.py``, ``print_worker_logs``, line 2314 in Ray 2.60):
   radas's version strips them unless the stream is a terminal, ends radas's live progress
   line first, and while radas keeps Ray quiet (``quiet_ray_logs``) drops the raylet's and
   autoscaler's lines and the trial worker's "Restored on <ip> from checkpoint: ..." (Tune's
   trainable logs it in the worker, out of reach of the driver's logging filters, each time a
   trial continues from its saved state: radas's own lines say which trials run again), and a
   worker's report of the SIGTERM that stopped it while it started ("*** SIGTERM received
   ...", its C++ stack: Tune stopping an actor it no longer needs, common under load).
6. ``tune.run`` gets the event that stops it (as Ctrl-C does: the experiment's state saved)
   from ``_setup_signal_catching``, which sets it on SIGINT only in the main thread
   (``ray/tune/tune.py``, line 233 in Ray 2.60). A local radas sweep runs in a thread of its
   own (``radas.backends.local``): in such a thread (``tune_interrupted_by``) Tune gets radas's
   event instead, which radas sets on Ctrl-C or when the awaiting task is cancelled.

7. Ray's driver folds lines that repeat across workers (``RAY_DEDUP_LOGS``, read once at
   import: ``ray/_private/ray_logging/__init__.py``, ``LogDeduplicator.deduplicate``) and
   treats lines differing only in numbers as repeats: "starting at epoch 3" of one trial and
   "starting at epoch 5" of two others printed as one line "[repeated 3x]", the others' numbers
   lost for good (a job's log is the driver's output). During a sweep every line is printed.
8. Tune runs a failed trial again in the same fit only within ``FailureConfig(max_failures=)``,
   which counts every error alike (``Trial.should_recover``, asked by
   ``TuneController._process_trial_failure`` right after ``Trial.handle_error``): a trial
   whose node or worker was lost waited for radas's next fit. radas's ``should_recover`` also
   says yes when the sweep's policy does (``trials_recovered_by``: a lost trial, while it has
   retries left), so Tune requeues it at once, from its latest saved state, and runs it as
   soon as a node has room; the trainable's own errors still end the trial. The same
   ``handle_error`` (fix 4) writes the trainable's own error under Ray's where Ray's misreads
   it (``resources.own_error_line``: ``sys.exit``, ``os._exit``, ``KeyboardInterrupt``, an
   exception Tune cannot copy); ``os._exit`` is recorded by radas's worker hook
   (``record_own_exit``), as Ray reports it exactly as a crashed worker.
9. ``tune.run`` records which callbacks the user passed for Ray's usage statistics
   (``ray/air/_internal/usage.py``, ``tag_callbacks``), and to tell Ray's own from others it
   imports every logger integration of Ray's, ``wandb`` included: 0.4 s of the driver's time
   in each sweep where wandb is installed, which a script that passes no callbacks never
   pays. radas's own callbacks (progress line, history, trial records) are not the user's:
   they are left out of what is counted, so a sweep without callbacks of the user's counts
   none, as Tune's own does, and imports nothing.
10. Tune gives its trial actors a runtime_env of their own, the environment variables it
   passes on (``ray/tune/execution/class_cache.py``, ``_ActorClassCache.get``:
   ``PL_DISABLE_FORK=1``, and AWS credentials and Train's variables when set). Ray starts a
   worker process for each distinct runtime_env, so no trial ever runs in the workers Ray
   starts with the session (one per CPU, ``prestart_worker_first_driver``, while radas and
   Tune prepare): every trial actor waits for a new Python process to start and import Ray
   and Tune (about 1 s here). In the local Ray radas starts, its processes already hold those
   variables (``inherited_by_workers``, set when it started); while each one Tune would pass
   has that value there, radas's ``get`` makes the actor class without the runtime_env, so
   trials take the waiting workers. A value that differs (a variable set after Ray started),
   a Ray radas did not start and clusters keep Tune's way.

``quiet_ray_logs`` also keeps Tune's messages that contradict radas off the console: "Stop
signal received ... Press CTRL+C" and "Resume experiment with: Tuner.restore(...)" (radas stops
and restores experiments itself) and restore's "Failed to fetch metrics ... result.json and
progress.csv were not found" (radas writes those files from its history when asked for).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import inspect
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import cloudpickle
from ray.exceptions import OutOfMemoryError, RayActorError, RayTaskError
from ray.tune.schedulers import FIFOScheduler

from radas.core.console import end_live_line, is_terminal, strip_ansi, warn
from radas.resources import FAILURE_HEADER, own_error_block, own_error_line

# --- what radas relies on, checked before any fix is installed -------------------------------

_CONTROLLER = "ray.tune.execution.tune_controller"


@dataclass(frozen=True)
class Target:
    """A private name a fix relies on: ``path`` in ``module``, and its parameters (None: it
    only has to exist, as a property or a logger does).

    A function radas replaces must take exactly these parameters (Tune calls radas's version
    as it calls its own); one radas only calls may take more after them, with defaults (Ray
    adds ``_ray_trace_ctx=None`` to the methods of a class it made an actor of).
    """

    module: str
    path: str
    parameters: tuple[str, ...] | None
    replaced: bool = False

    def problem(self) -> str | None:
        """What differs from what the fix was written for; None when nothing does."""
        try:
            owner: Any = importlib.import_module(self.module)
            *classes, name = self.path.split(".")
            for class_name in classes:
                owner = getattr(owner, class_name)
            value = inspect.getattr_static(owner, name)
        except (ImportError, AttributeError):
            return f"{self} is missing"
        if self.parameters is None:
            return None
        try:
            parameters = inspect.signature(value).parameters
        except (TypeError, ValueError):
            return f"{self} is no longer a function"
        found = tuple(parameters)
        expected = len(self.parameters)
        extra = [parameters[name] for name in found[expected:]]
        if found[:expected] != self.parameters or (
            extra and (self.replaced or any(p.default is p.empty for p in extra))
        ):
            return f"{self} takes ({', '.join(found)}), not ({', '.join(self.parameters)})"
        return None

    def __str__(self) -> str:
        return f"{self.module}.{self.path}"


TARGETS = (
    # fix 1
    Target(
        "ray.air.execution._internal.actor_manager",
        "RayActorManager._actor_task_failed",
        ("self", "tracked_actor_task", "exception"),
        replaced=True,
    ),
    # fix 2: radas's _schedule_trial_train calls the controller's methods as Ray's does
    Target(_CONTROLLER, "TuneController._schedule_trial_train", ("self", "trial"), replaced=True),
    Target(_CONTROLLER, "TuneController._maybe_buffer_training", ("self", "trial")),
    Target(
        _CONTROLLER,
        "TuneController._schedule_trial_task",
        (
            "self",
            "trial",
            "method_name",
            "args",
            "kwargs",
            "on_result",
            "on_error",
            "_return_future",
        ),
    ),
    Target(_CONTROLLER, "TuneController._on_training_result", ("self", "trial", "result")),
    Target(_CONTROLLER, "TuneController._trial_task_failure", ("self", "trial", "exception")),
    Target("ray.tune.trainable.trainable", "Trainable.train", ("self",)),
    Target("ray.tune.trainable.trainable", "Trainable.trial_id", None),
    # fix 3
    Target(
        "ray.tune.schedulers.trial_scheduler",
        "FIFOScheduler.choose_trial_to_run",
        ("self", "tune_controller"),
        replaced=True,
    ),
    Target(_CONTROLLER, "TuneController.get_trials", ("self",)),
    Target(_CONTROLLER, "TuneController.get_live_trials", ("self",)),
    # fix 4
    Target("ray.tune.experiment.trial", "Trial.handle_error", ("self", "exc"), replaced=True),
    Target("ray.tune.experiment.trial", "Trial.error_file", None),
    # fix 5
    Target(
        "ray._private.worker",
        "print_worker_logs",
        ("data", "print_file", "ignore_prefix"),
        replaced=True,
    ),
    # fix 6
    Target("ray.tune.tune", "_setup_signal_catching", (), replaced=True),
    # fix 7
    Target("ray._private.ray_logging", "RAY_DEDUP_LOGS", None),
    # fix 8 (with fix 4's Trial.handle_error)
    Target("ray.tune.experiment.trial", "Trial.should_recover", ("self",), replaced=True),
    Target(_CONTROLLER, "TuneController._process_trial_failure", ("self", "trial", "exception")),
    Target("ray.experimental.internal_kv", "_internal_kv_put", ("key", "value", "overwrite")),
    # fix 9
    Target("ray.air._internal.usage", "tag_callbacks", ("callbacks",), replaced=True),
    # fix 10
    Target(
        "ray.tune.execution.class_cache",
        "_ActorClassCache.get",
        ("self", "trainable_cls"),
        replaced=True,
    ),
    Target("ray.tune.execution.class_cache", "DEFAULT_ENV_VARS", None),
    Target("ray.tune.execution.class_cache", "ENV_VARS_TO_PROPAGATE", None),
    # quiet_ray_logs: the loggers of the modules that log Tune's contradicting messages
    Target("ray.tune.tune", "logger", None),
    Target("ray.tune.analysis.experiment_analysis", "logger", None),
)

# What differs from TARGETS in this process's Ray (empty: nothing); None until checked.
_mismatches: tuple[str, ...] | None = None


def fixes_apply() -> bool:
    """Whether this Ray matches every target (checked once per process); the first time one
    does not, a ``RadasWarning`` (``console.warn``) says which and what radas runs without."""
    global _mismatches
    if _mismatches is None:
        _mismatches = tuple(problem for target in TARGETS if (problem := target.problem()))
        if _mismatches:
            import ray

            from radas.ray_compat.versions import supported_range

            warn(
                f"radas's fixes to Ray's internals are off: this Ray ({ray.__version__}) "
                f"differs from the Ray radas was verified against ({supported_range()}): "
                f"{'; '.join(_mismatches)}. Sweeps run on Ray's own code, with the same "
                "results, but a trial killed for memory ends the experiment (radas cannot "
                "retry it), a trial that lost its node or worker runs again only after "
                "the fit, a trainable's os._exit reads as a lost worker, reports "
                "reach the driver one at a time, Tune's FIFO choice "
                "scans every trial, Ray's colour codes and log lines show in error.txt "
                "files and logs, and Ctrl-C does not stop a local sweep running in a "
                "thread. Install a Ray in that range to have them.",
                stacklevel=2,
            )
    return not _mismatches


# --- installing fixes 1, 2, 4 and 6 to 10 (for a sweep) and 5 (once) -----------------------

_install_lock = threading.Lock()
_sweeps_running = 0  # radas sweeps under fixes_installed in this process
_replaced: list[tuple[Any, str, Any]] = []  # (owner, name, what was there) while installed
_ABSENT = object()  # the owner inherited the name: removing ours is putting it back
_printer_installed = False
# The worker processes (pids) and trainable names of the trials of radas's sweeps in this
# process (see the docstring, fix 5): kept after a sweep, as a worker's lines may reach the
# driver long after it (seen under load: a trial's print of the first of two sweeps arrived
# after the second had ended). Names too: a trial run again that only prints (it continues
# from its state and reports nothing new) sends no result with its new worker's pid.
_sweep_worker_pids: set[int] = set()
_sweep_trainables: set[str] = set()


@contextlib.contextmanager
def fixes_installed() -> Iterator[None]:
    """radas's fixes for the duration of a sweep (nested and concurrent sweeps share them);
    nothing when this Ray does not match ``TARGETS`` (see ``fixes_apply``)."""
    global _sweeps_running
    if not fixes_apply():
        yield
        return
    with _install_lock:
        if _sweeps_running == 0:
            _install()
        _sweeps_running += 1
    try:
        yield
    finally:
        with _install_lock:
            _sweeps_running -= 1
            if _sweeps_running == 0:
                _uninstall()


def _install() -> None:
    global _printer_installed
    import ray.tune.tune as tune_module
    from ray._private import ray_logging
    from ray.air._internal import usage as air_usage
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.tune.execution.class_cache import _ActorClassCache
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    _replace(RayActorManager, "_actor_task_failed", _wrap_actor_task_failed)
    _replace(TuneController, "_schedule_trial_train", lambda _: _schedule_trial_train)
    _replace(Trial, "handle_error", _wrap_handle_error)
    _replace(Trial, "should_recover", _wrap_should_recover)  # fix 8
    _replace(tune_module, "_setup_signal_catching", _wrap_setup_signal_catching)
    _replace(ray_logging, "RAY_DEDUP_LOGS", lambda _: False)  # fix 7
    _replace(air_usage, "tag_callbacks", _wrap_tag_callbacks)  # fix 9
    _replace(_ActorClassCache, "get", _wrap_actor_class_get)  # fix 10
    if not _printer_installed:
        from ray._private import worker

        worker.print_worker_logs = _printing_worker_logs(worker.print_worker_logs)
        _printer_installed = True


def _replace(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Set ``owner.name`` to ``make(Ray's version)``, remembering what to put back."""
    _replaced.append((owner, name, owner.__dict__.get(name, _ABSENT)))
    setattr(owner, name, make(getattr(owner, name)))


def _uninstall() -> None:
    while _replaced:
        owner, name, original = _replaced.pop()
        if original is _ABSENT:
            delattr(owner, name)
        else:
            setattr(owner, name, original)


# --- fix 9: radas's callbacks are not counted as the user's -----------------------------------


def _wrap_tag_callbacks(original: Callable[..., bool]) -> Callable[..., bool]:
    def tag_callbacks(callbacks):
        theirs = [
            callback
            for callback in callbacks or []
            if not type(callback).__module__.startswith("radas.")
        ]
        return original(theirs)

    return tag_callbacks


# --- fix 10: trials take the workers Ray started with the session ---------------------------

# The environment the processes of the local Ray radas started inherited, and that Ray's GCS
# address (None: another Ray).
_workers_environment: tuple[str, dict[str, str]] | None = None


def tune_trial_environment() -> dict[str, str]:
    """The variables Tune passes to its trial actors and the values it would pass now."""
    import os

    from ray.tune.execution import class_cache

    passed = dict(class_cache.DEFAULT_ENV_VARS)
    passed.update(
        {name: os.environ[name] for name in class_cache.ENV_VARS_TO_PROPAGATE if name in os.environ}
    )
    return passed


def inherited_by_workers(environment: dict[str, str] | None) -> None:
    """Say which environment the processes of radas's own local Ray hold (None: the Ray
    running now is not one radas started, or it stopped)."""
    global _workers_environment
    if environment is None:
        _workers_environment = None
        return
    import ray

    _workers_environment = (ray.get_runtime_context().gcs_address, dict(environment))


def _wrap_actor_class_get(original: Callable[..., Any]) -> Callable[..., Any]:
    def get(self, trainable_cls):
        import ray

        started = _workers_environment
        if (
            started is None
            or started[0] != ray.get_runtime_context().gcs_address  # another Ray now
            or any(started[1].get(k) != v for k, v in tune_trial_environment().items())
        ):
            return original(self, trainable_cls)
        plain = self.__dict__.setdefault("_radas_without_runtime_env", {})
        if trainable_cls not in plain:
            plain[trainable_cls] = ray.remote(trainable_cls)
        return plain[trainable_cls]

    return get


# --- fix 1: an actor killed for memory fails its trial, not the experiment --------------------


class ActorOutOfMemoryError(RayActorError, OutOfMemoryError):
    """A trial's actor was killed by Ray's memory monitor (see the module docstring, fix 1)."""

    def __init__(self, message: str = "") -> None:
        RayActorError.__init__(self, error_msg=message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (ActorOutOfMemoryError, (self.message,))


def _wrap_actor_task_failed(original: Callable[..., Any]) -> Callable[..., Any]:
    def _actor_task_failed(self, tracked_actor_task, exception):
        if isinstance(exception, OutOfMemoryError) and not isinstance(
            exception, (RayActorError, RayTaskError)
        ):
            exception = ActorOutOfMemoryError(str(exception))
        return original(self, tracked_actor_task, exception)

    return _actor_task_failed


# --- fix 2: result buffering that buffers ---------------------------------------------------


def _schedule_trial_train(self, trial):
    """``TuneController._schedule_trial_train`` with radas's ``train_buffered`` (fix 2); also
    notes which worker process runs the trial (fix 5)."""
    buffer_length, buffer_time_s = self._maybe_buffer_training(trial)
    _sweep_trainables.add(trial.trainable_name)
    method_name, args = "train", ()
    if buffer_length > 1:
        method_name, args = "__ray_call__", (train_buffered, buffer_time_s, buffer_length)

    def on_result(trial, result):
        first = result[0] if isinstance(result, list) and result else result
        if isinstance(first, dict) and isinstance(first.get("pid"), int):
            _sweep_worker_pids.add(first["pid"])
        self._on_training_result(trial, result)

    self._schedule_trial_task(
        trial=trial,
        method_name=method_name,
        args=args,
        on_result=on_result,
        on_error=self._trial_task_failure,
    )


def train_buffered(trainable: Any, buffer_time_s: float, max_buffer_length: int) -> list[dict]:
    """``Trainable.train_buffered`` that keeps what it buffered when the trainable raises, and
    does not hold a report back for a slow one.

    Runs on the trial's actor. Collects results until ``buffer_time_s`` has passed (at least
    one), ``max_buffer_length`` are collected, or a result ends the trial or asks for a
    checkpoint. Each ``train()`` blocks until the trainable's next report, so Ray's version
    holds a report for as long as the next one takes (a quick first report, then an hour-long
    epoch: an hour): radas waits for another report only while the trial's recent reports
    (``_GAPS_REMEMBERED``, at least two) each came within the time left. An error after some
    results returns those results and is raised by the next call, so the driver processes
    every report before it sees the error.
    """
    from ray.tune.result import DONE, RESULT_DUPLICATE, SHOULD_CHECKPOINT

    trial_id, pending = trainable.__dict__.pop("_radas_pending_error", (None, None))
    if pending is not None and trial_id == trainable.trial_id:  # not a reused actor's old error
        raise pending
    gaps = _report_gaps(trainable)
    results: list[dict] = []
    send_at = time.time() + buffer_time_s
    while True:
        asked = time.time()
        try:
            result = trainable.train()
        except Exception as error:
            if not results:
                raise
            trainable._radas_pending_error = (trainable.trial_id, error)
            break
        now = time.time()
        gaps.append(now - asked)
        results.append(result)
        if (
            result.get(DONE, False)
            or result.get(SHOULD_CHECKPOINT, False)
            or result.get(RESULT_DUPLICATE)
            or len(results) >= max_buffer_length
            or len(gaps) < 2
            or now + max(gaps) >= send_at
        ):
            break
    return results


# How many of a trial's last gaps between reports predict whether the next one comes soon.
_GAPS_REMEMBERED = 8


def _report_gaps(trainable: Any) -> collections.deque[float]:
    """The trial's recent gaps between reports (kept on its actor, per trial: actors are
    reused)."""
    trial_id, gaps = trainable.__dict__.get("_radas_report_gaps", (None, None))
    if gaps is None or trial_id != trainable.trial_id:
        gaps = collections.deque(maxlen=_GAPS_REMEMBERED)
        trainable._radas_report_gaps = (trainable.trial_id, gaps)
    return gaps


# --- fix 3: FIFO among the live trials --------------------------------------------------------


class RadasFIFOScheduler(FIFOScheduler):
    """Tune's FIFO scheduler, choosing among the live trials only (module docstring, fix 3).

    Stored in the experiment's ``tuner.pkl`` under this name, so a restore uses it again.
    """

    def __init__(self) -> None:
        super().__init__()
        # Per controller: the position of each trial in its trial list (the list only grows).
        self._positions: weakref.WeakKeyDictionary[Any, dict[Any, int]] = (
            weakref.WeakKeyDictionary()
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_positions"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._positions = weakref.WeakKeyDictionary()

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        from ray.tune.experiment import Trial

        controller = getattr(tune_controller, "_tune_controller", None)
        if controller is None or not hasattr(tune_controller, "get_live_trials"):
            return super().choose_trial_to_run(tune_controller)  # not what Tune 2.55-2.60 pass
        trials = tune_controller.get_trials()
        positions = self._positions.setdefault(controller, {})
        for position in range(len(positions), len(trials)):
            positions[trials[position]] = position
        live = tune_controller.get_live_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [trial for trial in live if trial.status == status]
            if waiting and all(trial in positions for trial in waiting):
                return min(waiting, key=positions.__getitem__)
            if waiting:  # a trial list Tune replaced: Ray's own scan
                return super().choose_trial_to_run(tune_controller)
        return None


def default_scheduler() -> RadasFIFOScheduler | None:
    """The scheduler for a radas sweep whose user gave none: radas's FIFO, or None (Tune's
    own) when this Ray does not match ``TARGETS``."""
    return RadasFIFOScheduler() if fixes_apply() else None


# --- fix 4: error.txt without colour codes ----------------------------------------------------


def _wrap_handle_error(original: Callable[..., Any]) -> Callable[..., Any]:
    def handle_error(self, exc=None):
        original(self, exc)
        _trial_failures[self] = exc  # for should_recover, which Tune asks next (fix 8)
        os_exit_code = own_exit_code(exc)
        path = self.error_file
        if path:
            with contextlib.suppress(OSError):
                with open(path, encoding="utf-8", errors="replace") as stream:
                    text = stream.read()
                plain = strip_ansi(text)
                last_failure = plain.rpartition(FAILURE_HEADER)[2]
                own = own_error_line(exc, last_failure, os_exit_code)
                if own is not None:
                    plain = plain.rstrip("\n") + "\n" + own_error_block(own)
                if plain != text:
                    with open(path, "w", encoding="utf-8") as stream:
                        stream.write(plain)

    return handle_error


# --- fix 8: a lost trial runs again in the same fit; the trainable's own exits read right ------

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


def recovering_in_fit() -> bool:
    """Whether radas decides in-fit recoveries in this thread now (fix 8 installed, a policy
    given): a lost trial Tune still reports as errored had no retry left."""
    return bool(_sweeps_running) and threading.get_ident() in _thread_recoveries


def _wrap_should_recover(original: Callable[..., Any]) -> Callable[..., Any]:
    def should_recover(self):
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


# --- fix 5: the workers' output, plain into pipes and quiet while radas keeps Ray quiet -------


class _PlainText:
    """A stream that writes what it is given without ANSI escape sequences."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(strip_ansi(text))

    def flush(self) -> None:
        self.stream.flush()


# The "pid" Ray gives the raylet's and the autoscaler's lines, and whether they are shown (not
# while quiet_ray_logs is on).
_SYSTEM_PIDS = ("raylet", "autoscaler", "gcs_server")
_system_lines_shown = True
# The worker's line of ray/tune/trainable/trainable.py (Trainable.restore), and whether it is
# shown: as the last quiet_ray_logs decided, also after it ended, as a worker's lines reach
# the driver a moment later (a trial restored near the end of a sweep: after the sweep).
_RESTORED_LINE = re.compile(r"Restored on \S+ from checkpoint: ")
_restored_lines_shown = True
# A worker the raylet stops with SIGTERM before its Python has set Ray's handler (Tune stopping
# an actor it no longer needs while the actor still starts: seconds on a busy machine) prints
# the report of Ray's C++ signal handler: "*** SIGTERM received at time=... on cpu N ***", the
# program counter and "(unknown)" frames, each also through Ray's logging.cc. Nothing failed:
# dropped with the "Restored" lines (the kill comes late, from any worker of the sweep's job).
_SIGTERM_HEADER = re.compile(r"\*\*\* SIGTERM received at time=\d+ on cpu \d+ \*\*\*")
_SIGTERM_REPORT = re.compile(
    r"\*\*\* SIGTERM received at time=|(^|logging\.cc:\d+: )\s*(PC: )?@ +0x[0-9a-f]+ "
)


def _printing_worker_logs(original: Callable[..., None]) -> Callable[..., None]:
    def print_worker_logs(data: dict, print_file: Any, ignore_prefix: bool = False) -> None:
        if not _restored_lines_shown and data.get("pid") not in _SYSTEM_PIDS:
            data = _without_sigterm_reports(data)
            if not data.get("lines"):
                return None
        if not _sweeps_running and not _from_a_sweep(data):
            return original(data, print_file, ignore_prefix)  # not radas's: Ray's as it is
        if data.get("pid") in _SYSTEM_PIDS:
            if not _system_lines_shown:
                return None
        elif not _restored_lines_shown:
            lines = [line for line in data.get("lines", []) if not _RESTORED_LINE.search(line)]
            if not lines:
                return None
            data = {**data, "lines": lines}
        end_live_line()
        if not is_terminal(print_file):
            print_file = _PlainText(print_file)
        return original(data, print_file, ignore_prefix)

    print_worker_logs.ray_version = original  # type: ignore[attr-defined]  # for the tests
    return print_worker_logs


def _without_sigterm_reports(data: dict) -> dict:
    """``data`` without the report of a SIGTERM (see ``_SIGTERM_REPORT``); other signals'
    reports (a crash) and every other line stay."""
    lines = data.get("lines", [])
    plain = [strip_ansi(line) for line in lines]
    if not any(_SIGTERM_HEADER.search(text) for text in plain):
        return data
    kept = [
        line for line, text in zip(lines, plain, strict=True) if not _SIGTERM_REPORT.search(text)
    ]
    return {**data, "lines": kept}


def _from_a_sweep(data: dict) -> bool:
    """Whether a worker's lines come from a trial of one of radas's sweeps."""
    name = data.get("actor_name") or data.get("task_name")
    return data.get("pid") in _sweep_worker_pids or name in _sweep_trainables


# Tune's log records that contradict radas (see the module docstring): (logger's module, text)
CONTRADICTING = (
    ("ray.tune.tune", "Stop signal received"),
    ("ray.tune.tune", "Resume experiment with"),
    ("ray.tune.analysis.experiment_analysis", "Failed to fetch metrics"),
)
# Dropped while Ray is quiet: radas's summary says which trials errored or did not finish.
QUIET_ONLY = (("ray.tune.tune", "Trials did not complete"),)


class _DropMessages(logging.Filter):
    def __init__(self, texts: list[str]) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


@contextlib.contextmanager
def quiet_ray_logs(show_ray_logs: bool) -> Iterator[None]:
    """For a radas sweep (then restored): Tune's contradicting messages dropped; Ray's INFO
    and WARNING records shown if ``show_ray_logs``, else dropped (the ``ray`` logger at ERROR)
    with the raylet's and autoscaler's lines and the workers' "Restored on ... from
    checkpoint" lines (these until the next sweep decides: see ``_RESTORED_LINE``). Without
    the fixes (``fixes_apply``) only the ``ray`` logger's level changes."""
    global _system_lines_shown, _restored_lines_shown
    dropped = CONTRADICTING if show_ray_logs else CONTRADICTING + QUIET_ONLY
    filters: dict[logging.Logger, list[str]] = {}
    for module_name, text in dropped if fixes_apply() else ():
        # the logger of the module that logs the text (a target: Ray may move it)
        logger = importlib.import_module(module_name).logger
        filters.setdefault(logger, []).append(text)
    installed = [(logger, _DropMessages(texts)) for logger, texts in filters.items()]
    ray_logger = logging.getLogger("ray")
    level, shown = ray_logger.level, _system_lines_shown
    _restored_lines_shown = show_ray_logs
    for logger, drop in installed:
        logger.addFilter(drop)
    if show_ray_logs:  # Ray's own default level, whatever ray.init was given
        ray_logger.setLevel(min(level or logging.INFO, logging.INFO))
    else:
        ray_logger.setLevel(logging.ERROR)
        _system_lines_shown = False
    try:
        yield
    finally:
        for logger, drop in installed:
            logger.removeFilter(drop)
        ray_logger.setLevel(level)
        _system_lines_shown = shown


# --- fix 6: a sweep in a thread stops on radas's event -----------------------------------------

# The event that stops Tune's fits in a thread (by thread id), as Ctrl-C does in the main one.
_thread_interrupts: dict[int, threading.Event] = {}


@contextlib.contextmanager
def tune_interrupted_by(event: threading.Event) -> Iterator[None]:
    """In this thread, for the block: radas's sweeps stop when ``event`` is set, saving the
    experiment's state as on Ctrl-C (fix 6; without the fixes, Tune's own event, which only
    a SIGINT in the main thread sets)."""
    thread = threading.get_ident()
    _thread_interrupts[thread] = event
    try:
        yield
    finally:
        del _thread_interrupts[thread]


def _wrap_setup_signal_catching(original: Callable[[], Any]) -> Callable[[], Any]:
    def setup_signal_catching() -> threading.Event:
        return _thread_interrupts.get(threading.get_ident()) or original()

    return setup_signal_catching


# --- private names radas reads or sets (no fix: each is used where it says) ------------------

# The logger of Ray's trial storage, which logs a line for every checkpoint it stores
# (ray/train/_internal/storage.py): radas.report(state=...) keeps it at WARNING.
CHECKPOINT_LOGGER = "ray.train._internal.storage"


def keep_local_ray_on_loopback() -> None:
    """Turn Ray's "cluster mode" off in this process before ``ray.init``, so it keeps
    127.0.0.1 instead of the machine's address (``ray._private.ray_constants``, read at
    import from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, which the caller sets for Ray's own
    processes)."""
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


# ``python -c`` program that runs ``ray start`` for a local cluster kept on the loopback
# interface: ``ray start`` refuses extra nodes with cluster mode off, so it is turned back on
# here, and Ray's replacement of 127.0.0.1 by the machine's address (``resolve_ip_for_localhost``)
# is turned off, so --node-ip-address stays as given.
LOOPBACK_RAY_START = """
import sys
import ray._private.ray_constants as ray_constants
import ray._private.services as services
ray_constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.exit(main())
"""


def walk_job_upload(
    directory: Path, excludes: list[str], record: Callable[[Path], None], *, gitignore: bool
) -> None:
    """Call ``record(path)`` for every path under ``directory`` that Ray's job upload takes:
    Ray's own walk (``ray._private.runtime_env.packaging``), so radas's count is what Ray
    sends."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    _dir_travel(
        directory, [_get_excludes(directory, list(excludes))], record, include_gitignore=gitignore
    )


def run_config_verbose(run_config: Any) -> Any:
    """The ``verbose=`` the user gave a ``RunConfig`` (None if none): RunConfig replaces None
    by its default and keeps what was given in ``_verbose``."""
    return getattr(run_config, "_verbose", run_config.verbose)


def stored_tune_config(tuner_state: dict[str, Any]) -> Any:
    """The ``TuneConfig`` in an unpickled ``tuner.pkl`` (Tune pickles its ``TunerInternal``'s
    ``__dict__``), or None."""
    return tuner_state.get("_tune_config")


# The logger of Ray's package upload (a job's working directory): INFO for every upload.
UPLOAD_LOGGER = "ray._private.runtime_env.packaging"


def pop_from_cluster_memory(key: str) -> bytes | None:
    """The value stored under ``key`` in the connected cluster's key-value store (the GCS),
    deleted there; None if there is none (``ray.experimental.internal_kv``)."""
    from ray.experimental import internal_kv

    value = internal_kv._internal_kv_get(key)
    internal_kv._internal_kv_del(key)
    return value


# --- a trial's saved states as Tune records them (its checkpoint manager) ----------------------

# Tune keeps, per trial, the checkpoints it knows (``_CheckpointManager``, pickled into the
# experiment state's trial metadata under ``checkpoint_manager`` with Tune's
# ``CLOUDPICKLE_FALLBACK`` JSON encoding) and restores a trial from the latest, with that
# checkpoint's metrics (its ``training_iteration`` is where the trial's count continues). A
# snapshot can name a checkpoint Tune deleted since (it keeps ``num_to_keep`` and deletes the
# oldest before its next snapshot is stored): radas points the trial at another one before
# Tune restores it (``radas.tune.sweep``). Read and rebuilt only here.
SAVED_STATE_TARGETS = (
    Target(
        "ray.train._internal.checkpoint_manager",
        "_CheckpointManager.register_checkpoint",
        ("self", "checkpoint_result"),
    ),
    Target("ray.train._internal.checkpoint_manager", "_CheckpointManager.checkpoint_config", None),
    Target(
        "ray.train._internal.checkpoint_manager",
        "_CheckpointManager.latest_checkpoint_result",
        None,
    ),
    Target(
        "ray.train._internal.checkpoint_manager",
        "_CheckpointManager.best_checkpoint_results",
        None,
    ),
    Target("ray.train._internal.session", "_TrainingResult", ("checkpoint", "metrics")),
    # writes {"_type": "CLOUDPICKLE_FALLBACK", "value": <hex of the cloudpickle>}
    Target("ray.tune.utils.serialization", "TuneFunctionEncoder._to_cloudpickle", ("self", "obj")),
)
_PICKLED = "CLOUDPICKLE_FALLBACK"


def saved_states(encoded: Any) -> tuple[str, list[str]] | None:
    """The path of the checkpoint Tune restores a trial from and the paths of every one it
    keeps (it deletes the oldest of these as new ones come), given the trial metadata's
    ``checkpoint_manager`` entry; None when it names none or cannot be read."""
    if not _saved_states_readable():
        return None  # another Ray: Tune restores as it does (radas repairs nothing)
    manager = _decoded(encoded)
    latest = getattr(manager, "latest_checkpoint_result", None)
    if latest is None or latest.checkpoint is None:
        return None
    kept = [result.checkpoint.path for result in manager.best_checkpoint_results]
    return latest.checkpoint.path, kept


def saved_states_at(encoded: Any, path: str | None, metrics: dict[str, Any]) -> Any:
    """The ``checkpoint_manager`` entry naming only the checkpoint at ``path`` (on the
    filesystem of the one it named), restored with ``metrics``; with ``path`` None, none: the
    trial starts from scratch."""
    from ray.train._internal.session import _TrainingResult

    manager = _decoded(encoded)
    fresh = type(manager)(manager.checkpoint_config)
    if path is not None:
        named = manager.latest_checkpoint_result.checkpoint
        checkpoint = type(named)(path=path, filesystem=named.filesystem)
        fresh.register_checkpoint(_TrainingResult(checkpoint=checkpoint, metrics=metrics))
    return _encoded(fresh)


def saved_states_without(encoded: Any, missing: set[str]) -> Any:
    """The ``checkpoint_manager`` entry without the checkpoints at ``missing`` (Tune would
    fail deleting them later); the latest stays the latest."""
    manager = _decoded(encoded)
    latest = manager.latest_checkpoint_result
    fresh = type(manager)(manager.checkpoint_config)
    for result in manager.best_checkpoint_results:
        if result is not latest and result.checkpoint.path not in missing:
            fresh.register_checkpoint(result)
    fresh.register_checkpoint(latest)
    return _encoded(fresh)


def _encoded(manager: Any) -> dict[str, str]:
    return {"_type": _PICKLED, "value": cloudpickle.dumps(manager).hex()}


@functools.cache
def _saved_states_readable() -> bool:
    return not any(target.problem() for target in SAVED_STATE_TARGETS)


def _decoded(encoded: Any) -> Any:
    if not isinstance(encoded, dict) or encoded.get("_type") != _PICKLED:
        return None
    try:
        return cloudpickle.loads(bytes.fromhex(encoded["value"]))
    except Exception:  # damaged, or pickled by another Ray: not known
        return None


# What the cluster-shape readers below rely on (they read, never patch: on a Ray where one
# differs they answer None, and radas sizes trials from the nodes alive, as without an
# autoscaler); tests/test_ray_compat.py checks them on the newest and the oldest Ray.
SHAPE_TARGETS = (
    Target("ray._private.ray_constants", "DEBUG_AUTOSCALING_STATUS", None),
    Target("ray._private.state", "GlobalState.get_cluster_config", ("self",)),
    Target("ray.experimental.internal_kv", "_internal_kv_get", ("key", "namespace")),
    Target("ray.autoscaler._private.monitor", "Monitor._run", ("self",)),
    Target("ray.autoscaler.v2.sdk", "get_cluster_status", ("gcs_address", "timeout")),
    Target("ray.autoscaler.v2.utils", "is_autoscaler_v2", ("fetch_from_server", "gcs_client")),
    Target("ray.autoscaler.v2.schema", "LaunchRequest", None),
)


def autoscaler_status() -> dict[str, Any] | None:
    """What Ray's autoscaler (v1, the cluster launcher's and KubeRay's default) last published
    in the connected cluster's GCS: ``{"autoscaler_report": {...}, "load_metrics_report":
    {...}}`` (``ray/autoscaler/_private/monitor.py``, ``Monitor._run``, key
    ``ray_constants.DEBUG_AUTOSCALING_STATUS``; the dashboard serves the same JSON at
    ``/api/cluster_status``); None on a cluster without an autoscaler."""
    import json

    from ray._private import ray_constants
    from ray.experimental import internal_kv

    try:
        raw = internal_kv._internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        if raw:
            return json.loads(raw)
        return _autoscaler_v2_status()
    except Exception:  # an old or damaged record reads as "no autoscaler", never as a crash
        return None


def _autoscaler_v2_status() -> dict[str, Any] | None:
    """Autoscaler v2 (KubeRay's default on recent Ray) publishes no v1 record: its status
    comes from the GCS (``ray.autoscaler.v2.sdk.get_cluster_status``), in v1's shape here."""
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_status
    from ray.autoscaler.v2.utils import is_autoscaler_v2

    if not is_autoscaler_v2(fetch_from_server=True):
        return None
    return v2_status_as_v1(get_cluster_status(ray.get_runtime_context().gcs_address))


def v2_status_as_v1(status: Any) -> dict[str, Any]:
    """A v2 ``ClusterStatus`` (``ray/autoscaler/v2/schema.py``) as v1's ``autoscaler_report``."""

    def by_type(items: list[Any], count: Callable[[Any], int] = lambda _: 1) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in items:
            counts[item.ray_node_type_name] = counts.get(item.ray_node_type_name, 0) + count(item)
        return counts

    launching = by_type(status.pending_launches, lambda request: request.count)
    for name, count in by_type(status.pending_nodes).items():
        launching[name] = launching.get(name, 0) + count
    failed = {
        request.ray_node_type_name: {
            "node_type": request.ray_node_type_name,
            "is_available": False,
            "unavailable_node_information": {
                "category": "LaunchFailed",
                "description": request.details or "the launch failed",
            },
        }
        for request in status.failed_launches
    }
    return {
        "autoscaler_report": {
            "active_nodes": by_type(status.active_nodes),
            "idle_nodes": by_type(status.idle_nodes),
            "pending_launches": launching,
            "node_availability_summary": {"node_availabilities": failed},
            "node_type_mapping": {
                node.node_id: node.ray_node_type_name
                for node in [*status.active_nodes, *status.idle_nodes]
                if node.node_id
            },
        }
    }


def published_node_types() -> list[dict[str, Any]] | None:
    """The node types (name, resources, min and max count) a platform published in the GCS
    (``ray._private.state.GlobalState.get_cluster_config``, KubeRay's and autoscaler v2's
    ``ClusterConfig``); None when nothing was published (Ray's v1 autoscaler does not)."""
    from ray._private.state import state

    try:
        config = state.get_cluster_config()
    except Exception:
        return None
    if config is None or not config.node_group_configs:
        return None
    return [
        {
            "name": group.name,
            "resources": {key: float(value) for key, value in group.resources.items()},
            "min_workers": int(group.min_count),
            "max_workers": None if group.max_count < 0 else int(group.max_count),
        }
        for group in config.node_group_configs
    ]


def autoscaler_config_file(gcs_address: str) -> str | None:
    """The autoscaling config (YAML) of the v1 autoscaler serving ``gcs_address``, when it runs
    on this machine (a job's driver runs on the head): the ``--autoscaling-config`` of Ray's
    monitor process (``ray/autoscaler/_private/monitor.py``, started by ``ray start --head
    --autoscaling-config``; ``ray up`` passes ``~/ray_bootstrap_config.yaml``)."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        command = process.info.get("cmdline") or []
        if not any(part.endswith("autoscaler/_private/monitor.py") for part in command):
            continue
        options = dict(
            part.split("=", 1) for part in command if part.startswith("--") and "=" in part
        )
        if options.get("--gcs-address") == gcs_address and options.get("--autoscaling-config"):
            return options["--autoscaling-config"]
    return None


def forget_registered_trainables() -> None:
    """Drop what Tune registered in the connected cluster's memory (its trainables), as Tune
    does at the exit of a process (``ray.tune.registry._unregister_all``)."""
    from ray.tune.registry import _unregister_all

    _unregister_all()


# --- Ray's job client: a timeout on every request, raw requests, the server's Ray version ----

_JOB_SDK = "ray.dashboard.modules.dashboard_sdk"
# What radas's subclass of Ray's job client overrides (Tune's fixes do not depend on it)
JOB_CLIENT_TARGETS = (
    Target(
        _JOB_SDK,
        "SubmissionClient._do_request",
        ("self", "method", "endpoint", "data", "json_data", "kwargs"),
        replaced=True,
    ),
    Target(_JOB_SDK, "SubmissionClient._raise_error", ("self", "r"), replaced=True),
)


def job_client(
    address: str,
    *,
    headers: dict[str, str],
    timeout_s: float,
    request_bound_s: Callable[[], float],
    http_error: Callable[[int, str], Exception],
) -> Any:
    """Ray's ``JobSubmissionClient`` for ``address`` whose every request is bounded as a whole:
    it waits at most ``timeout_s`` to connect, and the request ends, answer read, within
    ``request_bound_s()`` seconds (asked per request: a submission gives its requests what is
    left of its own bound) or raises ``requests.Timeout`` (``RequestDeadline``). Ray 2.60 sends
    them without any timeout (``SubmissionClient._do_request``). An HTTP error raises
    ``http_error(status, text)`` instead of Ray's ``RuntimeError`` (``_raise_error``). A Ray
    whose client differs is refused with a ``ClusterError``."""
    problems = [problem for target in JOB_CLIENT_TARGETS if (problem := target.problem())]
    if problems:
        import ray

        from radas.errors import ClusterError
        from radas.ray_compat.versions import supported_range

        raise ClusterError(
            f"radas cannot talk to clusters with this Ray ({ray.__version__}): its job client "
            f"differs from the one radas was verified against ({supported_range()}): "
            f"{'; '.join(problems)}. Install a Ray in that range."
        )
    return _timed_job_client_class()(
        address,
        headers=headers,
        radas_timeouts=(timeout_s, request_bound_s),
        radas_http_error=http_error,
    )


class RequestDeadline:
    """One request's bound as a whole, not per silence: ``requests`` waits ``timeout`` for each
    read, so a server that trickles its answer (a byte every few seconds) holds it forever.

    >>> with RequestDeadline(10, "GET /api/version") as deadline:  # doctest: +SKIP
    ...     requests.get(url, timeout=10, hooks=deadline.hooks)

    ``hooks`` holds a ``requests`` response hook, called once the status line and headers are
    in, before the body is read: at the deadline it shuts the response's socket down, so the
    read in progress ends at once, and the block raises ``requests.ReadTimeout`` (also when the
    cut body looked complete). The headers themselves are bounded per read (``timeout``): no
    socket is reachable before they are in.
    """

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.expired = False
        self.hooks = {"response": self._arm}
        self._ends_at = time.monotonic() + seconds
        self._timer: threading.Timer | None = None

    def __enter__(self) -> RequestDeadline:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        import requests

        if self._timer is not None:
            self._timer.cancel()
        if self.expired and (error is None or isinstance(error, Exception)):
            raise requests.ReadTimeout(
                f"{self.what}: the whole answer did not arrive within {self.seconds:g} s"
            ) from error

    def _arm(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._timer = threading.Timer(
            max(0.0, self._ends_at - time.monotonic()), self._cut, (response,)
        )
        self._timer.daemon = True
        self._timer.start()
        return response

    def _cut(self, response: Any) -> None:
        import socket

        self.expired = True
        connection = getattr(response.raw, "connection", None)  # urllib3's HTTPResponse
        sock = getattr(connection, "sock", None)
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            else:
                response.raw.close()


@functools.cache
def _timed_job_client_class() -> type:
    import requests
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        def __init__(
            self,
            address: str,
            *,
            radas_timeouts: tuple[float, Callable[[], float]],
            radas_http_error: Callable[[int, str], Exception],
            **kwargs: Any,
        ) -> None:
            self.radas_timeouts = radas_timeouts
            self.radas_http_error = radas_http_error
            super().__init__(address, **kwargs)

        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            connect, bound_s = self.radas_timeouts
            bound = bound_s()
            if bound <= 0:
                raise requests.Timeout(f"no time was left for {method} {endpoint}")
            kwargs.setdefault("timeout", (min(connect, bound), bound))
            with RequestDeadline(bound, f"{method} {endpoint}") as deadline:
                return super()._do_request(method, endpoint, hooks=deadline.hooks, **kwargs)

        def _raise_error(self, r: Any) -> None:
            raise self.radas_http_error(r.status_code, r.text)

    return TimedJobSubmissionClient


def request(client: Any, method: str, endpoint: str, **kwargs: Any) -> Any:
    """A request to the job server of ``client`` (made by ``job_client``), as its own calls
    make them (its timeouts, its headers); returns the ``requests.Response``."""
    return client._do_request(method, endpoint, **kwargs)


def server_ray_version(client: Any) -> str | None:
    """The Ray version the job server told ``client`` when it connected (Ray 2.55-2.60 keep
    it in ``_server_ray_version``); None when this client keeps none."""
    return getattr(client, "_server_ray_version", None)
