"""A worker node lost under a trial: how soon the trial runs again, and the sweep's wall time.

A local cluster (a head with 2 CPUs, one worker node with 1 CPU, on 127.0.0.1) runs the
3-trial sweep of tests/support/lost_node.py (epochs of 0.5 s: 12 for the trial on the worker, 4 and
40 for those on the head); once every trial runs, the worker node's raylet is killed. Printed
per repeat and as medians: seconds from the kill to the lost trial's next start, and the
sweep's wall time (the call to the DataFrame).

radas ships itself to the cluster from the client (``py_modules``), so an older radas is
measured by putting its source first on the path:

    python bench/bench_lost_trials.py                     # this radas
    git archive <commit> src | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src python bench/bench_lost_trials.py   # that one
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent / "tests"))  # lost_node

from support import lost_node  # noqa: E402


def wait(condition, what: str = "condition", timeout_s: float = 180):
    from radas.core.poll import wait_until

    return wait_until(condition, timeout_s, what=what, max_delay_s=0.1)


def one_run(name: str, repeat: int) -> tuple[float, float, int]:
    import radas
    from radas.clusters import start_local_cluster

    cluster = start_local_cluster(name, num_cpus=2, worker_nodes=1, worker_cpus=1)
    try:
        marks = Path(tempfile.mkdtemp(prefix="lost-node-"))
        killed: dict[str, float] = {}

        def killer() -> None:
            killed["i"], killed["at"] = lost_node.kill_raylet_under_a_trial(cluster, marks, wait)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        started = time.monotonic()
        results = radas.run_experiment_sync(
            user_name="bench",
            experiment_name=f"lost-node-{repeat}",
            trainable=lost_node.epochs,
            param_space=lost_node.param_space(marks),
            run_with=f"cluster:{name}",
            run_choice="run",
        )
        wall = time.monotonic() - started
        thread.join(timeout=5)
        lost = int(killed["i"])
        again = [s for s in lost_node.starts(marks) if s.i == lost and s.at > killed["at"]]
        finished = int((results["df"]["status"] == "TERMINATED").sum())
        return again[0].at - killed["at"], wall, finished
    finally:
        if cluster.workers:
            cluster.kill_worker_node(cluster.workers[0])  # what is left of it
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import radas

    print(f"radas from {Path(radas.__file__).parent}")
    back, walls = [], []
    for repeat in range(args.repeats):
        seconds_back, wall, finished = one_run(f"lostbench{repeat}", repeat)
        back.append(seconds_back)
        walls.append(wall)
        print(
            f"run {repeat + 1}: lost trial running again {seconds_back:.1f} s after the kill; "
            f"sweep {wall:.1f} s; {finished} of {lost_node.TRIALS} trials finished"
        )
    print(
        f"median of {args.repeats}: back after {statistics.median(back):.1f} s, "
        f"sweep {statistics.median(walls):.1f} s"
    )


if __name__ == "__main__":
    main()
