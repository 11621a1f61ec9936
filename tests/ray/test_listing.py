"""``radas ls`` / ``radas.list_experiments`` on this machine (issue 13 §5): every stored
experiment of the user with a status that tells the truth; a run in progress is RUNNING, a
killed one STOPPED; damaged and foreign folders are listed, never a crash.

The killed run is a real run in a subprocess (its own process group), killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import radas
from radas import cli
from radas.results import tune_state
from radas.results.listing import local_results_dir

USER = "lister"

GRID_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, time
    from ray import tune
    import radas

    def trainable(config):
        for step in range(3):
            radas.report({"value": config["i"] * 10 + step})
            time.sleep(0.5 if config["i"] == 0 else 600)  # one trial ends, the rest hang

    radas.run_experiment_sync(
        user_name="lister",
        experiment_name="killed",
        trainable=trainable,
        param_space={"i": tune.grid_search([0, 1, 2, 3])},
        run_choice="run",
    )
    """
)


def listing(*args: str) -> dict:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["ls", "--user", USER, "--json", *args]) == 0
    return json.loads(printed.getvalue())


def entry(name: str) -> dict:
    [found] = [e for e in listing()["experiments"] if e["experiment"] == name]
    return found


def test_damaged_and_foreign_folders_are_listed_without_a_crash():
    root = Path(local_results_dir(USER))
    root.mkdir(parents=True, exist_ok=True)
    foreign = root / "someone_elses_folder"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not an experiment")
    damaged = root / "_p_damaged"
    damaged.mkdir()
    (damaged / "radas_experiment.json").write_text(
        json.dumps({"experiment_name": "damaged", "cwd": "/p"})
    )
    (damaged / "experiment_state-2026-01-01_00-00-00.json").write_text("{ truncated")
    (damaged / tune_state.TRIAL_RECORDS_FILE).write_text("\x00\x00 garbage")
    for own in (".archive", ".locks"):  # radas's own folders are not experiments
        (root / own / "_p_old").mkdir(parents=True, exist_ok=True)

    rows = {e["full_name"]: e for e in listing()["experiments"]}
    assert not {".archive", ".locks"} & set(rows)
    assert rows["someone_elses_folder"]["status"] == "FOREIGN (no radas or Ray Tune files)"
    assert rows["someone_elses_folder"]["total"] is None
    bad = rows["_p_damaged"]
    assert (bad["experiment"], bad["cwd"]) == ("damaged", "/p")
    assert bad["status"] == "DAMAGED (no trials readable: see problem)"
    assert "experiment_state-2026-01-01_00-00-00.json" in bad["problem"]

    frame = radas.list_experiments(user_name=USER)
    assert set(frame["full_name"]) >= {"someone_elses_folder", "_p_damaged"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["ls", "--user", USER]) == 0
    assert printed.getvalue().startswith(f"Experiments of {USER!r} (--user) stored on this machine")
    assert "FOREIGN" in printed.getvalue() and "DAMAGED" in printed.getvalue()
    assert f"problem of {damaged}: damaged: " in printed.getvalue()


@pytest.mark.slow
def test_a_run_is_listed_running_then_stopped_once_killed(project):
    (project / "grid.py").write_text(GRID_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, "-u", "grid.py"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its Ray processes are killed with it (one process group)
    )
    try:
        deadline = time.monotonic() + 240
        while True:  # until one trial ended and the other three are known
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the run did not get going in time"
            with contextlib.suppress(ValueError):
                running = entry("killed")
                if (running["finished"], running["total"]) == (1, 4):
                    break
            time.sleep(0.5)
        assert running["status"] == "RUNNING, 1 of 4 trials finished"
        assert running["cwd"] == str(project)
    finally:
        process.kill()
        process.communicate(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    stopped = entry("killed")
    assert stopped["status"] == "STOPPED, 1 of 4 trials finished"
    assert (stopped["finished"], stopped["errored"], stopped["total"]) == (1, 0, 4)
