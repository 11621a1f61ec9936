"""Issue 11 §2: never lose finished work, never pretend.

A killed run keeps every trial whose end radas recorded; damaged experiment folders are
detected, reported by file, and read as far as they are intact; radas's own writes survive a
kill at any instant; a full disk gives StorageFullError and leaves consistent state.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import radas
from radas.errors import ExperimentDamagedError, RadasWarning
from radas.results import tune_state
from radas.results.history import load_history
from radas.storage.history_parts import HISTORY_DIR, history_parts
from support.fault_tools import radas_warnings, tmpfs

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
    full = radas.core.naming.full_experiment_name(name, cwd=str(project))
    return Path(radas.get_ray_results_dir("tester")) / full


def recorded_ends(path: Path) -> set[str]:
    try:
        records = json.loads((path / tune_state.TRIAL_RECORDS_FILE).read_text())
    except (OSError, ValueError):
        return set()
    return {tid for tid, record in records.items() if tune_state.ended_in_records(record)}


def kill_run(process: subprocess.Popen) -> None:
    """SIGKILL the run's process, then clean up what it started (its own process group)."""
    process.kill()
    process.communicate(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


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
        t.config["i"] for t in tune_state.load_trial_states(path) if t.trial_id in ended
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


# --- damaged experiment folders -------------------------------------------------------------


def reporting(config):
    for step in range(3):
        if config["i"] == 3 and step == 2:
            raise ValueError("trial three fails on purpose")
        radas.report({"value": config["i"] * 10 + step})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One finished experiment (3 trials TERMINATED, 1 ERROR), its tables as read intact."""
    from ray import tune

    cwd = tmp_path_factory.mktemp("pristine")
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        results = radas.run_experiment_sync(
            user_name="tester",
            experiment_name="pristine",
            trainable=reporting,
            param_space={"i": tune.grid_search([0, 1, 2, 3])},
            run_choice="run",
        )
    finally:
        os.chdir(previous)
    tuner = results["tuner"]
    return Path(tuner.experiment_path), tuner.get_dataframe(), tuner.get_history_dataframe()


def split_history_into_parts(path: Path) -> list[Path]:
    """The compacted history as one part per trial, as a run writes them before compacting."""
    import pyarrow.parquet as pq

    from radas.storage.history_parts import COMPACTED_FILE, rows_to_table

    directory = path / HISTORY_DIR
    frame = pq.read_table(directory / COMPACTED_FILE).to_pandas()
    (directory / COMPACTED_FILE).unlink()
    parts = []
    for n, (_, rows) in enumerate(frame.groupby("trial_id", sort=True)):
        part = directory / f"{n + 1:020d}-0123abcd-{n:06d}.parquet"
        pq.write_table(rows_to_table(rows.to_dict("records")), part)
        parts.append(part)
    return parts


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def newest_state(path: Path) -> Path:
    """Tune's newest state file (not radas's copy of the last readable one)."""
    return [f for f in tune_state.state_files(path) if tune_state.BACKUP_STAMP not in f.name][-1]


def all_states(path: Path) -> list[Path]:
    return tune_state.state_files(path)  # Tune's and radas's copy


def delete_history(path):
    shutil.rmtree(path / HISTORY_DIR)


def truncate_compacted_history(path):
    truncate(history_parts(path)[0])


def truncate_one_part(path):
    truncate(split_history_into_parts(path)[1])


def delete_one_part(path):
    split_history_into_parts(path)[1].unlink()


def delete_state(path):
    for state in all_states(path):
        state.unlink()


def truncate_state(path):
    """Tune's newest snapshot cut short (and its searcher state): radas's copy is used."""
    truncate(newest_state(path))
    truncate(sorted(path.glob("basic-variant-state-2*.json"))[-1])


def truncate_all_states(path):
    for state in all_states(path):
        truncate(state)


def truncate_state_with_older_one(path):
    """A restore wrote a newer state file, then it was cut short: the older one is used."""
    state = newest_state(path)
    shutil.copy(state, path / "experiment_state-2000-01-01_00-00-00.json")
    truncate(state)


def empty_tuner_pickle(path):
    (path / "tuner.pkl").write_bytes(b"")


def truncate_trial_records(path):
    truncate(path / tune_state.TRIAL_RECORDS_FILE)


def junk_files(path):
    (path / "notes-8f3a.tmp").write_text("junk")
    (path / HISTORY_DIR / "README.txt").write_text("not a part")
    (path / HISTORY_DIR / "junk.parquet").write_bytes(b"PAR1 garbage")
    (path / HISTORY_DIR / ".00000000000000000001-deadbeef-000000.parquet.tmp").write_bytes(b"x")


def delete_state_and_records(path):
    delete_state(path)
    (path / tune_state.TRIAL_RECORDS_FILE).unlink()


def delete_error_file(path):
    for error_file in path.glob("*/error.txt"):
        error_file.unlink()


def everything_but_history_deleted_or_truncated(path):
    truncate_all_states(path)
    (path / tune_state.TRIAL_RECORDS_FILE).unlink()
    shutil.rmtree(path / HISTORY_DIR)


LAST_ROWS_ONLY = 4  # one (the last) result per trial, rebuilt from the stored state

# name -> (damage, warning pattern or None, history rows expected)
SURVIVED = {
    "history deleted": (delete_history, "lacks the last result of 4 trial", LAST_ROWS_ONLY),
    "compacted history truncated": (truncate_compacted_history, "unreadable", LAST_ROWS_ONLY),
    "one history part truncated": (truncate_one_part, "unreadable", 11 - 3 + 1),
    "one history part deleted": (delete_one_part, "lacks the last result of 1 trial", 11 - 3 + 1),
    "every state file deleted": (delete_state, "rebuilt from radas's trial records", 11),
    "newest state truncated": (truncate_state, "experiment_state-.*is damaged", 11),
    "newest state truncated, older kept": (truncate_state_with_older_one, "is damaged", 11),
    "tuner.pkl emptied": (empty_tuner_pickle, None, 11),
    "trial records truncated": (truncate_trial_records, "trial records .* are damaged", 11),
    "junk files": (junk_files, None, 11),
    "state and records deleted": (delete_state_and_records, "last row of 4 trials", 11),
    "error file deleted": (delete_error_file, None, 11),
}


@pytest.fixture
def damaged_copy(pristine, tmp_path):
    path = tmp_path / "results" / pristine[0].name
    shutil.copytree(pristine[0], path)
    return path


@pytest.mark.integrity("survive")
@pytest.mark.parametrize("case", sorted(SURVIVED))
def test_damaged_folder_is_read_as_far_as_intact_and_reported(case, pristine, damaged_copy):
    damage, warning, history_rows = SURVIVED[case]
    _, df_before, history_before = pristine
    damage(damaged_copy)
    with radas_warnings() as seen:
        tuner = radas.Tuner(damaged_copy)
        df = tuner.get_dataframe()
        history = tuner.get_history_dataframe()
    if warning is None:
        assert not seen, seen
    else:
        assert any(re.search(warning, message) for message in seen), seen

    by_trial = df.set_index("trial_id").sort_index()
    before = df_before.set_index("trial_id").sort_index()
    assert list(by_trial.index) == list(before.index)
    assert list(by_trial["config/i"]) == [0, 1, 2, 3]
    if case == "state and records deleted":  # only the history says how each trial ended
        assert list(by_trial["status"]) == ["UNKNOWN"] * 4
    else:
        assert list(by_trial["status"]) == list(before["status"])
    assert list(by_trial["value"]) == list(before["value"])  # the last result of each trial
    if case == "error file deleted":
        assert "error file" in by_trial["error"].iloc[3] and "missing" in by_trial["error"].iloc[3]

    assert len(history) == history_rows
    assert not history.duplicated(["trial_id", "training_iteration"]).any()
    expected = history_before.set_index(["trial_id", "training_iteration"])["value"]
    got = history.set_index(["trial_id", "training_iteration"])["value"]
    assert (got == expected.loc[got.index]).all()  # every row there is the true one
    last = history.groupby("trial_id")["training_iteration"].max()
    assert dict(last) == dict(before["training_iteration"])  # each trial keeps its last


@pytest.mark.integrity("error")
def test_nothing_readable_left_raises_damaged_naming_the_file(damaged_copy):
    everything_but_history_deleted_or_truncated(damaged_copy)
    state = newest_state(damaged_copy)  # the newest of the damaged files is named
    with (
        pytest.warns(RadasWarning, match="is damaged"),
        pytest.raises(ExperimentDamagedError, match=str(state)),
    ):
        radas.Tuner(damaged_copy).get_dataframe()


@pytest.mark.integrity("survive")
def test_result_grid_uses_the_older_state_when_the_newest_is_truncated(damaged_copy):
    truncate_state_with_older_one(damaged_copy)
    with radas_warnings() as seen:
        grid = radas.Tuner(damaged_copy).get_results()
    assert any("is damaged" in message for message in seen), seen
    assert sorted(result.metrics["value"] for result in grid) == [2, 12, 22, 31]


@pytest.mark.integrity("error")
def test_result_grid_without_readable_state_says_what_still_works(damaged_copy):
    truncate_all_states(damaged_copy)
    with radas_warnings(), pytest.raises(ExperimentDamagedError, match="get_dataframe"):
        radas.Tuner(damaged_copy).get_results()


def copy_as(pristine, project: Path, name: str) -> Path:
    """The pristine experiment, copied to where ``name`` run from ``project`` lives."""
    path = experiment_path(project, name)
    shutil.copytree(pristine[0], path)
    info_file = path / "radas_experiment.json"
    info = json.loads(info_file.read_text())
    info.update(experiment_name=name, cwd=str(project), full_name=path.name)
    info_file.write_text(json.dumps(info))
    return path


def restore_copy(pristine, project, damage) -> tuple[Path, dict]:
    """Copy the pristine experiment to where ``restored`` in ``project`` lives, damage it,
    and restore it (in-process, real Ray)."""
    from ray import tune

    path = copy_as(pristine, project, "restored")
    damage(path)
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="restored",
        trainable=reporting,
        param_space={"i": tune.grid_search([0, 1, 2, 3])},
        run_choice="restore",
    )
    return path, results


@pytest.mark.integrity("survive")
def test_restore_rebuilds_an_emptied_tuner_pickle(pristine, project, capsys):
    with radas_warnings() as seen:
        path, results = restore_copy(pristine, project, empty_tuner_pickle)
    assert any("tuner.pkl is damaged" in m and "written again" in m for m in seen), seen
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "3 of 4 trials were already done" in output, output
    df = results["df"].set_index("config/i").sort_index()
    assert list(df["status"]) == ["TERMINATED"] * 3 + ["ERROR"]  # trial 3 fails again
    assert list(df["value"]) == [2, 12, 22, 31]
    assert (path / "tuner.pkl").stat().st_size > 0


@pytest.mark.integrity("survive")
def test_restore_sets_a_truncated_newest_state_aside(pristine, project, capsys):
    with radas_warnings() as seen:
        path, results = restore_copy(pristine, project, truncate_state_with_older_one)
    assert any("is damaged" in message for message in seen), seen
    assert "3 of 4 trials were already done" in capsys.readouterr().out
    assert len(list(path.glob("experiment_state-*.json" + tune_state.DAMAGED_SUFFIX))) == 1
    assert sorted(results["df"]["status"]) == ["ERROR"] + ["TERMINATED"] * 3


@pytest.mark.integrity("survive")
def test_restore_after_tunes_snapshot_was_cut_short_uses_radas_copy(pristine, project, capsys):
    with radas_warnings() as seen:
        _path, results = restore_copy(pristine, project, truncate_state)
    assert any("is damaged" in message for message in seen), seen
    assert "3 of 4 trials were already done" in capsys.readouterr().out
    assert sorted(results["df"]["status"]) == ["ERROR"] + ["TERMINATED"] * 3
    assert len(results["tuner"].get_history_dataframe()) == 11


@pytest.mark.integrity("error")
def test_restore_without_any_readable_state_names_the_damage(pristine, project):
    with radas_warnings() as seen, pytest.raises(ExperimentDamagedError, match="run_choice='run'"):
        restore_copy(pristine, project, truncate_all_states)
    assert any("is damaged" in message for message in seen), seen


@pytest.mark.integrity("error")
def test_analyze_of_a_ruined_folder_is_not_blamed_on_the_users_function(pristine, project):
    path = copy_as(pristine, project, "ruined")
    everything_but_history_deleted_or_truncated(path)
    with radas_warnings(), pytest.raises(ExperimentDamagedError, match="cannot be read"):
        radas.run_experiment_sync(
            user_name="tester", experiment_name="ruined", trainable=reporting, dos=["analyze"]
        )


# --- radas's writes survive a kill at any instant --------------------------------------------

WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pyarrow import fs
    from radas.results import tune_state
    from radas.tune.history import HistoryRecorder
    from radas.storage.history_parts import compact_history

    path, start = sys.argv[1], int(sys.argv[2])
    recorder = HistoryRecorder()
    recorder._target = (fs.LocalFileSystem(), path)
    print("ready", flush=True)
    k = start
    while True:
        recorder._rows = [
            {"trial_id": f"t{k % 3}", "training_iteration": k, "value": k * 1.5, "step": j}
            for j in range(200)
        ]
        for n, row in enumerate(recorder._rows):
            row["training_iteration"] = k * 1000 + n
        recorder.flush()
        tune_state.write_trial_records(path, {"writer": {"written": k, "pad": "x" * 50_000}})
        with open(f"{path}/log", "a") as log:
            log.write(f"{k}\\n")
        if k % 2:
            compact_history(path)
        k += 1
    """
)


@pytest.mark.slow
@pytest.mark.integrity("survive")
def test_history_and_records_writes_survive_sigkill_at_random_moments(tmp_path):
    path = tmp_path / "experiment"
    (path / HISTORY_DIR).mkdir(parents=True)
    (path / "experiment_state-2000-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (tmp_path / "writer.py").write_text(WRITER_SCRIPT)
    chance = random.Random(11)
    start = 0
    for kill in range(20):
        writer = subprocess.Popen(
            [sys.executable, "writer.py", str(path), str(start)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
            time.sleep(chance.uniform(0.0, 0.4))  # the random moment of the kill
        finally:
            writer.kill()
            writer.communicate(timeout=60)
        log = path / "log"
        logged = [int(k) for k in log.read_text().split()] if log.exists() else []
        with radas_warnings() as seen:
            history = load_history(path)
        assert not seen, seen
        written = sorted(set(history["training_iteration"] // 1000))
        # every logged write is there, at most the one in flight besides, nothing twice
        assert written[: len(logged)] == logged == list(range(len(logged))), (kill, written)
        assert len(written) - len(logged) in (0, 1), (kill, written, logged)
        assert len(history) == 200 * len(written)
        assert not history.duplicated(["trial_id", "training_iteration"]).any()
        assert (history["value"] == history["training_iteration"] // 1000 * 1.5).all()
        records = tune_state.read_trial_records(path)  # never torn: the old or the new one
        assert records.get("writer", {}).get("written", -1) in (len(written) - 2, len(written) - 1)
        start = len(written)
        if len(written) > len(logged):  # the in-flight write landed: log it as the writer would
            with log.open("a") as stream:
                stream.write(f"{start - 1}\n")


# --- a full disk ---------------------------------------------------------------------------

FILL_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, uuid
    import numpy as np
    from ray import tune
    import radas

    RUNS, TRIALS = pathlib.Path(sys.argv[1]), int(sys.argv[3])  # globals travel with it

    def filler(config):
        (RUNS / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
        rng = np.random.default_rng(config["i"])
        for step in range(60):  # ~1 MB of history per trial
            radas.report({"value": config["i"] * 1000 + step, "blob": rng.random(2000).tolist()})
        (RUNS / f"done-{config['i']}-{uuid.uuid4().hex}").touch()

    radas.run_experiment_sync(
        user_name="tester",
        experiment_name=sys.argv[4],
        trainable=filler,
        param_space={"i": tune.grid_search(list(range(TRIALS)))},
        run_choice=sys.argv[2],
    )
    """
)


def run_fill(project: Path, home: Path, choice: str, name: str, trials: int):
    return subprocess.run(
        [sys.executable, "-u", "fill.py", str(project / "runs"), choice, str(trials), name],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "RADAS_HOME": str(home), "PYTHONUNBUFFERED": "1"},
        timeout=600,
    )


def folder_digest(path: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()
    }


@pytest.mark.slow
@pytest.mark.integrity("error")
def test_full_disk_gives_storage_full_error_and_restore_continues(project):
    (project / "fill.py").write_text(FILL_SCRIPT)
    (project / "runs").mkdir()
    with tmpfs(project / "home", "20m") as home:
        other = run_fill(project, home, "run", "other", 1)  # another experiment, stored first
        assert other.returncode == 0, other.stdout + other.stderr
        results = home / "ray-results" / "tester"
        other_path = results / radas.core.naming.full_experiment_name("other", cwd=str(project))
        other_before = folder_digest(other_path)
        for marker in (project / "runs").iterdir():
            marker.unlink()

        full = run_fill(project, home, "run", "fill", 24)  # ~24 MB of history into 20 MB
        output = full.stdout + full.stderr
        assert full.returncode != 0, output
        path = results / radas.core.naming.full_experiment_name("fill", cwd=str(project))
        assert "StorageFullError: No space left to write " + str(path) in output, output[-3000:]
        assert "needed" in output and "run_choice='restore'" in output

        assert folder_digest(other_path) == other_before  # other experiments untouched
        with radas_warnings() as seen:  # trials Tune ended but radas could not store: warned
            tuner = radas.Tuner(path)
            df = tuner.get_dataframe()
            history = tuner.get_history_dataframe()
        done = {int(f.name.split("-")[1]) for f in (project / "runs").glob("done-*")}
        terminated = set(df.loc[df["status"] == "TERMINATED", "config/i"])
        assert terminated and terminated <= done, (terminated, done)
        rows = history.groupby("trial_id").size()
        for trial_id in df.loc[df["status"] == "TERMINATED", "trial_id"]:
            assert rows[trial_id] == 60, seen  # shown as finished: its whole history is there

        subprocess.run(["mount", "-o", "remount,size=200m", str(home)], check=True)
        restored = run_fill(project, home, "restore", "fill", 24)
        output = restored.stdout + restored.stderr
        assert restored.returncode == 0, output[-3000:]
        assert f"{len(terminated)} of 24 trials were already done" in output, output[-3000:]
        for i in terminated:
            assert len(list((project / "runs").glob(f"start-{i}-*"))) == 1, i
        tuner = radas.Tuner(path)
        df = tuner.get_dataframe()
        assert sorted(df["config/i"]) == list(range(24))
        assert set(df["status"]) == {"TERMINATED"}
        history = tuner.get_history_dataframe()
        assert len(history) == 24 * 60
        assert not history.duplicated(["trial_id", "training_iteration"]).any()


# --- SIGKILL of a cluster job's driver ---------------------------------------------------------


def job_driver_processes(cluster) -> list:
    """The radas job drivers running on the test's own local cluster (found among the
    processes in its nodes' job groups: the cluster fixture started them)."""
    import psutil

    groups = set(cluster.job_process_groups())
    drivers = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "radas.backends.job_driver" in (process.info["cmdline"] or []) and (
                os.getpgid(process.pid) in groups
            ):
                drivers.append(process)
        except (psutil.Error, ProcessLookupError):
            continue
    return drivers


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.integrity("survive")
def test_sigkill_of_the_job_driver_keeps_the_trials_it_recorded(cluster, project):
    import threading
    import uuid

    from ray import tune

    from radas.clusters.config import get_cluster
    from radas.errors import JobFailedError

    marks = project / "marks"
    marks.mkdir()

    def sleeper(config):
        (marks / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
        for step in range(3):
            time.sleep(0.5)
            radas.report({"value": config["i"] * 10 + step})

    kwargs = dict(
        user_name="tester",
        experiment_name="driver-killed",
        trainable=sleeper,
        param_space={"i": tune.grid_search(list(range(6)))},
        run_with="cluster:testcluster",
    )
    box: dict = {}

    def first_run():
        try:
            box["results"] = radas.run_experiment_sync(**kwargs, run_choice="run")
        except BaseException as err:  # handed to the test
            box["error"] = err

    thread = threading.Thread(target=first_run, daemon=True)
    thread.start()
    full_name = radas.core.naming.full_experiment_name("driver-killed", cwd=str(project))
    path = Path(get_cluster("testcluster").results_root) / "tester" / full_name
    deadline = time.monotonic() + 240
    while len(recorded_ends(path)) < 2:
        assert thread.is_alive(), box
        assert time.monotonic() < deadline, "trials did not finish in time"
        time.sleep(0.05)
    drivers = job_driver_processes(cluster)
    assert len(drivers) == 1, drivers
    drivers[0].kill()  # SIGKILL
    thread.join(timeout=180)
    assert isinstance(box.get("error"), JobFailedError), box
    ended = recorded_ends(path)
    ended_configs = {
        t.config["i"] for t in tune_state.load_trial_states(path) if t.trial_id in ended
    }
    assert len(ended_configs) == len(ended) >= 2

    restored = radas.run_experiment_sync(**kwargs, run_choice="restore")
    df = restored["df"]
    assert sorted(df["config/i"]) == list(range(6))
    assert set(df["status"]) == {"TERMINATED"}
    for i in ended_configs:
        assert len(list(marks.glob(f"start-{i}-*"))) == 1, f"trial i={i} ran again"
    history = restored["tuner"].get_history_dataframe()
    assert len(history) == 6 * 3
    assert not history.duplicated(["trial_id", "training_iteration"]).any()
