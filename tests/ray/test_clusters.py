"""The cluster workflow against a real local Ray cluster (ray start on 127.0.0.1, token auth)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import seaborn as sns
from ray import tune

import radas
from radas import cli
from radas.clusters import get_cluster_availability, register_cluster
from radas.clusters.config import ClusterConfig, get_cluster, unregister_cluster
from radas.errors import (
    ClusterAuthError,
    ClusterOfflineError,
    ExperimentRunningError,
    JobFailedError,
    JobNotFoundError,
    WorkingDirTooLargeError,
)
from support.waiting import in_thread, wait_for

pytestmark = pytest.mark.cluster
RUN_WITH = "cluster:testcluster"


def add(config):
    return {"score": config["a"] + config["b"]}


def grid():
    return {"a": tune.grid_search([1, 2, 3]), "b": tune.grid_search([10, 20])}


def run(**kwargs):
    kwargs.setdefault("user_name", "alice")
    kwargs.setdefault("run_with", RUN_WITH)
    kwargs.setdefault("run_choice", "run")
    return radas.run_experiment_sync(**kwargs)


def counted_sleeper(marks: Path, seconds: float):
    """A trainable that leaves a file per start and per finish, and sleeps in between."""

    def sleeper(config):
        (marks / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
        for step in range(4):
            time.sleep(seconds / 4)
            radas.report({"step": step, "i": config["i"]})
        (marks / f"done-{config['i']}-{uuid.uuid4().hex}").touch()

    return sleeper


@pytest.mark.slow
def test_grid_runs_on_the_cluster_and_is_reanalyzed(cluster, project):
    results = run(
        experiment_name="grid",
        trainable=add,
        param_space=grid(),
        plot_fn=sns.relplot,
        plot_kwargs=dict(x="config/a", y="score", hue="config/b"),
        plot_format="png",
    )
    df = results["df"]
    assert len(df) == 6 and (df["score"] == df["config/a"] + df["config/b"]).all()
    assert results["experiment_path"].startswith(get_cluster("testcluster").results_root)
    assert results["run_with"] == RUN_WITH
    assert Path(results["fig_path"]).stat().st_size > 5_000

    again = run(
        experiment_name="grid",
        trainable=add,
        dos=["analyze"],
        run_choice=None,
        plot_fn=sns.lineplot,
        plot_kwargs=dict(x="config/a", y="score", hue="config/b"),
        plot_format="svg",
    )
    assert again["df"]["score"].tolist() == df["score"].tolist()
    assert "<svg" in Path(again["fig_path"]).read_text()


@pytest.mark.slow
def test_trainable_defined_in_main_script_works(cluster, project):
    (project / "main_script.py").write_text(
        textwrap.dedent(
            f"""
            import radas
            from ray import tune

            def doubled(config):
                return {{"twice": 2 * config["x"]}}

            results = radas.run_experiment_sync(
                user_name="alice", experiment_name="from-main", trainable=doubled,
                param_space={{"x": tune.grid_search([1, 2, 3])}}, run_with="{RUN_WITH}",
                run_choice="run",
            )
            print("TWICE", sorted(results["df"]["twice"]))
            """
        )
    )
    completed = subprocess.run(
        [sys.executable, "main_script.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "TWICE [2, 4, 6]" in completed.stdout


@pytest.mark.slow  # two jobs, one stopped mid-run: 44 s under load
def test_stop_attach_then_restore_completes_without_rerunning(cluster, project):
    marks = project / "marks"
    marks.mkdir()
    sleeper = counted_sleeper(marks, seconds=2.0)
    space = {"i": tune.grid_search(list(range(8)))}
    thread, box = in_thread(run, experiment_name="long", trainable=sleeper, param_space=space)
    wait_for(lambda: len(list(marks.glob("done-*"))) >= 2, what="two finished trials")

    with pytest.raises(ExperimentRunningError, match=r"run_choice='attach'.*'stop_attach'"):
        run(experiment_name="long", trainable=sleeper, param_space=space)

    stopped = run(experiment_name="long", trainable=sleeper, run_choice="stop_attach")
    thread.join(timeout=120)
    assert "error" not in box, box.get("error")
    df = stopped["df"]
    finished = sorted(df.loc[df["status"] == "TERMINATED", "config/i"])
    assert 2 <= len(finished) < 8
    # the job has ended: trials it stopped are STOPPED (never RUNNING), unstarted PENDING
    assert set(df["status"]) <= {"TERMINATED", "STOPPED", "PENDING"}, df["status"]
    assert stopped["outcome"].interrupted

    client = radas.get_client(user_name="alice", run_with=RUN_WITH)
    jobs = client.list_experiments()
    last = jobs[jobs["experiment"] == "long"].iloc[-1]
    assert (last["job_status"], last["status"]) == (
        "STOPPED",
        f"STOPPED, {len(finished)} of 8 trials finished",
    )

    restored = run(
        experiment_name="long",
        trainable=sleeper,
        param_space=space,
        run_choice="restore",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )
    assert restored["outcome"].already_done == len(finished)
    final = restored["tuner"].get_dataframe()
    assert sorted(final["config/i"]) == list(range(8))
    assert set(final["status"]) == {"TERMINATED"}
    for i in finished:  # finished before the stop: not run again
        assert len(list(marks.glob(f"start-{i}-*"))) == 1
    history = restored["df"]
    assert history.groupby("config/i").size().tolist() == [4] * 8  # one row per report


@pytest.mark.slow  # two jobs: 41 s under load
def test_restore_output_says_it_resumed(cluster, project, capfd):
    marks = project / "marks"
    marks.mkdir()

    def half_broken(config):
        (marks / f"{config['i']}-{uuid.uuid4().hex}").touch()
        if config["i"] >= 2 and not (project / "fixed").exists():
            raise ValueError("not yet")
        return {"i": config["i"]}

    space = {"i": tune.grid_search([0, 1, 2, 3])}
    first = run(experiment_name="resume", trainable=half_broken, param_space=space)
    assert first["outcome"].errored_trials == 2
    (project / "fixed").touch()
    capfd.readouterr()
    second = run(
        experiment_name="resume", trainable=half_broken, param_space=space, run_choice="restore"
    )
    output = capfd.readouterr().out
    assert "resuming from" in output and "2 of 4 trials were already done" in output
    assert set(second["df"]["status"]) == {"TERMINATED"}
    assert [len(list(marks.glob(f"{i}-*"))) for i in range(4)] == [1, 1, 2, 2]

    # every trial finished: a restore answers from the store, submitting no job
    jobs = radas.get_client(user_name="alice", run_with=RUN_WITH).list_experiments()
    started = time.monotonic()
    third = run(
        experiment_name="resume", trainable=half_broken, param_space=space, run_choice="restore"
    )
    seconds = time.monotonic() - started
    assert "nothing to continue: 4 of 4 trials finished" in capfd.readouterr().out
    assert third["outcome"].already_done == 4 and set(third["df"]["status"]) == {"TERMINATED"}
    after = radas.get_client(user_name="alice", run_with=RUN_WITH).list_experiments()
    assert len(after) == len(jobs)  # no job submitted
    assert [len(list(marks.glob(f"{i}-*"))) for i in range(4)] == [1, 1, 2, 2]
    print(f"restore of a finished experiment answered in {seconds:.2f} s")


@pytest.mark.slow
def test_attach_follows_a_running_job_to_its_end(cluster, project):
    marks = project / "marks"
    marks.mkdir()
    sleeper = counted_sleeper(marks, seconds=1.0)
    space = {"i": tune.grid_search(list(range(4)))}
    thread, box = in_thread(run, experiment_name="follow", trainable=sleeper, param_space=space)
    wait_for(lambda: list(marks.glob("start-*")), what="a started trial")
    attached = run(experiment_name="follow", run_choice="attach")
    thread.join(timeout=120)
    assert sorted(attached["df"]["config/i"]) == [0, 1, 2, 3]
    assert set(attached["df"]["status"]) == {"TERMINATED"}
    assert box["results"]["df"]["trial_id"].tolist() == attached["df"]["trial_id"].tolist()

    # Already finished: attach just analyzes.
    again = run(experiment_name="follow", run_choice="attach")
    assert len(again["df"]) == 4


@pytest.mark.slow
def test_attach_and_stop_attach_without_a_job_say_what_exists(cluster, project):
    run(experiment_name="exists", trainable=add, param_space={"a": 1, "b": 2})
    with pytest.raises(JobNotFoundError, match=r"No job of experiment 'ghost'.*'exists'"):
        run(experiment_name="ghost", run_choice="attach")
    with pytest.raises(JobNotFoundError, match="Nothing of experiment 'exists' is running"):
        run(experiment_name="exists", run_choice="stop_attach")


@pytest.mark.slow
def test_client_lists_and_stops_only_its_users_jobs(cluster, project, capsys):
    marks = project / "marks"
    marks.mkdir()
    sleeper = counted_sleeper(marks, seconds=8.0)
    thread, _ = in_thread(
        run,
        user_name="bob",
        experiment_name="bobs",
        trainable=sleeper,
        param_space={"i": tune.grid_search([0, 1])},
    )
    bob = radas.get_client(user_name="bob", run_with=RUN_WITH)
    wait_for(lambda: list(marks.glob("start-*")), what="bob's job to start a trial")
    (job,) = [j for j in bob.jobs() if j.active]

    alice = radas.get_client(user_name="alice", run_with=RUN_WITH)
    assert job.job_id not in alice.list_experiments()["job_id"].tolist()
    with pytest.raises(JobNotFoundError, match="belongs to another user"):
        alice.stop_job_by_id(job.job_id)
    with pytest.raises(JobNotFoundError):
        alice.stop_job_by_id("radas-nobody-1")

    bob.display_experiments()
    shown = capsys.readouterr().out
    assert job.job_id in shown and "RUNNING" in shown
    assert f".stop_job_by_id('{job.job_id}')" in shown

    assert bob.stop_job_by_id(job.job_id) == "STOPPED"
    thread.join(timeout=120)
    listing = bob.list_experiments()
    [stopped] = listing[listing["job_id"] == job.job_id].to_dict(orient="records")
    assert stopped["job_status"] == "STOPPED" and stopped["status"].startswith("STOPPED")
    assert "bobs: running on the cluster" in bob.get_job_logs(job.job_id)


@pytest.mark.slow  # two jobs, one crashing: 45 s under load
def test_driver_crash_reports_the_jobs_error_and_restore_continues(cluster, project):
    from ray.tune import Callback

    class CrashOnce(Callback):
        def __init__(self, flag: str):
            self.flag = flag

        def on_step_end(self, iteration, trials, **info):
            done = sum(trial.status == "TERMINATED" for trial in trials)
            if done >= 2 and not Path(self.flag).exists():
                Path(self.flag).touch()
                raise RuntimeError("driver exploded on purpose")

    flag = str(project / "crashed")
    space = {"i": tune.grid_search([0, 1, 2, 3])}
    with pytest.raises(JobFailedError) as info:
        run(
            experiment_name="crash",
            trainable=lambda config: {"i": config["i"]},
            param_space=space,
            tuner_init_kwargs={"run_config": tune.RunConfig(callbacks=[CrashOnce(flag)])},
        )
    message = str(info.value)
    assert "driver exploded on purpose" in message and "run_choice='restore'" in message
    restored = run(
        experiment_name="crash",
        trainable=lambda config: {"i": config["i"]},
        param_space=space,
        run_choice="restore",
    )
    assert sorted(restored["df"]["i"]) == [0, 1, 2, 3]


def test_wrong_token_missing_token_and_offline(cluster, project, tmp_path, monkeypatch):
    good = get_cluster("testcluster")
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token")
    wrong.chmod(0o600)  # a token file others can read gets a RadasWarning
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token to fall back on
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    register_cluster(
        ClusterConfig(**{**good.__dict__, "name": "badtoken", "token_file": str(wrong)})
    )
    register_cluster(ClusterConfig(**{**good.__dict__, "name": "notoken", "token_file": None}))
    register_cluster(
        ClusterConfig(**{**good.__dict__, "name": "stopped", "address": "http://127.0.0.1:9"})
    )
    with pytest.raises(ClusterAuthError, match=f"rejected the token.*{wrong}"):
        run(
            experiment_name="e",
            trainable=add,
            param_space={"a": 1, "b": 1},
            run_with="cluster:badtoken",
        )
    # the cluster's own token in Ray's variable: not sent to an entry that does not name it
    monkeypatch.setenv("RAY_AUTH_TOKEN", Path(good.token_file).read_text().strip())
    with pytest.raises(ClusterAuthError, match=r"requires a token, and its entry names none"):
        run(
            experiment_name="e",
            trainable=add,
            param_space={"a": 1, "b": 1},
            run_with="cluster:notoken",
        )
    with pytest.raises(ClusterOfflineError, match=re.escape("http://127.0.0.1:9")):
        run(
            experiment_name="e",
            trainable=add,
            param_space={"a": 1, "b": 1},
            run_with="cluster:stopped",
        )

    report = get_cluster_availability()
    assert report["testcluster"].online and not report["stopped"].online
    assert report["testcluster"].total["CPU"] == 2
    text = str(report)
    assert "testcluster  [status: online]" in text and "stopped  [status: offline]" in text
    assert "When to use:" in text
    frame = report.to_dataframe().set_index("cluster")
    assert frame.loc["stopped", "status"] == "offline"
    for name in ("badtoken", "notoken", "stopped"):  # later probes would read ~/.ray's token
        unregister_cluster(name)


@pytest.mark.slow
def test_working_dir_too_large_is_refused_before_submitting(cluster, project, monkeypatch):
    monkeypatch.setenv("RADAS_MAX_WORKING_DIR_MB", "1")
    (project / "weights.bin").write_bytes(os.urandom(2 * 2**20))
    with pytest.raises(WorkingDirTooLargeError, match=r"weights.bin \(2.0 MiB\).*excludes"):
        run(experiment_name="big", trainable=add, param_space={"a": 1, "b": 1})
    (project / ".gitignore").write_text("*.bin\n")
    results = run(experiment_name="big", trainable=add, param_space={"a": 1, "b": 1})
    assert results["df"]["score"].tolist() == [2]


@pytest.mark.slow
def test_cli_lists_and_analyzes(cluster, project, capsys):
    run(experiment_name="cli", trainable=add, param_space=grid())
    assert cli.main(["clusters"]) == 0
    assert "testcluster  [status: online]" in capsys.readouterr().out
    assert cli.main(["ls", "--cluster", "testcluster", "--user", "alice"]) == 0
    assert "cli" in capsys.readouterr().out
    target = project / "cli.png"
    code = cli.main(
        [
            "analyze",
            "cli",
            "--user",
            "alice",
            "--run-with",
            RUN_WITH,
            "--plot",
            "barplot",
            "--x",
            "config/a",
            "--y",
            "score",
            "-o",
            str(target),
        ]
    )
    assert code == 0 and target.stat().st_size > 5_000
    assert "(6 rows;" in capsys.readouterr().out
    assert cli.main(["stop", "radas-nobody-1", "--cluster", "testcluster", "--user", "alice"]) == 1


@pytest.mark.slow
def test_optuna_with_pip_runtime_env(cluster, project):
    from ray.tune.search.optuna import OptunaSearch

    results = run(
        experiment_name="optuna",
        trainable=lambda config: {"loss": (config["x"] - 2) ** 2},
        param_space={"x": tune.uniform(-10, 10)},
        runtime_env={"pip": ["optuna"]},
        tuner_init_kwargs=dict(
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(seed=0), metric="loss", mode="min", num_samples=15
            )
        ),
    )
    assert len(results["df"]) == 15
    assert results["df"]["loss"].min() < 1
