"""``run_with="local"``: Ray started in-process on this machine, results under $RADAS_HOME.

The sweep runs in a thread of its own, so ``await run_experiment(...)`` leaves the event loop
free (a notebook stays responsive, other experiments are followed meanwhile). Local sweeps of
one process take turns: they share its one Ray, and two Tune fits at once would not be safe
(Tune and radas set process-wide state around a fit: environment variables, Ray's log filters,
Ray itself restarted with another runtime_env or to free leaked resources), so a second one
waits, saying for which, and starts when the first ends (the same experiment, already
running, is refused: ExperimentRunningError, as from another process).

Ctrl-C stays graceful: Tune catches SIGINT only when it runs in the main thread, so while a
sweep runs in radas's thread, radas catches SIGINT in the main thread and hands it to that
sweep's Tune loop (``ray_compat.signals.tune_interrupted_by``, fix 6), which saves the experiment's
state and returns as it does in the main thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import logging
import math
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import ray

from radas.core.console import print_info, print_warning, ray_output_wanted
from radas.core.poll import async_wait_until, wait_until
from radas.core.spec import RunTarget, SweepOutcome, SweepSpec
from radas.errors import NotSupportedError
from radas.ray_compat.private import keep_local_ray_on_loopback
from radas.ray_compat.signals import tune_interrupted_by
from radas.ray_compat.worker_env import (
    inherited_by_workers,
    tune_trial_environment,
    worker_setup_environment,
)
from radas.storage.dirs import get_ray_results_dir
from radas.storage.locks import refuse_if_held
from radas.tune.sweep import run_sweep

# The runtime_env radas started the in-process Ray with (None: radas did not start it).
_started_with: dict[str, Any] | None = None
# How long resources may stay held between two fits before radas calls them leaked.
LEAK_SETTLE_S = 15.0
_COUNTED_RESOURCES = ("CPU", "GPU", "memory")
# One local sweep at a time in this process (see the module's docstring), and which one runs.
_sweep_turn = threading.Lock()
_running_sweep = ""
# The event loop that started each thread running a sweep (Ray is restarted on its thread).
_starting_loops: dict[int, asyncio.AbstractEventLoop] = {}
T = TypeVar("T")


class LocalBackend:
    target = RunTarget("local")

    def results_root(self, user_name: str) -> str:
        return get_ray_results_dir(user_name, run_with="local")

    def store_scope(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    async def run(self, spec: SweepSpec, *, runtime_env: dict[str, Any]) -> SweepOutcome:
        global _running_sweep
        # the same experiment running now is refused, as from another process (waiting for
        # the turn would run it again afterwards, moving the results just made aside)
        refuse_if_held(spec.experiment_path, spec.experiment_name)
        await _wait_for_turn(spec.experiment_name)
        _running_sweep = spec.experiment_name
        try:
            # here, not in the sweep's thread: Ray sets its SIGTERM handler from the main one
            ensure_local_ray(runtime_env)
        except BaseException:
            _sweep_turn.release()
            raise
        return await _run_in_sweep_thread(
            lambda: run_sweep(spec, before_fit=release_leaked_resources),
            name=spec.experiment_name,
        )

    async def attach(self, spec: SweepSpec, *, stop: bool) -> SweepOutcome:
        choice = "stop_attach" if stop else "attach"
        raise NotSupportedError(
            f"run_choice={choice!r} follows an experiment running as a job on a Ray cluster; "
            "on run_with='local' the experiment runs inside your own process, so there is "
            "nothing to attach to. Use run_choice='restore' to continue a stopped local "
            "experiment, or dos=['analyze'] to analyze it."
        )

    def running_probe(self, user_name: str, full_name: str) -> None:
        """None: a local run holds the experiment's lock on this machine, which tells."""
        return None


async def _wait_for_turn(experiment_name: str) -> None:
    """Take this process's sweep turn, waiting (without blocking the event loop) while
    another local sweep holds it."""
    if _sweep_turn.acquire(blocking=False):
        return
    print_info(
        f"{experiment_name}: waiting for {_running_sweep or 'another experiment'} to end: local "
        "experiments of one process run one at a time (they share its Ray); it starts then"
    )
    await async_wait_until(
        lambda: _sweep_turn.acquire(blocking=False),
        math.inf,
        what="the local sweep running in this process to end",
        max_delay_s=1.0,
        in_thread=False,  # a lock attempt that does not wait: no await between it and return
    )


async def _run_in_sweep_thread(work: Callable[[], T], *, name: str) -> T:
    """``work()`` (which holds the sweep turn, released when it ends) in a thread of its own,
    awaited without blocking the event loop.

    Ctrl-C (SIGINT in the main thread, when the loop runs there) and cancelling the awaiting
    task both stop the sweep the way Tune stops on Ctrl-C: its state is saved, the fit returns
    (the outcome says interrupted). A cancelled caller waits for that, then is cancelled; a
    second Ctrl-C goes to the handler that was there before (e.g. KeyboardInterrupt).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    interrupt = threading.Event()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is None:
            done.set_result(result)
        else:
            done.set_exception(error)

    def target() -> None:
        _starting_loops[threading.get_ident()] = loop
        result: Any = None
        error: BaseException | None = None
        try:
            with tune_interrupted_by(interrupt):
                result = work()
        except BaseException as err:  # handed to the awaiting task, which raises it
            error = err
        finally:
            del _starting_loops[threading.get_ident()]
            _sweep_turn.release()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    thread = threading.Thread(target=target, name=f"radas sweep {name}")
    with _sigint_sets(interrupt):
        thread.start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            interrupt.set()
            with contextlib.suppress(BaseException):
                await asyncio.shield(done)  # the state saved; a second cancel stops waiting
            raise


@contextlib.contextmanager
def _sigint_sets(interrupt: threading.Event) -> Iterator[None]:
    """While the block runs, the first SIGINT sets ``interrupt`` instead of what the main
    thread's handler does (nothing changes when this is not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        print_warning("Ctrl-C: stopping the experiment; Tune saves its state first")
        interrupt.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, previous)


def ensure_local_ray(runtime_env: dict[str, Any]) -> None:
    """Start (or reuse) the in-process Ray, bound to 127.0.0.1, with ``runtime_env``.

    The session's own runtime_env is the user's alone (none by default): Ray starts one worker
    per CPU with the session, with no runtime_env, and only trials whose runtime_env is that
    one can take them (``ray_compat.worker_env``, fix 10). So the variables Tune passes to its
    trials are in the environment Ray's processes start with, and so is the one that runs
    radas's worker setup in each worker as it starts (``worker_setup_environment``; in a Ray
    radas did not start, each trial runs it first: ``_worker.with_setup``).
    """
    global _started_with
    wanted = dict(runtime_env)
    if ray.is_initialized():
        if _started_with is None or _started_with == wanted:
            return  # the user's own Ray, or ours with the same environment
        ray.shutdown()
    # Ray turns 127.0.0.1 into the machine's network address unless "cluster mode" is off;
    # a local run has no other nodes, so keep every Ray server (this process and the ones
    # Ray starts) on the loopback interface.
    keep_local_ray_on_loopback()
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

    def start() -> dict[str, str]:
        variables = {**tune_trial_environment(), **worker_setup_environment()}
        with _environment_while_starting(variables) as inherited:
            ray.init(
                address="local",
                include_dashboard=False,
                # ray.init adds keys to the dict it is given
                runtime_env=copy.deepcopy(wanted) or None,
                # Ray's start-up records (its banner, token-auth notice) only when asked for
                logging_level=logging.INFO if ray_output_wanted() else logging.ERROR,
                _node_ip_address="127.0.0.1",
            )
        return inherited

    inherited_by_workers(_on_lasting_thread(start))
    _started_with = wanted


def _on_lasting_thread(work: Callable[[], T]) -> T:
    """``work()`` on a thread that lives as long as this process: this one if it is the main
    thread, else radas's own thread, started once and never ended.

    Ray's processes (GCS, raylet, ...) share the fate of the one that started them: Ray has
    Linux kill each of them when its parent ends (``PR_SET_PDEATHSIG`` in
    ``ray._private.utils.set_kill_on_parent_death_linux``), and Linux takes the *thread* that
    started a process for its parent. Started from a thread that then ended (a script running
    experiments from a thread pool), Ray died with it, and this process's next call to Ray
    killed the process ("Failed to connect to GCS within 60 seconds")."""
    if threading.current_thread() is threading.main_thread():
        return work()
    global _lasting_thread
    with _lasting_thread_made:
        if _lasting_thread is None:
            _lasting_thread = threading.Thread(
                target=_do_lasting_work, name="radas ray parent", daemon=True
            )
            _lasting_thread.start()
    finished: concurrent.futures.Future[T] = concurrent.futures.Future()
    _lasting_work.put((work, finished))
    return finished.result()


def _do_lasting_work() -> None:
    """The lasting thread's loop (a daemon: it never ends before the process, nor holds up its
    exit, and Ray's own exit handler still finds its processes alive)."""
    while True:
        work, finished = _lasting_work.get()
        try:
            finished.set_result(work())
        except BaseException as err:  # raised in the thread that handed the work over
            finished.set_exception(err)


# The thread in-process Ray is started from when the main thread does not start it.
_lasting_thread: threading.Thread | None = None
_lasting_thread_made = threading.Lock()
_lasting_work: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
    queue.SimpleQueue()
)


@contextlib.contextmanager
def _environment_while_starting(variables: dict[str, str]) -> Iterator[dict[str, str]]:
    """``variables`` in this process's environment while the block starts Ray (its processes
    inherit them; this process has them no longer after); yields the environment they get."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield dict(os.environ)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def release_leaked_resources() -> None:
    """Restart radas's own in-process Ray if, between two fits, it holds resources nothing uses.

    Ray 2.60 can leak a placement-group bundle when a group is removed while its resources are
    being prepared (ray-project/ray#64693, fix proposed in #66188); Tune does that often with
    ``reuse_actors=True``. The leaked CPUs stay reserved for the rest of the Ray session, so a
    later trial asking for the whole node (an out-of-memory retry) waited forever. Between
    fits no trial of radas runs, so what stays reserved longer than ``LEAK_SETTLE_S`` (after
    Tune's asynchronous clean-up) is leaked; a fresh Ray session (about 3 s) frees it, and the
    experiment continues from its stored state. A Ray the user started is left alone.
    """
    if _started_with is None or not ray.is_initialized():
        return
    try:
        wait_until(lambda: not _held_resources(), LEAK_SETTLE_S, what="Ray's resources to free")
    except TimeoutError:
        held = _held_resources()
        if not held:  # freed in the last instant
            return
        amounts = ", ".join(f"{name} {amount:g}" for name, amount in held.items())
        print_warning(
            f"Ray holds resources no trial uses ({amounts}; a Ray placement-group leak, "
            "ray-project/ray#64693): restarting radas's in-process Ray before the next fit"
        )
        runtime_env = dict(_started_with)

        def restart() -> None:
            ray.shutdown()
            ensure_local_ray(runtime_env)

        _on_starting_thread(restart)


def _on_starting_thread(work: Callable[[], None]) -> None:
    """Run ``work`` on the thread whose event loop started this sweep, and wait for it (in
    any other thread: here). Ray is stopped and started there, as before sweeps had threads
    of their own: ``ray.init`` sets its SIGTERM handler only from the main thread (and Ray's
    processes must not be started from the sweep's thread, which ends: ``_on_lasting_thread``
    sees to that in any thread but the main one)."""
    loop = _starting_loops.get(threading.get_ident())
    if loop is None:
        work()
        return
    finished: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run() -> None:
        try:
            work()
            finished.set_result(None)
        except BaseException as err:  # raised in the sweep's thread
            finished.set_exception(err)

    loop.call_soon_threadsafe(run)
    finished.result()


def _held_resources() -> dict[str, float]:
    total, available = ray.cluster_resources(), ray.available_resources()
    held = {
        name: total[name] - available.get(name, 0.0) for name in _COUNTED_RESOURCES if name in total
    }
    return {name: amount for name, amount in held.items() if amount > 1e-6 * max(1.0, total[name])}
