"""A signal handler that raises while a local sweep waits on Ray: the error arrives as itself.

Ray's C code runs the process's Python signal handlers while it waits (``ray.wait``, ``ray.get``
check for Ctrl-C), and handles only KeyboardInterrupt and SystemExit from them: any other
exception (pytest-timeout's ``Failed: Timeout``, a scheduler's pre-emption handler raising its
own error) is left pending, and the waiting call then dies with ``SystemError: <cyfunction
CoreWorker.wait ...> returned a result with an exception set``, in the middle of Tune's loop.
radas runs a local sweep in a thread of its own, so handlers run in the main thread's Python
code, never inside Ray's: the error is raised as itself, after Tune has saved its state.

The trial itself sends the signal while radas's out-of-memory retry runs it, the path where the
SystemError was seen (on a loaded machine, in the SKILL.md test: a retry stalled on Ray's
leaked placement-group bundle until pytest-timeout's handler fired). RADAS_SIGNAL_REPEATS sets
how many times the path runs (default 3; the last one is restored to its end); the
assertion message counts each outcome.
"""

from __future__ import annotations

import collections
import linecache
import os
import re
import signal
import sys
import threading
import time

import pytest
from ray import tune

import radas
from radas.core.poll import wait_until

pytestmark = pytest.mark.timing  # a signal arriving while Ray waits

REPEATS = int(os.environ.get("RADAS_SIGNAL_REPEATS", "3"))


class Interrupted(BaseException):
    """What a handler raises: neither KeyboardInterrupt nor SystemExit (as pytest's Failed)."""


def signals_its_driver_when_retried(config):
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources()["CPU"]
    if cpus < 2:
        raise MemoryError("this trial needs the memory of 2 CPUs")
    signalled = config["marks"] / "signalled"
    if not signalled.exists():  # the retry's first attempt only: the restore runs clean
        signalled.touch()
        time.sleep(1)  # the driver waits on Ray now, as during a trial's long epoch
        os.kill(config["driver"], signal.SIGUSR2)
        time.sleep(3)
    return {"cpus": cpus}


def run(project, n, run_choice):
    return radas.run_experiment_sync(
        user_name="alice",
        experiment_name=f"signalled-{n}",
        trainable=signals_its_driver_when_retried,
        param_space={
            "i": tune.grid_search([0]),
            "marks": project / f"marks-{n}",
            "driver": os.getpid(),
        },
        cpu_per_trial=1,
        run_choice=run_choice,
    )


def outcome(err: BaseException) -> str:
    if isinstance(err, Interrupted):
        return "raised as itself"
    cause = type(err.__cause__).__name__ if err.__cause__ else None
    text = re.sub(r" at 0x[0-9a-f]+", "", str(err))  # the same outcome counted as one
    return f"{type(err).__name__} (cause {cause}): {text[:60]}"


def raise_interrupted(signum, frame):
    raise Interrupted(f"raised by the handler of signal {signum}")


def signal_main_thread_in_ray_wait(sig: int) -> None:
    """Send this process ``sig`` once its main thread waits in Ray's C code (``ray.wait``'s
    frame is at its call of ``core_worker.wait``), so the handler runs there, however slow
    the machine."""
    main = threading.main_thread().ident

    def in_ray_wait() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            code = frame.f_code
            if code.co_name == "wait" and code.co_filename.endswith("_private/worker.py"):
                return "core_worker.wait(" in linecache.getline(code.co_filename, frame.f_lineno)
            frame = frame.f_back
        return False

    wait_until(in_ray_wait, 60, what="the main thread in ray.wait", max_delay_s=0.05)
    os.kill(os.getpid(), sig)


@pytest.mark.slow
def test_ray_leaves_an_error_raised_by_a_signal_handler_pending():
    """The cause, on Ray itself: a handler's error while ``ray.wait`` waits in the main thread
    comes out as a SystemError. Should a Ray fix this, the test fails and says so."""
    import ray

    from radas.backends.local import ensure_local_ray

    ensure_local_ray({})

    @ray.remote(num_cpus=0)
    def sleeps():
        time.sleep(60)

    ref = sleeps.remote()
    previous = signal.signal(signal.SIGUSR2, raise_interrupted)
    sender = threading.Thread(target=signal_main_thread_in_ray_wait, args=(signal.SIGUSR2,))
    try:
        with pytest.raises(BaseException) as info:
            sender.start()
            ray.wait([ref], timeout=10)  # (Ray returns the pending error when it ends)
    finally:
        sender.join()
        signal.signal(signal.SIGUSR2, previous)
        ray.cancel(ref, force=True)
    assert outcome(info.value).startswith("SystemError (cause Interrupted)"), (
        f"Ray now raises a signal handler's error as {outcome(info.value)!r}: see whether the "
        "sweep thread is still needed for it (backends/local.py)"
    )


@pytest.mark.slow
def test_an_error_raised_by_a_signal_handler_during_the_retry_fit_arrives_as_itself(project):
    outcomes: collections.Counter[str] = collections.Counter()
    # SIGUSR2: Tune claims SIGUSR1 (and SIGINT) as its stop signal when it runs in the main thread
    previous = signal.signal(signal.SIGUSR2, raise_interrupted)
    try:
        for n in range(REPEATS):
            (project / f"marks-{n}").mkdir()
            try:
                run(project, n, "run")
            except BaseException as err:  # counted, whatever it is
                outcomes[outcome(err)] += 1
                print(f"\nrepetition {n}: {outcome(err)}")
            else:
                outcomes["not raised"] += 1
    finally:
        signal.signal(signal.SIGUSR2, previous)
    # nothing lost: the stored experiment restores and the retried trial finishes
    restored = run(project, REPEATS - 1, "restore")
    assert restored["df"]["status"].tolist() == ["TERMINATED"]
    assert restored["df"]["cpu_per_trial"].tolist() == [2]
    print(f"\n{REPEATS} retries signalled: {dict(outcomes)}")
    assert outcomes == {"raised as itself": REPEATS}, dict(outcomes)
