"""``radas watch``'s data and drawing without Ray: a hand-written experiment folder read into
a ``Snapshot``, the lines of a pipe (each change once), the rich table, the exit statuses.
(tests/ray/test_watch.py watches real sweeps.)"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from radas.results import tune_state
from radas.storage import store
from radas.views import terminal
from radas.views.watched import Progress, Snapshot, TrialRow, Watched, read_snapshot


def write_experiment(folder: Path, trials: list[dict]) -> None:
    """An experiment folder as Tune leaves it: a state file with each trial's status, config
    and last result (an ERROR trial also gets its error.txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    trial_data = []
    for trial in trials:
        state = {
            "trial_id": trial["id"],
            "status": trial["status"],
            "config": trial["config"],
            "relative_logdir": f"t_{trial['id']}",
        }
        metadata: dict = {"last_result": trial.get("result", {})}
        if trial["status"] == "ERROR":
            (folder / f"t_{trial['id']}").mkdir()
            (folder / f"t_{trial['id']}" / "error.txt").write_text(
                "Traceback (most recent call last):\n  ...\nValueError: loss is nan\n"
            )
            metadata["error_filename"] = "error.txt"
        trial_data.append([json.dumps(state), json.dumps(metadata)])
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": trial_data, "stats": {"start_time": 1000.0}})
    )


TRIALS = [
    {
        "id": "a_00000",
        "status": "TERMINATED",
        "config": {"lr": 0.1, "seed": 0},
        "result": {"loss": 0.5, "training_iteration": 3, "pid": 42, "config": {"lr": 0.1}},
    },
    {
        "id": "a_00001",
        "status": "TERMINATED",
        "config": {"lr": 0.01, "seed": 0},
        "result": {"loss": 0.25, "training_iteration": 3, "acc": 0.9},
    },
    {"id": "a_00002", "status": "ERROR", "config": {"lr": 1.0, "seed": 0}},
]


def watched(folder: Path, metric: str | None = "loss", mode: str | None = "min") -> Watched:
    return Watched(
        "sweep",
        store.location(folder),
        None,
        "alice",
        logs_hint="radas logs --experiment sweep",
        metric_mode=(metric, mode),
    )


def test_a_stored_experiment_reads_into_rows_of_varying_config_and_last_values(tmp_path):
    write_experiment(tmp_path / "exp", TRIALS)
    snapshot = read_snapshot(watched(tmp_path / "exp"))
    assert not snapshot.running and snapshot.elapsed_s is None
    assert snapshot.status == "FINISHED, 1 of 3 trials errored"
    assert [row.config for row in snapshot.trials] == [{"lr": 0.1}, {"lr": 0.01}, {"lr": 1.0}]
    assert snapshot.trials[0].metrics == {"loss": 0.5, "training_iteration": 3}  # no pid
    assert snapshot.best_trial == "a_00001"
    assert snapshot.progress == Progress(finished=2, errored=1)
    assert snapshot.trials[2].error == "ValueError: loss is nan"
    assert snapshot.trials[2].traceback_path.endswith("t_a_00002/error.txt")
    assert snapshot.metric_columns == ["loss", "training_iteration", "acc"]
    assert snapshot.exit_status() == 0
    assert read_snapshot(watched(tmp_path / "exp", metric=None)).best_trial is None
    assert read_snapshot(watched(tmp_path / "exp", mode="max")).best_trial == "a_00000"


def test_a_pipe_gets_a_line_per_change_and_each_error_once(tmp_path):
    folder = tmp_path / "exp"
    running = [dict(TRIALS[0]), {**TRIALS[1], "status": "RUNNING", "result": {}}]
    write_experiment(folder, running)
    out = io.StringIO()
    view = terminal._LineView(out)
    first = dataclasses.replace(read_snapshot(watched(folder)), running=True)
    view.show(first, watched(folder))
    view.show(first, watched(folder))  # nothing changed: nothing said
    assert out.getvalue().splitlines() == [
        "sweep: 1 of 2 trials finished, 0 running, 0 pending, 0 errored, 1 stopped; best loss=0.5",
        "trial a_00000 (lr=0.1): TERMINATED",
        "trial a_00001 (lr=0.01): STOPPED",
    ]
    write_experiment(folder, TRIALS)
    out.truncate(0)
    out.seek(0)
    last = read_snapshot(watched(folder))
    view.show(last, watched(folder))
    view.show(last, watched(folder))
    view.end(last)
    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        "sweep: 2 of 3 trials finished, 0 running, 0 pending, 1 errored; best loss=0.25",
        "trial a_00001 (lr=0.01): STOPPED -> TERMINATED",
        "trial a_00002 (lr=1): ERROR",
    ]
    assert lines[3] == (
        "trial a_00002 (lr=1) errored: ValueError: loss is nan (traceback in "
        f"{folder}/t_a_00002/error.txt; radas logs --experiment sweep --trial a_00002)"
    )
    assert [line.split() for line in lines[4:8]] == [
        ["trial", "status", "iter", "lr", "loss", "acc"],
        ["a_00000", "TERMINATED", "3", "0.1", "0.5", "-"],
        ["a_00001", "*", "TERMINATED", "3", "0.01", "0.25", "0.9"],
        ["a_00002", "ERROR", "-", "1", "-", "-"],
    ]
    assert lines[8:] == [
        "* best by loss (min)",
        f"sweep: FINISHED, 1 of 3 trials errored (stored at {folder})",
    ]


def test_the_rich_table_shows_the_values_and_marks_the_best(tmp_path):
    write_experiment(tmp_path / "exp", TRIALS)
    snapshot = read_snapshot(watched(tmp_path / "exp"))
    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    console.print(terminal.view(snapshot))
    text = console.export_text(clear=False)
    assert text.splitlines()[0].startswith("sweep: 2 of 3 trials finished")
    best = next(line for line in text.splitlines() if "a_00001" in line)
    assert "a_00001 *" in best and "0.25" in best and "0.9" in best
    assert "* best by loss (min)" in text
    assert "\x1b[1m" in console.export_text(styles=True)  # bold: the best row, the header


def test_exit_statuses_are_those_of_radas_logs_follow():
    row = TrialRow("t", "ERROR", {}, {})
    base = Snapshot("x", "/p", False, "FINISHED", [], Progress(finished=2))
    assert base.exit_status() == 0
    assert dataclasses.replace(base, progress=Progress(finished=1, other=1)).exit_status() == 0
    assert dataclasses.replace(base, failed=True).exit_status() == 1
    every = dataclasses.replace(base, trials=[row], progress=Progress(errored=1))
    assert every.exit_status() == 1
    assert dataclasses.replace(base, problems=["damaged"]).exit_status() == 1  # nothing read
    assert dataclasses.replace(base, progress=Progress()).exit_status() == 0  # empty


def test_no_trials_yet_is_a_table_saying_so():
    snapshot = Snapshot("x", "/p", True, "RUNNING", [], Progress(), elapsed_s=75)
    assert terminal.progress_line(snapshot) == (
        "x: 0 of 0 trials finished, 0 running, 0 pending, 0 errored; no trials reported yet; "
        "0:01:15 elapsed"
    )
    assert terminal.plain_table(snapshot).splitlines() == [
        "trial             status",
        "(no reports yet)",
    ]


class ClosedPipe(io.StringIO):
    """A pipe whose reader went away (``radas watch NAME | head -1``)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_goes_away_ends_the_watching_quietly(tmp_path):
    write_experiment(tmp_path / "exp", TRIALS)
    assert terminal.watch(watched(tmp_path / "exp"), out=ClosedPipe()) == 141


def test_a_table_taller_than_the_screen_keeps_the_trials_to_see_first():
    statuses = ["TERMINATED"] * 6 + ["ERROR", "RUNNING", "PENDING", "PENDING"]
    rows = [TrialRow(f"t{i}", status, {}, {}) for i, status in enumerate(statuses)]
    snapshot = Snapshot(
        "x", "/p", True, "RUNNING", rows, Progress(), metric="loss", mode="min", best_trial="t0"
    )
    kept = [row.trial_id for row in terminal.shown_first(snapshot, 4)]
    assert kept == ["t0", "t5", "t6", "t7"]  # best, last finished, errored, running
    console = Console(file=io.StringIO(), width=100, record=True)
    console.print(terminal.trial_table(snapshot, 4))
    text = " ".join(console.export_text().split())  # the caption wraps to the table's width
    assert "* best by loss (min) 6 more trials: all in radas watch | cat" in text
    assert terminal.shown_first(snapshot, None) == rows


def test_an_error_is_read_before_tunes_snapshot_names_its_file(tmp_path):
    folder = tmp_path / "exp"
    write_experiment(folder, TRIALS)
    state_file = next(folder.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    for pair in state["trial_data"]:  # Tune's snapshot without the error file yet
        metadata = json.loads(pair[1])
        metadata.pop("error_filename", None)
        pair[1] = json.dumps(metadata)
    state_file.write_text(json.dumps(state))
    row = read_snapshot(watched(folder)).trials[2]
    assert row.error == "ValueError: loss is nan"
    assert row.traceback_path == str(folder / "t_a_00002" / "error.txt")


@pytest.mark.integrity("survive")
def test_an_error_radas_recorded_before_tunes_snapshot_caught_up_keeps_its_message(tmp_path):
    """Under load Tune's last snapshot can still say RUNNING (no error file named) for a trial
    radas recorded as ERROR: the status came from the records and the error was None in the
    DataFrame. Tune writes error.txt before radas records the end: it is read."""
    folder = tmp_path / "exp"
    running = [
        dict(trial, status="RUNNING") if trial["id"] == "a_00002" else trial for trial in TRIALS
    ]
    write_experiment(folder, running)
    (folder / "t_a_00002").mkdir()
    (folder / "t_a_00002" / "error.txt").write_text("Traceback ...\nSystemExit: bye now\n")
    records: dict = {
        trial["id"]: {
            "status": "ERROR" if trial["id"] == "a_00002" else trial["status"],
            "last_result": trial.get("result", {}),
            "config": trial["config"],
        }
        for trial in TRIALS
    }
    records[tune_state.RECORDS_FORMAT_KEY] = {"version": tune_state.RECORDS_FORMAT}
    tune_state.write_trial_records(folder, records)
    trial = tune_state.load_trial_states(folder, running=False)[2]
    assert trial.status == "ERROR"
    assert tune_state.error_summary(folder, trial) == "SystemExit: bye now"
    assert read_snapshot(watched(folder)).trials[2].error == "SystemExit: bye now"
