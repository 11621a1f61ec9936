"""Issue 23: a trial that lost its node or worker runs again within the same fit, from its latest
state, at most ``MAX_LOST_TRIAL_RETRIES`` times; the trainable's own exits and interrupts are
its errors (never run again), read as what the trainable did, not as what Ray reports.

Real Ray throughout: in-process for a worker killed from outside (as a machine's OOM killer or
an operator would), a local cluster whose worker node's raylet is killed for a lost node.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray import tune

import radas
from radas.tune.progress import ProgressLine
from radas.tune.retries import MAX_LOST_TRIAL_RETRIES
from support import lost_node
from support.waiting import wait_for


def _starts(marks: Path, i: int) -> list[Path]:
    return sorted(marks.glob(f"start-{i}-*"), key=lambda path: int(path.name.split("-")[2]))


def _mark_start(config: dict) -> int:
    """Marks this start of trial i as ``start-<i>-<n>-<pid>``; returns n (0 for the first)."""
    marks, i = Path(config["marks"]), config["i"]
    n = len(list(marks.glob(f"start-{i}-*")))
    (marks / f"start-{i}-{n}-{os.getpid()}").touch()
    return n


# --- the trainable's own exits: its errors, read right, not run again --------------------------


class NotRebuildable(Exception):
    """Its class cannot be rebuilt from its args (Tune copies exceptions that way)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}{b}")


def ends_itself(config: dict) -> None:
    _mark_start(config)
    radas.report({"step": 1})
    how = config["how"]
    if how == "sys.exit":
        raise SystemExit(3)
    if how == "sys.exit(message)":
        sys.exit("bye now")
    if how == "os._exit":
        os._exit(1)
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt
    raise NotRebuildable("left-", "right")


@pytest.mark.timing
@pytest.mark.integrity("error")
@pytest.mark.parametrize(
    ("how", "error"),
    [
        (
            "sys.exit",
            "SystemExit: 3 (the trainable exited with code 3; Ray reports it as a dead worker)",
        ),
        (
            "sys.exit(message)",
            "SystemExit: bye now (the trainable exited with that message; Ray reports it as a "
            "dead worker)",
        ),
        (
            "os._exit",
            "os._exit(1): the trainable ended its worker process (Ray reports it as a dead worker)",
        ),
        (
            "KeyboardInterrupt",
            "KeyboardInterrupt (raised in the trainable; Ray reports it as TaskCancelledError)",
        ),
        ("not rebuildable", "test_lost_trials.NotRebuildable: left-right"),
    ],
    ids=["sys.exit", "sys.exit(message)", "os._exit", "KeyboardInterrupt", "not rebuildable"],
)
def test_the_trainables_own_exit_is_its_error_and_runs_once(project, capsys, how, error):
    marks = project / "marks"
    marks.mkdir()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="ends-itself-" + "".join(c if c.isalnum() else "-" for c in how),
        trainable=ends_itself,
        param_space={"i": 0, "how": how, "marks": str(marks)},
        run_choice="run",
    )
    out = "".join(capsys.readouterr())  # progress lines (stdout) and warnings (stderr)
    row = results["df"].iloc[0]
    assert row["status"] == "ERROR"
    assert row["error"].endswith(error), row["error"]
    assert len(_starts(marks, 0)) == 1  # not run again: before, the exits ran 4 times
    assert "lost its node or worker" not in out and "lost their node" not in out, out
    assert f"errored: {error}" in out, out


class SetupRaises(tune.Trainable):
    def setup(self, config: dict) -> None:
        _mark_start(config)
        raise ValueError("no data here")

    def step(self) -> dict:
        return {"done": True}


@pytest.mark.integrity("error")
def test_a_class_trainable_whose_setup_raises_runs_once(project):
    """Its actor cannot start: Ray's ActorDiedError (actor_init_failed) is the trainable's
    error, not a lost worker (it ran 4 times)."""
    marks = project / "marks"
    marks.mkdir()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="setup-raises",
        trainable=SetupRaises,
        param_space={"i": 0, "marks": str(marks)},
        run_choice="run",
    )
    row = results["df"].iloc[0]
    assert row["status"] == "ERROR"
    assert row["error"] == "ValueError: no data here"
    assert len(_starts(marks, 0)) == 1


# --- a worker killed under a trial: the trial runs again within the fit ------------------------


def waits_for_the_other(config: dict) -> dict:
    """Trial 0 holds until trial 1 has started a second time (its worker was killed after its
    first report) and then ends; trial 1 continues from its saved state."""
    marks = Path(config["marks"])
    n = _mark_start(config)
    if config["i"] == 0:
        deadline = time.monotonic() + 120
        while len(_starts(marks, 1)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"saw_the_retry": len(_starts(marks, 1)) >= 2, "first_epoch": 0}
    state = radas.load_state() or {"epoch": 0}
    first_epoch = state["epoch"]
    for epoch in range(first_epoch, 3):
        radas.report({"epoch": epoch}, state={"epoch": epoch + 1})
        if n == 0 and epoch == 1:
            (marks / "killable").touch()
            time.sleep(120)  # killed here
    return {"first_epoch": first_epoch}


@pytest.mark.integrity("survive")
@pytest.mark.slow
def test_a_trial_whose_worker_is_killed_runs_again_within_the_fit(project, capsys):
    marks = project / "marks"
    marks.mkdir()

    def kill_trial_1_once() -> None:
        wait_for(lambda: (marks / "killable").exists(), what="trial 1 to save epoch 1")
        os.kill(int(_starts(marks, 1)[0].name.split("-")[3]), signal.SIGKILL)

    killer = threading.Thread(target=kill_trial_1_once, daemon=True)
    killer.start()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="worker-killed",
        trainable=waits_for_the_other,
        param_space={"i": tune.grid_search([0, 1]), "marks": str(marks)},
        run_choice="run",
        cpu_per_trial=1,
    )
    killer.join(timeout=5)
    out = "".join(capsys.readouterr())  # progress lines (stdout) and warnings (stderr)
    df = results["df"].set_index("config/i")
    assert set(df["status"]) == {"TERMINATED"}, df[["status", "error"]]
    assert df["error"].isna().all()  # it failed once, but did not end in error
    assert df.loc[0, "saw_the_retry"]  # trial 1 ran again while trial 0 still ran
    assert len(_starts(marks, 1)) == 2
    assert df.loc[1, "first_epoch"] == 2  # from its latest state (epochs 0 and 1 were saved)
    assert "lost its node or worker (not an error of the trainable); it runs again" in out, out
    assert "trial(s) lost their node or worker" not in out, out  # no round after the fit
    assert "errored" not in out.replace("0 errored", ""), out


def kills_its_worker(config: dict) -> None:
    _mark_start(config)
    radas.report({"step": 1})
    os.kill(os.getpid(), signal.SIGKILL)  # as a node that keeps dying would


@pytest.mark.integrity("survive")
@pytest.mark.slow
def test_a_trial_that_keeps_losing_its_worker_runs_again_at_most_the_cap(project, capsys):
    marks = project / "marks"
    marks.mkdir()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="keeps-dying",
        trainable=kills_its_worker,
        param_space={"i": 0, "marks": str(marks)},
        run_choice="run",
    )
    out = "".join(capsys.readouterr())  # progress lines (stdout) and warnings (stderr)
    assert results["df"].iloc[0]["status"] == "ERROR"
    assert len(_starts(marks, 0)) == 1 + MAX_LOST_TRIAL_RETRIES  # then no round after the fit
    assert out.count("it runs again from its latest saved state") == MAX_LOST_TRIAL_RETRIES, out
    assert "lost its node or worker again" in out, out
    assert "trial(s) lost their node or worker" not in out, out


def killed_once(config: dict) -> None:
    if _mark_start(config) == 0:
        radas.report({"step": 1}, state={"step": 1})
        os.kill(os.getpid(), config.get("signal", signal.SIGKILL))
        time.sleep(60)  # ended here


@pytest.mark.slow
@pytest.mark.integrity("survive")
def test_a_worker_stopped_with_sigterm_is_lost_not_the_trainables_exit(project, capsys):
    """A node drained or preempted stops its workers with SIGTERM: Ray reports "exits with an
    exit code 1. The process receives a SIGTERM." (not the trainable's SystemExit)."""
    marks = project / "marks"
    marks.mkdir()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="sigterm",
        trainable=killed_once,
        param_space={"i": 0, "marks": str(marks), "signal": signal.SIGTERM},
        run_choice="run",
    )
    out = "".join(capsys.readouterr())
    assert results["df"].iloc[0]["status"] == "TERMINATED", results["df"]["error"]
    assert len(_starts(marks, 0)) == 2
    assert "lost its node or worker (not an error of the trainable); it runs again" in out, out
    assert "SystemExit" not in out, out


@pytest.mark.integrity("survive")
@pytest.mark.slow
def test_without_the_fixes_a_lost_trial_runs_again_after_the_fit(project, capsys, monkeypatch):
    """On a Ray whose internals differ from what radas was verified against, Tune decides
    alone (no in-fit retry): the lost trial runs again in a round after the fit, as before."""
    from ray.tune.experiment import Trial

    from radas.errors import RadasWarning
    from radas.ray_compat import targets

    rays = Trial.should_recover

    def changed(self, failures=0):  # a newer Ray, say
        return rays(self)

    monkeypatch.setattr(Trial, "should_recover", changed)
    monkeypatch.setattr(targets, "_mismatches", None)  # checked again in this process
    marks = project / "marks"
    marks.mkdir()
    with pytest.warns(RadasWarning, match="Trial.should_recover takes"):
        results = radas.run_experiment_sync(
            user_name="tester",
            experiment_name="lost-without-fixes",
            trainable=killed_once,
            param_space={"i": 0, "marks": str(marks)},
            run_choice="run",
        )
    out = "".join(capsys.readouterr())
    assert results["df"].iloc[0]["status"] == "TERMINATED"
    assert len(_starts(marks, 0)) == 2
    assert "radas runs it again once the running trials have ended" in out, out
    assert "1 trial(s) lost their node or worker (not an error of the trainable)" in out, out


def test_the_progress_line_counts_a_requeued_trial_as_retrying(capsys):
    line = ProgressLine("sweep")
    line.setup(total_num_samples=3)
    trials = [
        SimpleNamespace(trial_id="a", status="RUNNING", error_file=None, evaluated_params={}),
        SimpleNamespace(trial_id="b", status="PENDING", error_file=None, evaluated_params={}),
        SimpleNamespace(trial_id="c", status="PENDING", error_file=None, evaluated_params={}),
    ]
    line.on_trial_start(0, trials, trials[1])
    line.on_trial_recover(0, trials, trials[1])  # Tune requeued it: PENDING again
    text = line.describe(trials, time.monotonic())
    assert text.startswith("sweep: 0 of 3 trials finished, 1 running, 1 retrying, 1 pending, ")
    assert "0 errored" in text
    line.on_trial_start(0, trials, trials[1])
    trials[1].status = "RUNNING"
    text = line.describe(trials, time.monotonic())
    assert text.startswith("sweep: 0 of 3 trials finished, 2 running, 1 pending, 0 errored")
    assert "trial b failed" in capsys.readouterr().out  # no error file: not a lost trial


# --- a lost node: its raylet killed under a trial ----------------------------------------------


@pytest.fixture(scope="module")
def two_nodes():
    from radas.clusters import start_local_cluster

    cluster = start_local_cluster("lostnode", num_cpus=2, worker_nodes=1, worker_cpus=1)
    yield cluster
    if cluster.workers:  # what is left of the node whose raylet was killed
        cluster.kill_worker_node(cluster.workers[0])
    cluster.stop()


@pytest.mark.integrity("survive")
@pytest.mark.slow
@pytest.mark.cluster
def test_a_trial_on_a_lost_node_runs_again_before_the_sweep_ends(two_nodes, project):
    marks = project / "marks"
    marks.mkdir()
    killed: dict = {}

    def kill() -> None:
        killed["i"], killed["at"] = lost_node.kill_raylet_under_a_trial(two_nodes, marks, wait_for)

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="lost-node",
        trainable=lost_node.epochs,
        param_space=lost_node.param_space(marks),
        run_with="cluster:lostnode",
        run_choice="run",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )
    killer.join(timeout=5)
    assert killed, "the worker node's raylet was not killed"
    history = results["df"]
    lost = killed["i"]
    again = [s for s in lost_node.starts(marks) if s.i == lost and s.at > killed["at"]]
    assert again and again[0].role == "head", lost_node.starts(marks)
    assert again[0].epoch >= 1  # from its saved state
    # within the fit: it ran again before the long trial ended, not in a round after it
    assert again[0].at < max(lost_node.ends(marks).values())
    print(f"lost trial running again {again[0].at - killed['at']:.1f} s after the node died")
    rows = history[history["config/i"] == lost]
    assert rows["epoch"].tolist() == list(range(lost_node.EPOCHS["worker"]))  # each once
    assert len(lost_node.ends(marks)) == lost_node.TRIALS
