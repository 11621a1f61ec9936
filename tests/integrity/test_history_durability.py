"""Issue 23: the history is as durable as the trials' states.

After a SIGKILL of the driver at any moment the history holds every report up to the latest
state of each trial that a restore continues from (the recorder writes its buffered rows
before Tune's experiment state, which names those states, is stored); a value plain pickle
cannot store never ends a sweep; a history folder removed during a run is made again, and a
history with rows missing, or a part without the key columns, is said, not silently short.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest
from ray import tune

import radas
from radas.errors import RadasWarning
from radas.results.history import load_history
from radas.storage import history_parts as parts_module
from radas.storage.history_parts import (
    HISTORY_DIR,
    history_parts,
    last_rows_from_history,
    rows_to_table,
    table_to_frame,
)
from radas.tune import history
from radas.tune.history import HistoryRecorder
from support.fault_tools import radas_warnings
from support.waiting import in_thread, wait_for

EPOCHS = 40
EPOCH_S = 0.1
TRIALS = 2


def durable(config):
    """EPOCHS short epochs, the state saved with every report. Leaves a file per start (with
    the epoch it starts from)."""
    marks = Path(config["marks"])
    i = config["i"]
    state = radas.load_state() or {"epoch": 0}
    (marks / f"start-{i}-{state['epoch'] + 1}-{uuid.uuid4().hex}").touch()
    for epoch in range(state["epoch"] + 1, EPOCHS + 1):
        time.sleep(EPOCH_S)
        state = {"epoch": epoch}
        radas.report({"epoch": epoch}, state=state)


DRIVER_SCRIPT = """
import sys
sys.path[:0] = [sys.argv[3], sys.argv[3] + "/.."]  # this module's folder (the trainable), tests/
from ray import tune
import radas
from test_history_durability import TRIALS, durable

radas.run_experiment_sync(
    user_name="tester", experiment_name="durable", trainable=durable,
    param_space={"marks": sys.argv[1], "i": tune.grid_search(list(range(TRIALS)))},
    run_choice=sys.argv[2],
    tuner_init_kwargs={  # every state kept, or radas's default (the latest 2): see the test
        "run_config": tune.RunConfig(checkpoint_config=tune.CheckpointConfig(num_to_keep=10**6))
    } if sys.argv[4] == "every" else {},
)
"""


def start_driver(project: Path, marks: Path, choice: str, kept: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "driver.py", str(marks), choice, str(Path(__file__).parent), kept],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its Ray is killed with it (one process group)
        env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0.2"},  # Tune's state stored often
    )


def kill_driver(driver: subprocess.Popen) -> None:
    driver.kill()
    driver.communicate(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(driver.pid, signal.SIGKILL)


def starts(marks: Path) -> set[str]:
    return {path.name for path in marks.glob("start-*")}


def history_by_trial(path: Path) -> dict[int, list[int]]:
    """Each trial's (config/i) iterations in the history, as loaded (warnings ignored)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RadasWarning)
        history = load_history(path)
    if history.empty:
        return {}
    return {int(i): rows["training_iteration"].tolist() for i, rows in history.groupby("config/i")}


@pytest.mark.slow  # ~60-90 s each: a driver process per kill
@pytest.mark.parametrize("kept", ["every", "default"])
def test_history_holds_every_report_up_to_the_state_after_random_kills(project, kept):
    """Tune stores its experiment state every 0.2 s here (so the state a restore continues
    from is as new as it gets: the sharpest test of the history being ahead of it). With every
    state kept, and with radas's default (the latest 2): then Tune deletes older state folders
    itself, and a kill between that and its next stored snapshot leaves a snapshot naming
    folders that are gone; the restore continues each trial from its newest complete state
    with the iteration count it had there (``restore._continue_trials_whose_state_is_gone``;
    seed 3589802522 hit it: a trial ERROR, "Could not recover from checkpoint", and one
    restarted at iteration 21 from scratch, 61 rows)."""
    seed = int(os.environ.get("RADAS_TEST_SEED", random.randrange(2**32)))
    chance = random.Random(seed)
    marks = project / "marks"
    marks.mkdir()
    (project / "driver.py").write_text(DRIVER_SCRIPT)
    path = Path(radas.get_ray_results_dir("tester")) / radas.core.naming.full_experiment_name(
        "durable", cwd=str(project)
    )
    runs, killed, gaps, continued, output = 5, 0, set(), [], ""
    at_kill: dict[int, list[int]] = {}
    for kill in range(runs):
        before = starts(marks)
        driver = start_driver(project, marks, "run" if kill == 0 else "restore", kept)
        try:
            wait_for(
                lambda: starts(marks) - before or driver.poll() is not None,  # noqa: B023
                what="a trial to start",
            )
            for name in starts(marks) - before:  # where each trial continued from
                i, start = int(name.split("-")[1]), int(name.split("-")[2])
                continued.append((kill, i, start, len(at_kill.get(i, []))))
                missing = set(range(1, start)) - set(at_kill.get(i, []))
                gaps |= {(i, iteration) for iteration in missing}
            if kill == runs - 1 or driver.poll() is not None:  # the last run, or nothing left
                output, _ = driver.communicate(timeout=300)
                assert driver.returncode == 0, output
                break
            time.sleep(chance.uniform(0.0, 1.0))  # the random moment of the kill
        finally:
            if driver.returncode is None:
                kill_driver(driver)
                killed += 1
        at_kill = history_by_trial(path)

    message = f"seed {seed} (rerun with RADAS_TEST_SEED={seed}); (run, trial, start, rows)"
    print(f"reports lost after {killed} random kills: {len(gaps)} of {TRIALS * EPOCHS}")
    assert not gaps, f"{message}: {continued}; lost (trial, iteration): {sorted(gaps)}"
    final = history_by_trial(path)
    if final != {i: list(range(1, EPOCHS + 1)) for i in range(TRIALS)}:
        for error in path.glob("*/error.txt"):  # (pytest shortens the message below)
            print(error, error.read_text()[-3000:])
    assert final == {i: list(range(1, EPOCHS + 1)) for i in range(TRIALS)}, (
        message,
        continued,
        {i: (len(rows), rows[:3], rows[-3:]) for i, rows in final.items()},
        output[-3000:],
    )
    rows = load_history(path)
    assert (rows["epoch"] == rows["training_iteration"]).all()  # each row the state's epoch
    # a trial killed after its history had a few epochs continued from a state, not from 1
    assert all(start > 1 for _, _, start, rows in continued if rows >= 8), (message, continued)


# --- values plain pickle cannot store ------------------------------------------------------


def reports_a_lambda(config):
    """Trial 1 reports a lambda; trial 3 fails once at its last step (the restore re-runs it)."""
    failed_once = Path(config["marks"]) / "failed"
    for step in range(1, 4):
        metrics = {"score": config["i"] * 10 + step}
        if config["i"] == 1:
            metrics["fn"] = lambda x, step=step: x + step
        if config["i"] == 3 and step == 3 and not failed_once.exists():
            failed_once.touch()
            raise RuntimeError("fails once")
        radas.report(metrics)


@pytest.mark.slow  # two local sweeps
def test_a_lambda_in_a_report_or_the_config_ends_nothing_and_restore_works(project):
    kwargs = dict(
        user_name="tester",
        experiment_name="lambdas",
        trainable=reports_a_lambda,
        param_space={"i": tune.grid_search([0, 1, 2, 3]), "f": lambda: 1, "marks": project},
    )
    first = radas.run_experiment_sync(**kwargs, run_choice="run")
    assert first["outcome"].finished_trials == 3 and first["outcome"].errored_trials == 1
    assert sorted(first["df"]["status"]) == ["ERROR"] + ["TERMINATED"] * 3
    restored = radas.run_experiment_sync(**kwargs, run_choice="restore")  # re-runs trial 3
    assert restored["outcome"].errored_trials == 0
    assert set(restored["df"]["status"]) == {"TERMINATED"}

    history = load_history(restored["tuner"].experiment_path)
    assert sorted(history["score"]) == sorted(i * 10 + s for i in range(4) for s in (1, 2, 3))
    functions = history.loc[history["config/i"] == 1, "fn"].tolist()
    assert [fn(100) for fn in functions] == [101, 102, 103]  # the lambdas themselves, back
    assert history.loc[history["config/i"] != 1, "fn"].isna().all()
    assert {f() for f in history["config/f"]} == {1}


def test_a_value_even_cloudpickle_refuses_is_stored_as_a_readable_placeholder():
    placeholders: set[str] = set()
    table = rows_to_table(
        [{"trial_id": "t", "training_iteration": 1, "lock": threading.Lock(), "n": 1}],
        placeholders,
    )
    assert placeholders == {"lock"}
    (row,) = table_to_frame(table).to_dict("records")
    assert row["lock"].startswith("<radas: not stored, lock cannot be pickled: <unlocked")
    assert row["n"] == 1


def test_the_recorder_says_once_per_column_that_it_stored_a_placeholder(tmp_path):
    recorder = HistoryRecorder()
    recorder._target = (pyarrow.fs.LocalFileSystem(), str(tmp_path))
    (tmp_path / HISTORY_DIR).mkdir()
    with radas_warnings() as said:
        for k in (1, 2):
            recorder._rows = [{"trial_id": "t", "training_iteration": k, "lock": threading.Lock()}]
            recorder.flush()
    assert said == [
        "A reported value of 'lock' cannot be pickled, even by cloudpickle: the history stores "
        "a placeholder with its repr instead (report plain data, e.g. numbers, strings, lists, "
        "to keep the value)."
    ]
    rows = parts_module.load_stored_history(tmp_path, set())
    assert rows["lock"].str.startswith("<radas: not stored, lock cannot be pickled").all()


def test_a_value_that_cannot_be_rebuilt_here_reads_as_a_placeholder_with_a_warning(tmp_path):
    missing_class = b"\x80\x02cnot_a_module_of_radas_tests\nThing\n)\x81."  # its module is gone
    table = rows_to_table(
        [
            {"trial_id": "t", "training_iteration": 1, "thing": {1, 2}},
            {"trial_id": "t", "training_iteration": 2, "thing": {3}},
        ]
    )
    column = pa.array([missing_class, table.column("thing")[1].as_py()], type=pa.binary())
    table = table.set_column(table.schema.get_field_index("thing"), "thing", column)
    (tmp_path / HISTORY_DIR).mkdir()
    pq.write_table(table, tmp_path / HISTORY_DIR / f"{1:020d}-0123abcd-{0:06d}.parquet")
    with radas_warnings() as said:  # (also: no experiment state in this bare folder)
        history = load_history(tmp_path)
    assert any("'thing' holds values that cannot be rebuilt" in m for m in said), said
    assert history["thing"][0].startswith("<radas: not stored")
    assert history["thing"][1] == {3}


# --- a history folder removed, or a part that is not radas's ------------------------------


def holds_after_three(config):
    marks = Path(config["marks"])
    for step in range(1, 7):
        radas.report({"value": step}, state=step)  # (a state: the report is sent at once)
        if step == 3:
            (marks / f"held-{config['i']}").touch()
            deadline = time.monotonic() + 300  # (the tests' helpers are not on the workers' path)
            while not (marks / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)


@pytest.mark.slow  # a local sweep
def test_history_folder_removed_during_a_run_is_made_again_and_the_loss_is_said(project):
    marks = project / "marks"
    marks.mkdir()
    path = Path(radas.get_ray_results_dir("tester")) / radas.core.naming.full_experiment_name(
        "removed", cwd=str(project)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread, box = in_thread(
            radas.run_experiment_sync,
            user_name="tester",
            experiment_name="removed",
            trainable=holds_after_three,
            param_space={"marks": str(marks), "i": tune.grid_search([0, 1])},
            run_choice="run",
        )
        try:
            wait_for(lambda: len(list(marks.glob("held-*"))) == 2, what="both trials to hold")
            wait_for(
                lambda: history_by_trial(path) == {0: [1, 2, 3], 1: [1, 2, 3]},
                what="the first rows to be written",
            )
            shutil.rmtree(path / HISTORY_DIR)  # as `rm -r` would, while the sweep runs
        finally:
            (marks / "go").touch()
            thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    results = box["results"]
    assert results["outcome"].finished_trials == 2
    said = [str(w.message) for w in caught if issubclass(w.category, RadasWarning)]
    assert any("was removed while the experiment ran: it is made again" in m for m in said), said

    with pytest.warns(RadasWarning, match=r"lacks 6 earlier result\(s\) of 2 trial\(s\)"):
        history = load_history(path)
    assert history.groupby("config/i")["training_iteration"].apply(list).to_dict() == {
        0: [4, 5, 6],
        1: [4, 5, 6],
    }


@pytest.mark.parametrize("without", ["trial_id", "training_iteration"])
def test_a_part_without_the_key_columns_is_skipped_with_a_warning_naming_it(tmp_path, without):
    directory = tmp_path / HISTORY_DIR
    directory.mkdir()
    good = [{"trial_id": "t", "training_iteration": n, "value": n} for n in (1, 2)]
    pq.write_table(rows_to_table(good), directory / f"{1:020d}-0123abcd-{0:06d}.parquet")
    stranger = directory / f"{2:020d}-0123abcd-{1:06d}.parquet"
    other = [{"trial_id": "t", "training_iteration": 3, "value": 99}]
    pq.write_table(rows_to_table(other).drop_columns([without]), stranger)
    for read in (load_history, last_rows_from_history):  # analysis, and restore's table
        with radas_warnings() as said:  # (also: no experiment state in this bare folder)
            rows = read(tmp_path)
        assert {m for m in said if str(stranger) in m} == {  # (read twice without a state)
            f"History file {stranger} has no {without} column: it is not a radas history part, "
            "so its rows are left out of the history (move it out of the folder to silence "
            "this)."
        }
        values = rows["value"].tolist() if read is load_history else [r["value"] for r in rows]
        assert values == ([1, 2] if read is load_history else [2])


# --- many small parts: merged as the run goes ----------------------------------------------


class DeletesNothing(pyarrow.fs.LocalFileSystem):
    """The local filesystem, except that removing a file does nothing: as if the writer
    were killed right after a merged part replaced the newest small one."""

    def delete_file(self, path: str) -> None:
        pass


def write_small_parts(path: Path, filesystem, parts: int) -> None:
    """``parts`` flushes of one row each: two trials, trial "b" continuing from its state at
    iteration 5 each time it reaches 9 (its rows 6.. are reported again), a pickled column."""
    recorder = HistoryRecorder()
    recorder._target = (filesystem, str(path))
    (path / HISTORY_DIR).mkdir(parents=True)
    (path / "experiment_state-2000-01-01_00-00-00.json").write_text('{"trial_data": []}')
    iterations = {"a": 0, "b": 0}
    for n in range(parts):
        trial = "ab"[n % 2]
        iterations[trial] = 5 if trial == "b" and iterations[trial] == 9 else iterations[trial]
        iterations[trial] += 1
        k = iterations[trial]
        recorder._rows = [
            {"trial_id": trial, "training_iteration": k, "n": n, "tags": {n}, "x": k / 2 or 0}
        ]
        recorder.flush()


@pytest.mark.parametrize("killed_before_removing", [False, True])
def test_small_parts_are_merged_and_read_as_written(tmp_path, killed_before_removing):
    expected_path, path = tmp_path / "parts-kept", tmp_path / "merged"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(history, "MERGE_PARTS", 10**9)  # never merged: the reference
        write_small_parts(expected_path, pyarrow.fs.LocalFileSystem(), 150)
    filesystem = DeletesNothing() if killed_before_removing else pyarrow.fs.LocalFileSystem()
    write_small_parts(path, filesystem, 150)

    merged_parts = len(history_parts(path))
    assert merged_parts == (150 if killed_before_removing else 150 - 2 * 63)
    expected = load_history(expected_path)
    got = load_history(path)
    assert got.equals(expected), (got, expected)
    by_trial = got.groupby("trial_id")["training_iteration"].apply(list).to_dict()
    assert by_trial == {"a": list(range(1, 76)), "b": list(range(1, 8))}  # b: its latest attempt
    assert got.loc[got["trial_id"] == "b", "n"].max() == 149
    assert set(got["tags"].map(len)) == {1}  # the pickled sets, back


@pytest.mark.slow  # moto's server starts
def test_in_an_object_store_parts_are_uploaded_whole_and_merged(monkeypatch):
    from support.moto_s3 import AWS_ENV, moto_s3_server

    monkeypatch.setattr(history, "MERGE_PARTS", 3)
    with moto_s3_server() as s3:
        filesystem = pyarrow.fs.S3FileSystem(
            endpoint_override=s3.endpoint_url.removeprefix("http://"),
            scheme="http",
            access_key=AWS_ENV["AWS_ACCESS_KEY_ID"],
            secret_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region=AWS_ENV["AWS_DEFAULT_REGION"],
        )
        recorder = HistoryRecorder()
        recorder._target = (filesystem, f"{s3.bucket}/experiment")
        for k in range(1, 5):
            recorder._rows = [{"trial_id": "t", "training_iteration": k, "tags": {k}}]
            recorder.flush()
        selector = pyarrow.fs.FileSelector(f"{s3.bucket}/experiment/{HISTORY_DIR}")
        names = sorted(info.base_name for info in filesystem.get_file_info(selector))
        assert len(names) == 2 and all(parts_module.PART_NAME.fullmatch(n) for n in names), names
        tables = [
            table_to_frame(pq.read_table(f"{selector.base_dir}/{n}", filesystem=filesystem))
            for n in names
        ]
    assert [t["training_iteration"].tolist() for t in tables] == [[1, 2, 3], [4]]
    assert tables[0]["tags"].tolist() == [{1}, {2}, {3}]
