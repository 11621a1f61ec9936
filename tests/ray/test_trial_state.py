"""A trial's own state (radas.report(..., state=...) / radas.load_state()): a trial stopped
part-way continues from its last saved state, and the history keeps each iteration once."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ray import tune

import radas
from radas.errors import InvalidArgumentError
from radas.results.history import load_history
from radas.storage.history_parts import HISTORY_DIR, compact_history, rows_to_table
from support.waiting import in_thread, wait_for

EPOCHS = 40
HOLD_AT = 12  # the first run holds here (state saved) until the test stops it


def stateful(config):
    """40 epochs, the state saved with every report. Leaves a file per epoch it runs and per
    start (with the epoch it starts from). On its first run it holds after epoch HOLD_AT until
    ``marks/go`` exists, or fails there once with config["fail"] (a MemoryError or an error)."""
    marks = Path(config["marks"])
    i = config.get("i", 0)
    state = radas.load_state() or {"epoch": 0, "total": 0}
    (marks / f"start-{i}-{state['epoch'] + 1}-{uuid.uuid4().hex}").touch()
    for epoch in range(state["epoch"] + 1, EPOCHS + 1):
        (marks / f"epoch-{i}-{epoch}-{uuid.uuid4().hex}").touch()
        state = {"epoch": epoch, "total": state["total"] + epoch}
        radas.report({"epoch": epoch, "total": state["total"]}, state=state)
        if epoch == HOLD_AT:
            (marks / f"held-{i}").touch()
            failed_once = marks / f"failed-{i}"
            if config.get("fail") and not failed_once.exists():
                failed_once.touch()
                raise config["fail"]("failed once")  # no memory words: radas reads tracebacks
            deadline = time.monotonic() + 300
            while not (marks / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def epochs_run(marks: Path, i: int = 0) -> list[int]:
    return sorted(int(p.name.split("-")[2]) for p in marks.glob(f"epoch-{i}-*"))


def starts(marks: Path, i: int = 0) -> list[int]:
    """The epoch each run of trial i started from, in order."""
    found = sorted(marks.glob(f"start-{i}-*"), key=lambda p: p.stat().st_mtime_ns)
    return [int(p.name.split("-")[2]) for p in found]


def assert_each_epoch_once(history, i=None):
    rows = history if i is None else history[history["config/i"] == i]
    assert rows["training_iteration"].tolist() == list(range(1, EPOCHS + 1))
    assert (rows["epoch"] == rows["training_iteration"]).all()
    assert rows["total"].tolist()[-1] == EPOCHS * (EPOCHS + 1) // 2  # the state carried on


# --- the history keeps each iteration once -------------------------------------------------


def write_part(directory: Path, writer: str, index: int, rows: list[dict]) -> None:
    name = f"{time.time_ns():020d}-{writer}-{index:06d}.parquet"
    pq.write_table(rows_to_table(rows), directory / name)


def attempt(trial_id: str, iterations, tag: str) -> list[dict]:
    return [{"trial_id": trial_id, "training_iteration": n, "attempt": tag} for n in iterations]


@pytest.mark.parametrize("compacted", [False, True])
def test_history_keeps_each_iteration_once_from_the_latest_attempt(tmp_path, compacted):
    directory = tmp_path / HISTORY_DIR
    directory.mkdir()
    (tmp_path / "experiment_state-2000-01-01_00-00-00.json").write_text('{"trial_data": []}')
    # t1: reported 1..30, resumed from its state at 20, finished 21..40 (next fit);
    # t2: reported 1..30, started again from scratch and stopped at 10;
    # t3: one fit that resumed from its state at 5 within the fit (Tune's max_failures).
    write_part(directory, "aaaaaaaa", 0, attempt("t1", range(1, 31), "first"))
    write_part(directory, "aaaaaaaa", 1, attempt("t2", range(1, 31), "first"))
    write_part(directory, "bbbbbbbb", 0, attempt("t3", [*range(1, 9), *range(6, 13)], "one fit"))
    if compacted:
        compact_history(tmp_path)
    write_part(directory, "cccccccc", 0, attempt("t1", range(21, 41), "second"))
    write_part(directory, "cccccccc", 1, attempt("t2", range(1, 11), "second"))
    for compact_first in (False, True):
        if compact_first:
            compact_history(tmp_path)
        history = load_history(tmp_path)
        by_trial = {t: rows for t, rows in history.groupby("trial_id")}
        assert by_trial["t1"]["training_iteration"].tolist() == list(range(1, 41))
        assert by_trial["t1"]["attempt"].tolist() == ["first"] * 20 + ["second"] * 20
        assert by_trial["t2"]["training_iteration"].tolist() == list(range(1, 11))
        assert set(by_trial["t2"]["attempt"]) == {"second"}
        assert by_trial["t3"]["training_iteration"].tolist() == list(range(1, 13))
        assert len(history) == 40 + 10 + 12


# --- local: interrupted, then restored ------------------------------------------------------


def run_local(project: Path, **kwargs):
    kwargs.setdefault("user_name", "tester")
    kwargs.setdefault("experiment_name", "stateful")
    kwargs.setdefault("trainable", stateful)
    kwargs.setdefault("param_space", {"marks": project / "marks"})
    kwargs.setdefault("run_choice", "run")
    return radas.run_experiment_sync(**kwargs)


@pytest.mark.slow  # ~18 s: Tune waits 10 s for the held trial to stop
def test_interrupted_trial_continues_from_its_state_after_restore(project):
    marks = project / "marks"
    marks.mkdir()

    def interrupt_when_held():  # Ctrl-C, as a user would: Tune's handler in the main thread
        wait_for(lambda: (marks / "held-0").exists(), what="the trial to hold")
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_when_held, daemon=True)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt, match="interrupted"):
        run_local(project)
    interrupter.join(timeout=10)
    first_run = epochs_run(marks)
    assert first_run[-1] >= 10

    (marks / "go").touch()
    restored = run_local(
        project,
        run_choice="restore",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )
    resumed_at = starts(marks)[-1]
    assert resumed_at == HOLD_AT + 1, starts(marks)
    assert len(epochs_run(marks)) - len(first_run) < 32
    assert_each_epoch_once(restored["df"])
    assert restored["tuner"].get_dataframe()["status"].tolist() == ["TERMINATED"]


# --- out of memory: retried with doubled cpu_per_trial, continues from its state -------------


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="doubling cpu_per_trial needs 2 CPUs")
def test_out_of_memory_retry_continues_from_the_state(project, capfd):
    marks = project / "marks"
    marks.mkdir()
    (marks / "go").touch()
    results = run_local(
        project,
        experiment_name="stateful-oom",
        param_space={"marks": marks, "fail": MemoryError},
        cpu_per_trial=1,
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )
    outcome = results["outcome"]
    assert outcome.memory_retried and outcome.cpu_per_trial == 2
    assert starts(marks) == [1, HOLD_AT + 1]
    assert len(epochs_run(marks)) == EPOCHS  # nothing ran twice
    assert_each_epoch_once(results["df"])
    trials = results["tuner"].get_dataframe()
    assert trials[["status", "cpu_per_trial"]].values.tolist() == [["TERMINATED", 2.0]]
    captured = capfd.readouterr()  # the worker's "Restored on <ip> from checkpoint" is quiet
    assert "running them again" in captured.out, captured
    assert "from checkpoint" not in captured.out + captured.err, captured


# --- faults ---------------------------------------------------------------------------------


def unpicklable(config):
    radas.report({"epoch": 1}, state={"lock": threading.Lock()})


def test_a_state_that_cannot_be_pickled_fails_its_trial_with_a_clear_error(project):
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="unpicklable",
        trainable=unpicklable,
        param_space={"i": tune.grid_search([0])},
        run_choice="run",
    )
    (row,) = results["df"].to_dict("records")
    assert row["status"] == "ERROR"
    assert row["error"].startswith("radas.errors.InvalidArgumentError: radas.report(state=...)")
    assert f"in trial unpicklable_{row['trial_id']}:" in row["error"]
    assert "cannot be pickled" in row["error"] and "lock" in row["error"]


def killed_in_report(config):
    """Reports its state once: a thread SIGKILLs this worker as soon as the state's folder
    exists, so the report never returns (as the OOM killer or a lost node would end it)."""
    from radas.tune.trial import STATE_FOLDER_PREFIX

    pattern = f"{STATE_FOLDER_PREFIX}{os.getpid()}-*"
    with open(config["pid_file"], "a") as pids:  # each run of the trial: Tune may retry it
        pids.write(f"{os.getpid()}\n")

    def kill_once_written():
        while not any(Path(tempfile.gettempdir()).glob(f"{pattern}/*")):
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=kill_once_written, daemon=True).start()
    big = os.urandom(64 << 20)  # 64 MiB: written for long enough for the thread to see it
    radas.report({"epoch": 1}, state={"weights": big})
    time.sleep(60)  # not reached while the kill works


def reports_a_state(config):
    radas.report({"epoch": 1}, state={"epoch": 1})


@pytest.mark.slow
def test_a_worker_killed_in_report_leaves_a_state_folder_the_next_report_removes(project):
    from radas.tune.trial import ABANDONED_STATE_AGE_S, STATE_FOLDER_PREFIX

    pid_file = project / "pid"
    try:
        killed = radas.run_experiment_sync(
            user_name="tester",
            experiment_name="killed-in-report",
            trainable=killed_in_report,
            param_space={"pid_file": str(pid_file)},
            run_choice="run",
        )
        assert killed["df"]["status"].tolist() == ["ERROR"]
        pid = pid_file.read_text().split()[0]
        (left,) = Path(tempfile.gettempdir()).glob(f"{STATE_FOLDER_PREFIX}{pid}-*")
        assert (left / "radas_state.pkl").exists()
        old = time.time() - ABANDONED_STATE_AGE_S - 60  # as if left an hour ago
        os.utime(left, (old, old))

        results = radas.run_experiment_sync(
            user_name="tester",
            experiment_name="reports-a-state",
            trainable=reports_a_state,
            param_space={"i": tune.grid_search([0])},
            run_choice="run",
        )
        assert results["df"]["status"].tolist() == ["TERMINATED"]
        assert not left.exists()
    finally:  # the folders of the trial's other runs are not an hour old: the test's own
        for pid in pid_file.read_text().split() if pid_file.exists() else []:
            for folder in Path(tempfile.gettempdir()).glob(f"{STATE_FOLDER_PREFIX}{pid}-*"):
                shutil.rmtree(folder)


def test_outside_a_trial_load_state_is_none_and_report_checks_the_state():
    assert radas.load_state() is None
    with pytest.raises(InvalidArgumentError, match="cannot be pickled"):
        radas.report({"epoch": 1}, state=threading.Lock())
    with pytest.raises(InvalidArgumentError, match="not both"):
        radas.report({"epoch": 1}, state={}, checkpoint=tune.Checkpoint.from_directory("."))


# --- clusters: stop_attach then restore; a killed worker node ------------------------------


def history_df(tuner):
    return tuner.get_history_dataframe()


@pytest.mark.slow
@pytest.mark.cluster
def test_stop_attach_then_restore_continues_from_the_state(cluster, project):
    marks = project / "marks"
    marks.mkdir()
    on_cluster = dict(run_with="cluster:testcluster", experiment_name="stateful-stop")
    thread, box = in_thread(run_local, project=project, **on_cluster)
    wait_for(lambda: (marks / "held-0").exists(), what="the trial to hold")
    stopped = run_local(project, run_choice="stop_attach", **on_cluster)
    thread.join(timeout=120)
    assert "error" not in box, box.get("error")
    assert stopped["outcome"].interrupted
    first_run = epochs_run(marks)
    assert first_run[-1] >= 10

    (marks / "go").touch()
    restored = run_local(project, run_choice="restore", tuner_to_df_fn=history_df, **on_cluster)
    assert starts(marks) == [1, HOLD_AT + 1]
    assert len(epochs_run(marks)) - len(first_run) < 32
    assert_each_epoch_once(restored["df"])


@pytest.fixture(scope="module")
def two_nodes():
    from radas.clusters import start_local_cluster

    cluster = start_local_cluster("statenodes", num_cpus=1, worker_nodes=1, worker_cpus=1)
    yield cluster
    cluster.stop()


@pytest.mark.slow
@pytest.mark.cluster
def test_trial_on_a_killed_node_continues_from_its_state(two_nodes, project):
    marks = project / "marks"
    marks.mkdir()

    def kill_worker_when_both_hold():  # one trial per node: each takes a node's only CPU
        wait_for(lambda: len(list(marks.glob("held-*"))) == 2, what="both trials to hold")
        two_nodes.kill_worker_node(two_nodes.workers[0])  # its Ray workers die with it
        (marks / "go").touch()

    killer = threading.Thread(target=kill_worker_when_both_hold, daemon=True)
    killer.start()
    results = run_local(
        project,
        experiment_name="stateful-node",
        run_with="cluster:statenodes",
        param_space={"marks": marks, "i": tune.grid_search([0, 1])},
        tuner_to_df_fn=history_df,
    )
    killer.join(timeout=5)
    assert not two_nodes.workers, "the worker node was not killed"
    assert results["outcome"].finished_trials == 2
    runs = {i: starts(marks, i) for i in (0, 1)}
    assert sorted(runs.values()) == [[1], [1, HOLD_AT + 1]], runs  # the lost one continued
    for i in (0, 1):
        assert_each_epoch_once(results["df"], i)


@pytest.mark.slow
@pytest.mark.cluster
def test_states_in_an_object_store_carry_an_errored_trial_on_after_restore(cluster, project):
    """Results (and so states) in S3 (moto on 127.0.0.1): the cluster's nodes share no path."""
    import dataclasses

    import boto3

    from radas.clusters import register_cluster
    from radas.clusters.config import get_cluster, unregister_cluster
    from radas.errors import RadasWarning
    from support.moto_s3 import moto_s3_server

    marks = project / "marks"
    marks.mkdir()
    (marks / "go").touch()
    with moto_s3_server() as s3:
        root = s3.url("state-results")
        register_cluster(
            dataclasses.replace(
                get_cluster("testcluster"),
                name="testcluster-s3state",
                managed_by_radas=False,
                results_root=root,
                results_endpoint_url=s3.endpoint_url,
                data_root="",
                cold_data_root="",
            )
        )
        try:
            runs = []
            for choice in ("run", "restore"):
                with pytest.warns(RadasWarning, match="secret-looking AWS_SECRET_ACCESS_KEY"):
                    runs.append(
                        run_local(
                            project,
                            experiment_name="stateful-s3",
                            run_with="cluster:testcluster-s3state",
                            run_choice=choice,
                            runtime_env={"env_vars": s3.env},  # moto's test keys
                            param_space={"marks": marks, "fail": ValueError},
                            tuner_to_df_fn=history_df,
                        )
                    )
            keys = boto3.client("s3", endpoint_url=s3.endpoint_url).list_objects_v2(
                Bucket=s3.bucket, Prefix="state-results/"
            )["Contents"]
        finally:
            unregister_cluster("testcluster-s3state")
    assert runs[0]["outcome"].errored_trials == 1
    assert starts(marks) == [1, HOLD_AT + 1]
    assert_each_epoch_once(runs[1]["df"])
    states = {k["Key"].rsplit("/", 2)[1] for k in keys if k["Key"].endswith("/radas_state.pkl")}
    assert states == {"checkpoint_000038", "checkpoint_000039"}  # the latest 2 are kept


KILLED_DRIVER_SCRIPT = """
import sys
sys.path[:0] = [sys.argv[2], sys.argv[2] + "/.."]  # this module's folder (the trainable), tests/
import radas
from test_trial_state import stateful

radas.run_experiment_sync(
    user_name="tester", experiment_name="stateful-kill", trainable=stateful,
    param_space={"marks": sys.argv[1]}, run_choice="run",
)
"""


@pytest.mark.slow
def test_killed_driver_then_restore_continues_from_the_state(project):
    """A SIGKILLed local driver: Tune's last snapshot may name a state a little older than the
    last one saved, so the restored trial reports some epochs again; the history has each once.
    """
    import subprocess
    import sys

    marks = project / "marks"
    marks.mkdir()
    (project / "killed.py").write_text(KILLED_DRIVER_SCRIPT)
    driver = subprocess.Popen(
        [sys.executable, "killed.py", str(marks), str(Path(__file__).parent)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its Ray is killed with it (one process group)
    )
    path = Path(radas.get_ray_results_dir("tester")) / radas.core.naming.full_experiment_name(
        "stateful-kill", cwd=str(project)
    )

    def history_has_the_held_epoch():  # rows reach the history every 2 s: lost with a kill
        parts = list((path / HISTORY_DIR).glob("*.parquet"))
        return parts and HOLD_AT in load_history(path)["training_iteration"].tolist()

    try:
        wait_for(lambda: (marks / "held-0").exists(), what="the trial to hold")
        wait_for(history_has_the_held_epoch, what="the history to be written")
    finally:
        driver.kill()
        driver.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)

    (marks / "go").touch()
    restored = run_local(
        project,
        experiment_name="stateful-kill",
        param_space={"marks": str(marks)},
        run_choice="restore",
        tuner_to_df_fn=history_df,
    )
    resumed_at = starts(marks)[-1]
    assert 1 < resumed_at <= HOLD_AT + 1, starts(marks)
    assert len(epochs_run(marks)) - HOLD_AT < 32
    assert_each_epoch_once(restored["df"])


def test_two_states_are_kept_per_trial_unless_the_run_config_says_otherwise(tmp_path):
    from radas.core.spec import SweepSpec
    from radas.tune.configuration import _run_config

    def checkpoint_config(**tuner_init_kwargs):
        spec = SweepSpec("u", "e", "e", str(tmp_path), stateful, {}, "run", 1, tuner_init_kwargs)
        return _run_config(spec, tune.TuneConfig()).checkpoint_config

    assert checkpoint_config() == tune.CheckpointConfig(num_to_keep=2)
    own = tune.CheckpointConfig(num_to_keep=5, checkpoint_score_attribute="total")
    assert checkpoint_config(run_config=tune.RunConfig(checkpoint_config=own)) == own
