"""Issue 11, "never mix two experiments": one run at a time per experiment, names that map onto
one stored experiment are refused, and restore says which new param_space values it ignores.

The races use real processes (each with its own Ray, or its own client of the cluster), started
together with a barrier file; kills are real SIGKILLs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ray import tune

import radas
from radas.backends.ray_jobs import ExperimentJob, _job_id
from radas.errors import (
    ExperimentRunningError,
    InvalidNameError,
    NameCollisionError,
    RadasWarning,
)
from radas.results.experiment_info import describe_param_space, param_space_changes
from radas.storage.locks import experiment_lock
from support.trainables import add, grid_ab
from support.waiting import wait_for

RACER = textwrap.dedent(
    """
    import json, pathlib, sys, time, uuid
    from ray import tune
    import radas
    from radas.errors import RadasError

    name, run_with, out = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    project = pathlib.Path.cwd()
    marks = project / "marks"

    def held(config):
        (marks / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
        deadline = time.monotonic() + 300
        while not (project / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"i": config["i"]}

    if run_with == "local":  # Ray up before the barrier: the race is on starting the experiment
        from radas.backends.local import ensure_local_ray

        ensure_local_ray({})
    out.with_suffix(".ready").touch()
    while not (project / "go").exists():
        time.sleep(0.005)
    try:
        results = radas.run_experiment_sync(
            user_name="racer", experiment_name=name, trainable=held,
            param_space={"i": tune.grid_search(list(range(6)))}, run_with=run_with,
            run_choice="run",
        )
    except RadasError as err:
        record = {"error": type(err).__name__, "message": str(err)}
    else:
        df = results["df"]
        record = {
            "rows": len(df), "trial_ids": sorted(set(df["trial_id"])),
            "configs": sorted(df["config/i"].tolist()), "path": results["experiment_path"],
            "archived_to": results["outcome"].archived_to,
        }
    out.write_text(json.dumps(record))
    """
)


def race(project: Path, name: str, run_with: str, *, loser_within_s: float = 180) -> list[dict]:
    """Start two processes running ``run`` of ``name`` at the same moment; their records."""
    (project / "marks").mkdir(exist_ok=True)
    (project / "racer.py").write_text(RACER)
    outs = [project / f"racer-{n}.json" for n in (1, 2)]
    processes = [  # output to files: a full pipe nobody reads yet would hold a racer up
        subprocess.Popen(
            [sys.executable, "-u", "racer.py", name, run_with, str(out)],
            cwd=project,
            stdout=out.with_suffix(".log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for out in outs
    ]
    try:
        wait_for(lambda: _both_ready(processes, outs), 300, "both racers to be ready")
        (project / "go").touch()
        # the loser returns at once; the winner's trials wait for the release file
        wait_for(
            lambda: any(out.exists() for out in outs), loser_within_s, "the first racer to return"
        )
        (project / "release").touch()
        for process, out in zip(processes, outs, strict=True):
            process.wait(timeout=300)
            assert process.returncode == 0, out.with_suffix(".log").read_text()
        return [json.loads(out.read_text()) for out in outs]
    finally:
        (project / "release").touch()
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _both_ready(processes: list[subprocess.Popen], outs: list[Path]) -> bool:
    """Whether both racers are at the barrier; a racer that ended before it fails the test with
    its output (its Ray did not start, say), instead of a wait that runs out."""
    for process, out in zip(processes, outs, strict=True):
        if not out.with_suffix(".ready").exists() and process.poll() is not None:
            output = out.with_suffix(".log").read_text()
            raise AssertionError(f"a racer ended before the start: {output}")
    return all(out.with_suffix(".ready").exists() for out in outs)


def assert_one_ran_and_one_was_refused(records: list[dict], *, names: tuple[str, ...]) -> dict:
    refused = [r for r in records if "error" in r]
    ran = [r for r in records if "error" not in r]
    assert len(refused) == 1 and len(ran) == 1, records
    winner, loser = ran[0], refused[0]
    assert winner["rows"] == 6 and len(winner["trial_ids"]) == 6, winner
    assert winner["configs"] == list(range(6))
    assert winner["archived_to"] is None  # nothing was there before; nothing moved from under it
    assert loser["error"] == "ExperimentRunningError", loser
    for name in names:
        assert name in loser["message"], loser
    return winner


@pytest.mark.slow
@pytest.mark.integrity("survive")
def test_two_processes_starting_run_at_once_locally_one_wins(project):
    records = race(project, "raced", "local")
    winner = assert_one_ran_and_one_was_refused(records, names=("process", "restore"))
    assert not (Path(winner["path"]).parent / ".archive").exists()


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.integrity("survive")
def test_two_clients_of_a_cluster_starting_run_at_once_one_wins(cluster, project):
    records = race(project, "raced", "cluster:testcluster")
    assert_one_ran_and_one_was_refused(records, names=("run_choice='attach'", "'stop_attach'"))
    client = radas.get_client(user_name="racer", run_with="cluster:testcluster")
    jobs = client.list_experiments()
    assert jobs["experiment"].tolist().count("raced") == 1  # one job; the other was refused


# --- the lock: who holds it, and that a killed holder leaves none behind ----------------


def second_holder_refused(root: Path) -> str:
    with (
        pytest.raises(ExperimentRunningError) as refused,
        experiment_lock(root, "_p_exp", "exp"),
    ):
        pytest.fail("two holders of one experiment's lock")
    return str(refused.value)


@pytest.mark.integrity("error")
def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path):
    with experiment_lock(tmp_path, "_p_exp", "exp"):
        message = second_holder_refused(tmp_path)
        assert f"process {os.getpid()} on host {socket.gethostname()!r}" in message
        assert "run_choice='restore'" in message and "'exp'" in message
    with experiment_lock(tmp_path, "_p_exp", "exp"):  # released with the with block
        pass
    with experiment_lock(tmp_path, "_p_other", "other"):  # other experiments are not locked
        pass
    assert not (tmp_path / "_p_exp").exists()  # the lock lives outside the experiment folder


@pytest.mark.integrity("error")
def test_a_lock_held_by_a_cluster_job_names_attach_and_stop_attach(tmp_path, monkeypatch):
    monkeypatch.setenv("RADAS_JOB_ID", "radas-alice-exp-0123456789-r3")
    monkeypatch.setenv("RADAS_CLUSTER", "gpu")
    with experiment_lock(tmp_path, "_p_exp", "exp"):
        message = second_holder_refused(tmp_path)
    assert "job radas-alice-exp-0123456789-r3 on cluster:gpu" in message
    assert "run_choice='attach'" in message and "run_choice='stop_attach'" in message


@pytest.mark.slow
@pytest.mark.integrity("survive")
def test_a_sigkilled_run_leaves_no_stale_lock(project):
    (project / "marks").mkdir()
    (project / "racer.py").write_text(RACER)
    out = project / "killed.json"
    holder = subprocess.Popen(
        [sys.executable, "-u", "racer.py", "killed", "local", str(out)],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: out.with_suffix(".ready").exists(), 180, "the holder's Ray")
        (project / "go").touch()
        wait_for(lambda: any((project / "marks").glob("start-*")), 180, "a trial to start")
        # while it runs: refused, naming the process that runs it
        with pytest.raises(ExperimentRunningError, match=f"process {holder.pid} "):
            radas.run_experiment_sync(
                user_name="racer",
                experiment_name="killed",
                trainable=add,
                param_space=grid_ab(),
                run_choice="run",
            )
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
    assert holder.returncode == -signal.SIGKILL
    results = radas.run_experiment_sync(
        user_name="racer",
        experiment_name="killed",
        trainable=add,
        param_space=grid_ab(),
        run_choice="run",
    )
    df = results["df"]
    assert len(df) == 6 and df["trial_id"].nunique() == 6
    assert sorted(df["score"]) == [11, 12, 13, 21, 22, 23]
    assert results["outcome"].archived_to is not None  # the killed run's folder, kept aside


# --- names that map onto one stored experiment ------------------------------------------


def run_tiny(experiment_name: str, value: int, **kwargs):
    kwargs.setdefault("run_choice", "run")
    return radas.run_experiment_sync(
        user_name="namer",
        experiment_name=experiment_name,
        trainable=add,
        param_space={"a": tune.grid_search([value, value + 1]), "b": 0},
        **kwargs,
    )


COLLIDING = {
    "dash-vs-underscore": (("", "my-exp"), ("", "my_exp")),
    "dot-vs-underscore": (("", "a.b"), ("", "a_b")),
    "folders-x-y-vs-x_y": (("x-y", "exp"), ("x_y", "exp")),
}


@pytest.mark.integrity("error")
@pytest.mark.parametrize("first, second", COLLIDING.values(), ids=COLLIDING.keys())
def test_names_mapping_onto_a_stored_experiment_are_refused(project, monkeypatch, first, second):
    (first_dir, first_name), (second_dir, second_name) = first, second
    for folder in (first_dir, second_dir):
        (project / folder).mkdir(exist_ok=True)
    monkeypatch.chdir(project / first_dir)
    stored = run_tiny(first_name, 1)
    stored_path = Path(stored["experiment_path"])
    monkeypatch.chdir(project / second_dir)
    for attempt in (
        {"run_choice": "run"},
        {"run_choice": "restore"},
        {"dos": ["analyze"], "run_choice": None},
    ):
        with pytest.raises(NameCollisionError) as refused:
            run_tiny(second_name, 100, **attempt)
        message = str(refused.value)
        assert f"experiment_name={first_name!r} started from {project / first_dir}" in message
        assert f"experiment_name={second_name!r} run from {project / second_dir}" in message
        assert "name of its own" in message
    # the stored experiment is untouched: nothing archived, its own rows only
    assert not (stored_path.parent / ".archive" / stored_path.name).exists()
    monkeypatch.chdir(project / first_dir)
    again = run_tiny(first_name, 1, dos=["analyze"], run_choice=None)
    assert sorted(again["df"]["score"]) == [1, 2]


@pytest.mark.integrity("error")
@pytest.mark.parametrize(
    "name",
    ["a\x00b", "x\x1b[31mred", "line\nbreak", "tab\there", "bell\x07", "rtl\u202eevil"],
    ids=["nul", "ansi-escape", "newline", "tab", "bell", "bidi-override"],
)
def test_names_with_control_characters_are_refused_without_echoing_them(project, name):
    with pytest.raises(InvalidNameError) as refused:
        run_tiny(name, 1)
    message = str(refused.value)
    assert repr(name) in message
    control = [c for c in name if not c.isprintable()]
    assert control and not any(c in message for c in control)


def test_experiments_stored_without_a_folder_record_stay_readable(project):
    stored = run_tiny("old-exp", 1)
    info_file = Path(stored["experiment_path"]) / "radas_experiment.json"
    info = json.loads(info_file.read_text())
    assert info["cwd"] == str(project) and info["experiment_name"] == "old-exp"
    del info["cwd"]  # as written before radas recorded the folder
    info_file.write_text(json.dumps(info))
    analyzed = run_tiny("old-exp", 1, dos=["analyze"], run_choice=None)
    assert sorted(analyzed["df"]["score"]) == [1, 2]
    with pytest.raises(NameCollisionError, match="experiment_name='old-exp' started "):
        run_tiny("old_exp", 1, dos=["analyze"], run_choice=None)  # the name still tells
    info_file.unlink()  # stored before radas wrote the record at all
    analyzed = run_tiny("old-exp", 1, dos=["analyze"], run_choice=None)
    assert sorted(analyzed["df"]["score"]) == [1, 2]
    restored = run_tiny("old-exp", 1, run_choice="restore")
    assert restored["outcome"].already_done == 2


# --- restore with another param_space ---------------------------------------------------


@pytest.mark.integrity("error")
def test_restore_with_another_param_space_says_which_values_it_ignores(project, capsys):
    space = {"a": tune.grid_search([1, 2]), "b": 10, "model": {"depth": 3, "width": 8}}
    first = radas.run_experiment_sync(
        user_name="restorer",
        experiment_name="grid",
        trainable=add,
        param_space=space,
        run_choice="run",
        dos=["run"],
    )
    assert first["outcome"].finished_trials == 2
    changed = {"a": tune.grid_search([1, 2, 3]), "b": 10, "model": {"depth": 4, "width": 8}}
    with pytest.warns(RadasWarning, match="these values are ignored") as warned:
        restored = radas.run_experiment_sync(
            user_name="restorer",
            experiment_name="grid",
            trainable=add,
            param_space=changed,
            run_choice="restore",
        )
    (message,) = [str(w.message) for w in warned if issubclass(w.category, RadasWarning)]
    assert "'a': stored {'grid_search': [1, 2]}, given {'grid_search': [1, 2, 3]}" in message
    assert "'model/depth': stored 3, given 4" in message
    assert "'b'" not in message and "model/width" not in message
    assert "run_choice='run'" in message
    assert message in capsys.readouterr().err  # printed too, not only a Python warning
    df = restored["df"]  # the stored trials, nothing new
    assert sorted(df["config/a"]) == [1, 2] and restored["outcome"].already_done == 2
    # the same space again (a fresh but equal search-space object): no warning
    same = radas.run_experiment_sync(
        user_name="restorer",
        experiment_name="grid",
        trainable=add,
        param_space={"a": tune.grid_search([1, 2]), "b": 10, "model": {"depth": 3, "width": 8}},
        run_choice="restore",
    )
    assert len(same["df"]) == 2


def test_search_space_objects_are_described_by_value_not_by_address():
    first = {"lr": tune.loguniform(1e-4, 1e-1), "act": tune.choice(["relu", "tanh"])}
    equal = {"lr": tune.loguniform(1e-4, 1e-1), "act": tune.choice(["relu", "tanh"])}
    wider = {"lr": tune.loguniform(1e-4, 1.0), "act": tune.choice(["relu", "tanh"])}
    stored = json.loads(json.dumps(describe_param_space(first)))  # as read back from the file
    assert param_space_changes(stored, describe_param_space(equal)) == []
    (change,) = param_space_changes(stored, describe_param_space(wider))
    assert change.startswith("'lr': stored 'Float(lower=0.0001, upper=0.1, ")
    assert "upper=1.0" in change and " at 0x" not in change


# --- cluster: one submission id per experiment run --------------------------------------


def test_cluster_job_ids_are_the_same_for_every_client_and_follow_the_runs():
    def job(job_id: str) -> ExperimentJob:
        return ExperimentJob(
            job_id, "alice", "lr sweep", "_p_lr_sweep", "run", "SUCCEEDED", None, None, "", "/p"
        )

    first = _job_id("alice", "lr sweep", "_p_lr_sweep", [])
    assert first == _job_id("alice", "lr sweep", "_p_lr_sweep", [])  # racing clients agree
    assert first.startswith("radas-alice-lr-sweep-") and first.endswith("-r1")
    assert _job_id("alice", "lr sweep", "_p_lr_sweep", [job(first)]).endswith("-r2")
    # deleted jobs do not bring an id back; ids made before this scheme count as runs
    assert _job_id("alice", "lr sweep", "_p_lr_sweep", [job(first[:-1] + "7")]).endswith("-r8")
    legacy = job("radas-alice-lr-sweep-20260101-120000-ab12")
    assert _job_id("alice", "lr sweep", "_p_lr_sweep", [legacy]).endswith("-r2")
    # other users and other folders with the same experiment name never share an id
    assert _job_id("bob", "lr sweep", "_p_lr_sweep", []) != first
    assert _job_id("alice", "lr sweep", "_q_lr_sweep", []) != first
    assert len(_job_id("a" * 64, "x" * 200, "_" * 200, [job(first)] * 5000)) < 130
