"""An experiment interrupted mid-run (SIGINT, as Ctrl-C) continues with run_choice='restore'."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import radas
from radas.results import tune_state

SCRIPT = textwrap.dedent(
    """
    import sys, time, uuid, pathlib
    from ray import tune
    import radas

    RUNS = pathlib.Path(sys.argv[1])

    def slow(config):
        (RUNS / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
        time.sleep(1.0)
        (RUNS / f"done-{config['i']}-{uuid.uuid4().hex}").touch()
        return {"value": config["i"] * 2}

    radas.run_experiment_sync(
        user_name="tester",
        experiment_name="interrupt",
        trainable=slow,
        param_space={"i": tune.grid_search(list(range(8)))},
        run_choice=sys.argv[2],
    )
    """
)


def start(project: Path, runs: Path, choice: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-u", "interrupted.py", str(runs), choice],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def recorded_finished(experiment: str) -> list[str]:
    """The trials the running driver has recorded as finished (radas_trials.json)."""
    if not Path(experiment).exists():
        return []
    records = tune_state.read_trial_records(experiment)
    return [trial for trial, record in records.items() if record.get("status") == "TERMINATED"]


def starts(runs: Path, i: int) -> int:
    return len(list(runs.glob(f"start-{i}-*")))


@pytest.mark.slow
def test_interrupted_experiment_resumes_without_rerunning_finished_trials(project):
    (project / "interrupted.py").write_text(SCRIPT)
    runs = project / "runs"
    runs.mkdir()

    experiment = (
        radas.get_ray_results_dir("tester")
        + "/"
        + radas.core.naming.full_experiment_name("interrupt", cwd=str(project))
    )
    first = start(project, runs, "run")
    deadline = time.monotonic() + 120
    # Interrupt once the driver has recorded 3 trials as finished (a trial's "done" file comes
    # before the driver has its result).
    while len(recorded_finished(experiment)) < 3:
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "trials did not finish in time"
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=120)
    assert first.returncode != 0, output
    assert "run_choice='restore'" in output, output
    before = {t.config["i"]: t.status for t in tune_state.load_trial_states(experiment)}
    finished_before = sorted(i for i, status in before.items() if status == "TERMINATED")
    assert 3 <= len(finished_before) < 8, before
    # nothing runs now: started trials that did not end are STOPPED, never RUNNING
    assert set(before.values()) <= {"TERMINATED", "STOPPED", "PENDING"}, before
    assert "STOPPED" in radas.Tuner(experiment).get_dataframe()["status"].tolist(), before

    second = start(project, runs, "restore")
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert f"{len(finished_before)} of 8 trials were already done" in output, output

    df = radas.Tuner(experiment).get_dataframe()
    assert sorted(df["config/i"]) == list(range(8))
    assert set(df["status"]) == {"TERMINATED"}
    assert (df["value"] == df["config/i"] * 2).all()
    for i in finished_before:
        assert starts(runs, i) == 1, f"trial i={i} finished before the interruption but re-ran"
    for i in set(range(8)) - set(finished_before):
        assert len(list(runs.glob(f"done-{i}-*"))) >= 1


@pytest.mark.slow  # a local sweep and a restore: ~10 s
def test_restore_of_a_finished_experiment_answers_from_the_store(project, capfd):
    import ray.cloudpickle as cloudpickle
    from ray import tune

    def double(config):
        return {"value": config["i"] * 2}

    kwargs = dict(
        user_name="tester",
        experiment_name="finished",
        trainable=double,
        param_space={"i": tune.grid_search([0, 1, 2])},
    )
    first = radas.run_experiment_sync(**kwargs, run_choice="run")
    path = Path(first["experiment_path"])
    states = sorted(path.glob("experiment_state-*.json"))
    capfd.readouterr()
    started = time.monotonic()
    again = radas.run_experiment_sync(**kwargs, run_choice="restore")
    seconds = time.monotonic() - started
    assert "nothing to continue: 3 of 3 trials finished" in capfd.readouterr().out
    assert again["outcome"].already_done == 3
    assert sorted(again["df"]["value"]) == [0, 2, 4]
    assert sorted(path.glob("experiment_state-*.json")) == states  # Tune did not run
    print(f"restore of a finished experiment answered in {seconds:.2f} s")

    # the searcher had not made every trial (a run killed between two trials): Tune runs
    newest = states[-1].name.removeprefix("experiment_state-")
    searcher_file = path / f"basic-variant-state-{newest}"
    searcher = cloudpickle.loads(searcher_file.read_bytes())
    assert searcher["_finished"] is True
    searcher_file.write_bytes(cloudpickle.dumps({**searcher, "_finished": False}))
    resumed = radas.run_experiment_sync(**kwargs, run_choice="restore")
    output = capfd.readouterr().out
    assert "nothing to continue" not in output and "resuming from" in output
    assert sorted(resumed["df"]["value"]) == [0, 2, 4]
