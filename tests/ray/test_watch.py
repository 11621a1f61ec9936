"""``radas watch NAME``: a running experiment followed in a terminal (rich's live table) or a
pipe (a line per change) until it ends, with the exit status of ``radas logs --follow``.

The experiments are real sweeps of this session's in-process Ray; ``radas watch`` runs as a
real command in a subprocess, its stdout a pipe, read line by line while the sweep runs. The
trials of the running sweep hold until the test writes a file, so the test knows what the
lines must say while it waits.
"""

from __future__ import annotations

import io
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ray import tune
from rich.console import Console

import radas
from radas import cli
from radas.core.naming import full_experiment_name
from radas.storage import locks
from radas.views import terminal
from radas.views.watched import find_experiment, read_snapshot
from support.waiting import in_thread, wait_for

RADAS = str(Path(sys.executable).with_name("radas"))
BY_LOSS = {"tune_config": tune.TuneConfig(metric="loss", mode="min")}


def held(config):
    """Trial 0 reports and ends; trial 1 waits for the release file, then raises; trial 2
    waits for it, then reports a better loss than trial 0 and ends."""
    i = config["i"]
    if i == 0:
        for loss in (1.0, 0.5):
            radas.report({"loss": loss})
        return
    deadline = time.monotonic() + 300
    while not os.path.exists(config["release"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    if i == 1:
        raise ValueError("boom in trial 1")
    radas.report({"loss": 0.25})


def ends(config):
    """Ends at once: reports loss = ``x`` (or raises when ``fail``)."""
    if config["fail"]:
        raise ValueError(f"boom {config['x']}")
    radas.report({"loss": config["x"], "acc": 1 - config["x"]})


class Lines:
    """The stdout of ``radas watch`` in a subprocess, read line by line as it comes."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [RADAS, "watch", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RADAS_USER": "tester"},  # conftest set RADAS_HOME
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))

    def seen(self, text: str) -> bool:
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return any(text in line for line in self.lines)

    def wait_for(self, text: str) -> None:
        wait_for(lambda: self.seen(text), what=f"radas watch to print {text!r}")

    def end(self, timeout_s: float = 120) -> tuple[int, str]:
        returncode = self.process.wait(timeout=timeout_s)
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        self._reader.join(timeout=30)  # the pipe is closed: every line is read
        self.seen("")
        return returncode, stderr


@pytest.mark.slow
def test_a_running_experiment_in_a_pipe_shows_progress_errors_once_and_ends_0(project):
    from radas.backends.local import ensure_local_ray

    ensure_local_ray({})  # Ray's servers end with the thread that started them: not the sweep's
    release = project / "release"
    thread, box = in_thread(
        radas.run_experiment_sync,
        user_name="tester",
        experiment_name="watched",
        trainable=held,
        param_space={"i": tune.grid_search([0, 1, 2]), "release": str(release)},
        cpu_per_trial=0.5,
        run_choice="run",
        dos=["run"],
        tuner_init_kwargs=BY_LOSS,
    )
    try:
        path = Path(radas.get_ray_results_dir("tester")) / full_experiment_name(
            "watched", cwd=str(project)
        )
        wait_for(path.joinpath("radas_trials.json").exists, what="the sweep to start")
        watch = Lines("watched", "--every", "0.2", cwd=project)
        watch.wait_for("1 of 3 trials finished, 2 running, 0 pending, 0 errored; best loss=0.5")
        assert watch.process.poll() is None  # still watching: the experiment runs
        assert any(line.endswith(": RUNNING -> TERMINATED") for line in watch.lines) or any(
            line.endswith(": TERMINATED") for line in watch.lines
        ), watch.lines
        assert not any("\x1b[" in line for line in watch.lines)  # no escape codes in a pipe

        interrupted = Lines("watched", cwd=project)  # Ctrl-C: watching ends, the run does not
        interrupted.wait_for("trials finished")
        interrupted.process.send_signal(signal.SIGINT)
        code, _ = interrupted.end()
        assert code == 130
        assert interrupted.seen("stopped watching: watched keeps running")
        assert thread.is_alive()

        release.touch()
        code, stderr = watch.end()
    finally:
        release.touch()
        thread.join(timeout=180)
    assert "results" in box, box
    assert code == 0, (watch.lines, stderr)
    errors = [line for line in watch.lines if "errored: ValueError: boom in trial 1" in line]
    assert len(errors) == 1, watch.lines  # once, though every refresh reads it again
    [error] = errors
    assert "(i=1)" in error and "error.txt" in error
    assert "radas logs --experiment watched --trial " in error
    assert watch.lines[-1] == f"watched: FINISHED, 1 of 3 trials errored (stored at {path})"
    header = next(line for line in watch.lines if line.startswith("trial  "))  # the final table
    assert header.split() == ["trial", "status", "iter", "i", "loss"]
    [best] = [line for line in watch.lines if line.split()[-1:] == ["0.25"]]
    assert best.split()[1:3] == ["*", "TERMINATED"]  # the best by the stored metric, marked
    assert "* best by loss (min)" in watch.lines


@pytest.fixture(scope="module")
def ended(tmp_path_factory) -> Path:
    """A finished experiment of 3 trials (one errored) with metric loss / mode min, run
    from its own folder; returns the folder."""
    folder = tmp_path_factory.mktemp("ended")
    before = os.getcwd()
    os.chdir(folder)
    try:
        radas.run_experiment_sync(
            user_name="tester",
            experiment_name="ended",
            trainable=ends,
            param_space={
                "x": tune.grid_search([0.5, 0.25, 0.75]),
                "fail": tune.sample_from(lambda spec: spec.config.x == 0.75),
            },
            run_choice="run",
            dos=["run"],
            tuner_init_kwargs=BY_LOSS,
        )
    finally:
        os.chdir(before)
    return folder


@pytest.mark.slow
def test_the_live_table_shows_metrics_and_marks_the_best_trial(ended):
    watched = find_experiment("ended", run_with="local", directory=str(ended), user="tester")
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=160, record=True)
    assert terminal.watch(watched, console=console) == 0
    text = console.export_text()
    assert "ended: 2 of 3 trials finished, 0 running, 0 pending, 1 errored; best loss=0.25" in text
    header = next(line for line in text.splitlines() if "trial" in line and "status" in line)
    cells = [cell.strip() for cell in header.strip().strip("┃").split("┃")]
    assert cells == ["trial", "status", "iter", "x", "fail", "loss", "acc"]
    best = next(line for line in text.splitlines() if " * " in line)
    assert "TERMINATED" in best and "0.25" in best and "0.75" in best  # loss and acc
    assert "* best by loss (min)" in text
    assert "errored: ValueError: boom 0.75" in text
    assert f"ended: FINISHED, 1 of 3 trials errored (stored at {watched.path})" in text
    assert "\x1b[" in output.getvalue()  # drawn for a terminal

    snapshot = read_snapshot(watched)
    assert snapshot.best_trial is not None and not snapshot.running
    assert [row.config for row in snapshot.trials] == [
        {"x": 0.5, "fail": False},
        {"x": 0.25, "fail": False},
        {"x": 0.75, "fail": True},
    ]


@pytest.mark.slow
def test_an_ended_experiment_watched_in_a_pipe_prints_its_table_and_ends_at_once(ended):
    watch = Lines("ended", "--dir", str(ended), cwd=ended.parent)
    code, stderr = watch.end()
    assert code == 0, stderr
    assert watch.lines[0] == (
        "ended: 2 of 3 trials finished, 0 running, 0 pending, 1 errored; best loss=0.25"
    )
    assert len([line for line in watch.lines if "errored: ValueError: boom 0.75" in line]) == 1
    assert f"--dir {ended}" in next(line for line in watch.lines if "radas logs" in line)
    assert watch.lines[-1].startswith("ended: FINISHED, 1 of 3 trials errored (stored at ")


@pytest.mark.integrity("error")
@pytest.mark.slow
def test_every_trial_errored_is_exit_status_1(project):
    radas.run_experiment_sync(
        user_name="tester",
        experiment_name="all-errored",
        trainable=ends,
        param_space={"x": tune.grid_search([0.1, 0.2]), "fail": True},
        run_choice="run",
        dos=["run"],
    )
    watch = Lines("all-errored", cwd=project)
    code, stderr = watch.end()
    assert code == 1, (watch.lines, stderr)
    assert watch.lines[-1].startswith("all-errored: FINISHED, 2 of 2 trials errored")
    assert len([line for line in watch.lines if "errored: ValueError: boom" in line]) == 2
    assert "best" not in watch.lines[0]  # no metric, nothing marked


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.integrity("error")
@pytest.mark.slow
def test_a_name_not_stored_says_where_radas_looked_and_how_to_list(project, capsys):
    result = subprocess.run(
        [RADAS, "watch", "never-run", "--user", "bob"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    root = Path(radas.get_ray_results_dir("bob"))
    where = root / full_experiment_name("never-run", cwd=str(project))
    assert f"radas looked in {where}" in result.stderr
    assert "`radas ls --user bob` lists the experiments of 'bob'" in result.stderr

    for argv, error in [  # the command in this process: each error as the CLI prints it
        (["watch", "x", "--dir", str(project / "nowhere")], "--dir"),
        (["watch", "x", "--every", "0"], "--every 0"),
        (["watch", str(project)], f"No stored experiment at {project}. `radas ls"),
        (["watch", "x", "--run-with", "cluster:no-such"], "No cluster named 'no-such'"),
    ]:
        assert cli.main(argv) == 1
        shown = capsys.readouterr()
        assert shown.out == "" and error in shown.err, shown.err


def copy_of(ended: Path, target: Path) -> Path:
    source = Path(radas.get_ray_results_dir("tester")) / full_experiment_name(
        "ended", cwd=str(ended)
    )
    shutil.copytree(source, target)
    return target


@pytest.mark.integrity("survive")
@pytest.mark.slow
def test_a_damaged_folder_is_named_and_what_can_be_read_is_shown(ended, tmp_path):
    folder = copy_of(ended, tmp_path / "damaged")
    for state in folder.glob("experiment_state-*.json"):
        state.write_text("{ truncated")
    watch = Lines(str(folder), cwd=tmp_path)  # named by its path
    code, stderr = watch.end()
    assert code == 0, (watch.lines, stderr)
    problems = [line for line in watch.lines if line.startswith("problem: ")]
    assert problems and "experiment_state" in problems[0] and "damaged" in problems[0]
    assert len(problems) == len(set(problems))
    assert watch.lines[0].startswith("ended: 2 of 3 trials finished")  # from radas's records

    for part in (folder / "radas_trials.json", folder / "radas_history"):
        shutil.rmtree(part) if part.is_dir() else part.unlink()
    watch = Lines(str(folder), cwd=tmp_path)
    code, _ = watch.end()
    assert code == 1  # nothing readable
    assert any("cannot be read" in line for line in watch.lines if line.startswith("problem: "))
    assert "(no reports yet)" in watch.lines


@pytest.mark.integrity("survive")
def test_an_experiment_with_no_reports_yet_shows_its_trials_as_far_as_known(tmp_path):
    folder = tmp_path / "results" / "tester" / "_no_reports"
    folder.mkdir(parents=True)
    states = [
        {"trial_id": f"abc_0000{i}", "status": "PENDING", "config": {"lr": lr, "seed": 1}}
        for i, lr in enumerate((0.1, 0.01))
    ]
    trial_data = [[json.dumps(state), json.dumps({})] for state in states]
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": trial_data})
    )
    output = io.StringIO()
    with locks.experiment_lock(str(folder.parent), folder.name, "no-reports"):
        watched = find_experiment(str(folder), run_with="local", directory=".", user="tester")
        thread, box = in_thread(terminal.watch, watched, every_s=0.1, out=output)
        wait_for(
            lambda: (
                "trial abc_00001 (lr=0.01): RUNNING" in output.getvalue()
                or ("trial abc_00001 (lr=0.01): PENDING" in output.getvalue())
            )
        )
        assert thread.is_alive()  # the lock is held: it runs
    thread.join(timeout=60)
    assert box.get("results") == 0, box
    lines = output.getvalue().splitlines()
    assert lines[0] == "_no_reports: 0 of 2 trials finished, 0 running, 2 pending, 0 errored"
    assert lines[-2].split() == ["abc_00001", "PENDING", "0.01"]  # no metric columns
    assert lines[-1].startswith("_no_reports: STOPPED, 0 of 2 trials finished")

    empty = tmp_path / "results" / "tester" / "_starting"
    empty.mkdir()
    (empty / "radas_experiment.json").write_text(json.dumps({"experiment_name": "starting"}))
    output = io.StringIO()
    with locks.experiment_lock(str(empty.parent), empty.name, "starting"):
        watched = find_experiment(str(empty), run_with="local", directory=".", user="tester")
        thread, box = in_thread(terminal.watch, watched, every_s=0.1, out=output)
        wait_for(lambda: "no trials reported yet" in output.getvalue())
    thread.join(timeout=60)
    assert box.get("results") == 0, box
    assert output.getvalue().splitlines()[-1].startswith("starting: EMPTY (no trials stored)")


@pytest.mark.cluster
@pytest.mark.slow
def test_a_cluster_experiment_is_watched_with_run_with(cluster, project):
    radas.run_experiment_sync(
        user_name="tester",
        experiment_name="on-cluster",
        trainable=ends,
        param_space={"x": tune.grid_search([0.3, 0.2]), "fail": False},
        run_with="cluster:testcluster",
        run_choice="run",
        dos=["run"],
        tuner_init_kwargs=BY_LOSS,
    )
    watch = Lines("on-cluster", "--run-with", "cluster:testcluster", cwd=project)
    code, stderr = watch.end()
    assert code == 0, (watch.lines, stderr)
    assert watch.lines[0] == (
        "on-cluster: 2 of 2 trials finished, 0 running, 0 pending, 0 errored; best loss=0.2"
    )
    assert watch.lines[-1].startswith("on-cluster: FINISHED (stored at ")
