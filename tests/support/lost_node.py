"""A sweep that loses a worker node under one of its trials, as a machine that goes away: the
node's raylet is killed while the trial runs there. Used by tests/integrity/test_lost_trials.py and
bench/bench_lost_trials.py.

The cluster: a head with 2 CPUs and one worker node with 1 CPU, trials of 1 CPU each, so the
three trials start at once, one on the worker. How many epochs (of ``seconds`` each) a trial
runs is set at its first start (and kept in its state): ``EPOCHS["worker"]`` on the worker,
on the head ``EPOCHS["short"]`` for the first to start and ``EPOCHS["long"]`` for the other.
So a head CPU frees up long before the long trial ends, which is when the lost trial ran again
before radas ran lost trials within the fit.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

HEAD_RESOURCE = "node:__internal_head__"  # Ray gives the head node this resource
TRIALS = 3
EPOCHS = {"short": 4, "long": 40, "worker": 12}


def epochs(config: dict[str, Any]) -> None:
    """Runs its epochs (see the module docstring) from its saved state; each start is marked
    ``start-<i>-<head|worker>-<uuid>`` (JSON: when, from which epoch), its end ``end-<i>``."""
    import ray

    import radas

    node = ray.get_runtime_context().get_node_id()
    head = any(n["NodeID"] == node and HEAD_RESOURCE in n["Resources"] for n in ray.nodes())
    marks, i = Path(config["marks"]), config["i"]
    role = "head" if head else "worker"
    state = radas.load_state()
    if state is None:
        kind = role
        if head:
            try:
                (marks / "short-taken").open("x").close()
                kind = "short"
            except FileExistsError:
                kind = "long"
        state = {"epoch": 0, "epochs": EPOCHS[kind]}
    mark = {"at": time.time(), "epoch": state["epoch"]}
    (marks / f"start-{i}-{role}-{uuid.uuid4().hex}").write_text(json.dumps(mark))
    for epoch in range(state["epoch"], state["epochs"]):
        time.sleep(config["seconds"])
        radas.report({"epoch": epoch, "node": role}, state={**state, "epoch": epoch + 1})
        (marks / f"epoch-{i}-{role}-{epoch}").touch()
    (marks / f"end-{i}").write_text(json.dumps({"at": time.time()}))


def param_space(marks: Path, seconds: float = 0.5) -> dict[str, Any]:
    from ray import tune

    return {"i": tune.grid_search(list(range(TRIALS))), "seconds": seconds, "marks": str(marks)}


@dataclass
class Starts:
    """Each start of a trial: its trial index, node role, time and first epoch."""

    i: int
    role: str
    at: float
    epoch: int


def starts(marks: Path) -> list[Starts]:
    found = []
    for path in marks.glob("start-*"):
        _, i, role, _ = path.name.split("-", 3)
        mark = json.loads(path.read_text())
        found.append(Starts(int(i), role, mark["at"], mark["epoch"]))
    return sorted(found, key=lambda start: start.at)


def ends(marks: Path) -> dict[int, float]:
    return {
        int(path.name.split("-")[1]): json.loads(path.read_text())["at"]
        for path in marks.glob("end-*")
    }


def kill_raylet_under_a_trial(cluster: Any, marks: Path, wait: Any) -> tuple[int, float]:
    """Once every trial runs and the worker's trial has reported an epoch: kill the worker
    node's raylet; returns (the lost trial's index, when). ``wait(condition, what=...)``
    waits for a condition (the caller's)."""
    wait(lambda: len({s.i for s in starts(marks)}) == TRIALS, what="every trial to start")
    on_worker = wait(
        lambda: [s for s in starts(marks) if s.role == "worker"], what="a trial on the worker"
    )[0]
    wait(lambda: list(marks.glob(f"epoch-{on_worker.i}-worker-*")), what="an epoch there")
    node = cluster.workers[0]
    raylets = [
        process
        for process in psutil.Process(node.pid).children(recursive=True)
        if process.name() == "raylet"
    ]
    assert raylets, f"no raylet under the worker node's process {node.pid}"
    killed_at = time.time()
    for raylet in raylets:
        raylet.kill()
    return on_worker.i, killed_at
