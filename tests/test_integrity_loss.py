"""Issue 11 §2: never lose finished work, never pretend.

A killed run keeps every trial whose end radas recorded; damaged experiment folders are
detected, reported by file, and read as far as they are intact; radas's own writes survive a
kill at any instant; a full disk gives StorageFullError and leaves consistent state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import radas
from radas import _ray_state
from radas.errors import ExperimentDamagedError, RadasWarning
from radas.history import HISTORY_DIR, history_parts, load_history

GRID_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, time, uuid
    from ray import tune
    import radas

    RUNS, SLEEP = pathlib.Path(sys.argv[1]), float(sys.argv[4])  # globals travel with it

    def trainable(config):
        (RUNS / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
        for step in range(3):
            radas.report({"value": config["i"] * 10 + step})
            time.sleep(SLEEP)
        (RUNS / f"done-{config['i']}-{uuid.uuid4().hex}").touch()

    radas.run_experiment_sync(
        user_name="tester",
        experiment_name=sys.argv[3],
        trainable=trainable,
        param_space={"i": tune.grid_search(list(range(int(sys.argv[5]))))},
        run_choice=sys.argv[2],
    )
    """
)


def start_grid(project: Path, runs: Path, choice: str, name: str, *, sleep=0.3, trials=6):
    args = [str(runs), choice, name, str(sleep), str(trials)]
    return subprocess.Popen(
        [sys.executable, "-u", "grid.py", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its Ray workers are killed with it (one process group)
    )


def experiment_path(project: Path, name: str) -> Path:
    full = radas.naming.full_experiment_name(name, cwd=str(project))
    return Path(radas.get_ray_results_dir("tester")) / full


def recorded_ends(path: Path) -> set[str]:
    try:
        records = json.loads((path / _ray_state.TRIAL_RECORDS_FILE).read_text())
    except (OSError, ValueError):
        return set()
    return {tid for tid, record in records.items() if _ray_state.ended_in_records(record)}


def kill_run(process: subprocess.Popen) -> None:
    """SIGKILL the run's process, then clean up what it started (its own process group)."""
    process.kill()
    process.communicate(timeout=60)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
@pytest.mark.integrity("survive")
def test_sigkill_after_trials_finished_restore_reruns_none_of_them(project):
    (project / "grid.py").write_text(GRID_SCRIPT)
    runs = project / "runs"
    runs.mkdir()
    path = experiment_path(project, "killed")

    first = start_grid(project, runs, "run", "killed")
    try:
        deadline = time.monotonic() + 180
        while len(recorded_ends(path)) < 2:
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "trials did not finish in time"
            time.sleep(0.05)
    finally:
        kill_run(first)
    ended = recorded_ends(path)
    ended_configs = {
        t.config["i"] for t in _ray_state.load_trial_states(path) if t.trial_id in ended
    }
    assert len(ended_configs) == len(ended) >= 2

    second = start_grid(project, runs, "restore", "killed")
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert f"{len(ended)} of 6 trials were already done" in output, output

    for i in ended_configs:  # recorded as ended before the kill: never started again
        assert len(list(runs.glob(f"start-{i}-*"))) == 1, f"trial i={i} ran again"
    tuner = radas.Tuner(path)
    df = tuner.get_dataframe()
    assert sorted(df["config/i"]) == list(range(6))
    assert set(df["status"]) == {"TERMINATED"}
    history = tuner.get_history_dataframe()
    assert len(history) == 6 * 3
    assert not history.duplicated(["trial_id", "training_iteration"]).any()
    assert sorted(history["value"]) == sorted(i * 10 + s for i in range(6) for s in range(3))
