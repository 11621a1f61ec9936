"""The `radas` command's cluster commands, run as a user runs them: the installed `radas`
script in a subprocess, with this test session's RADAS_HOME and RADAS_CONFIG; and the commands
given a job id (`radas logs/stop JOB_ID`), through `radas.cli.main`, on the session's cluster:
they act for the job's own user, and every command radas prints as a hint runs as printed."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from ray import tune

import radas
from radas import cli
from radas.clusters.local import cluster_dir
from radas.clusters.node_processes import node_temp_dir
from radas.errors import JobFailedError
from support.waiting import in_thread, wait_for

pytestmark = pytest.mark.cluster
RADAS = str(Path(sys.executable).with_name("radas"))


def radas_command(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RADAS, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},  # conftest set RADAS_HOME and RADAS_CONFIG
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_cluster_up_refuses_fractional_cpus_before_starting_anything():
    name = unique("frac")
    done = radas_command("cluster", "up", name, "--num-cpus", "1.5")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "num_cpus=1.5" in done.stderr and "whole number" in done.stderr
    assert "stopped" not in done.stdout + done.stderr
    assert not (cluster_dir(name) / "state.json").exists()


@pytest.mark.slow  # a `ray start` that fails, then `cluster down`: 23 s under load
def test_a_failed_start_says_what_failed_and_nothing_about_results():
    name = unique("fails")
    blocker = Path(node_temp_dir(name, "head"))  # a file where Ray wants its temp dir
    blocker.touch()
    try:
        done = radas_command("cluster", "up", name, "--num-cpus", "1")
    finally:
        blocker.unlink()
        radas_command("cluster", "down", name)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"Local cluster {name!r} did not start: `ray start` exited" in done.stderr
    assert "FileExistsError" in done.stderr and "\x1b[" not in output
    assert "results are kept" not in output and "stopped" not in output
    assert not (cluster_dir(name) / "state.json").exists()


@pytest.mark.slow
def test_every_flag_of_cluster_up_down_and_clusters():
    """One start with every `cluster up` flag (whole counts written as 2.0 included)."""
    name = unique("cli")
    try:
        up = radas_command(
            "cluster",
            "up",
            name,
            "--num-cpus",
            "2.0",
            "--num-gpus",
            "1",
            "--workers",
            "1",
            "--worker-cpus",
            "1",
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"local cluster {name!r} is up" in up.stdout
        assert "2 CPUs on the head, 1 worker node(s)" in up.stdout
        temp_dirs = [Path(node_temp_dir(name, node)) for node in ("head", "w1")]
        assert all(folder.is_dir() for folder in temp_dirs)

        listing = radas_command("clusters")
        assert listing.returncode == 0, listing.stdout + listing.stderr
        section = listing.stdout.split(f"{name}  [status: ")[1].split("\n\n")[0]
        assert section.startswith("online]"), section
        assert "on 2 node(s)" in section and f"run_with='cluster:{name}'" in section
        # sized from the cluster's own largest node (the head: 2 CPUs, 1 GPU), no config numbers
        assert "Trials sized from: 2 CPUs, 1 GPUs" in section and "its largest node type" in section
    finally:
        down = radas_command("cluster", "down", name, "--force")
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"local cluster {name!r} stopped (its results are kept)" in down.stdout
    assert [folder for folder in temp_dirs if folder.exists()] == []  # Ray's session files

    again = radas_command("cluster", "down", name)
    assert again.returncode == 1 and f"local cluster {name!r} is not running" in again.stdout
    listing = radas_command("clusters")
    assert f"{name}  [status: offline]" in listing.stdout


# --- radas logs / stop JOB_ID: the job's own user; hints that run as printed -----------------

RUN_WITH = "cluster:testcluster"


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``radas ARGV`` through main(): its exit status, what it printed, its errors."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def run_hint(hint: str) -> tuple[int, str, str]:
    """A command radas printed (``radas logs ... --cluster ...``), run as printed."""
    program, *argv = shlex.split(hint)
    assert program == "radas", hint
    return run_cli(*argv)


def hints_in(text: str) -> list[str]:
    return re.findall(r"`(radas [^`]+)`", text)


@pytest.mark.slow  # one job whose driver fails: about 20 s under load
def test_a_failed_jobs_hints_run_as_printed_for_a_user_who_is_not_the_default(
    cluster, project, monkeypatch
):
    from ray.tune import Callback

    class FailTheDriver(Callback):
        def on_step_end(self, iteration, trials, **info):
            raise RuntimeError("the driver failed on purpose")

    owner = unique("owner")
    monkeypatch.setenv("RADAS_USER", "someone-else")  # the default finds none of owner's jobs
    with pytest.raises(JobFailedError) as failed:
        radas.run_experiment_sync(
            user_name=owner,
            experiment_name="fails",
            trainable=lambda config: {"x": config["x"]},
            param_space={"x": 1},
            tuner_init_kwargs={"run_config": tune.RunConfig(callbacks=[FailTheDriver()])},
            run_with=RUN_WITH,
            run_choice="run",
            dos=["run"],
        )
    job_id = failed.value.job_id
    assert job_id.startswith(f"radas-{owner}-fails-")
    [hint] = hints_in(str(failed.value))
    assert hint == f"radas logs {job_id} --cluster testcluster"
    code, out, err = run_hint(hint)
    assert code == 0, err
    assert "the driver failed on purpose" in out and "Traceback" in out

    # stop takes the user from the job too; the job ended, so there is nothing to stop
    code, out, err = run_cli("stop", job_id, "--cluster", "testcluster")
    assert code == 0, err
    assert f"job {job_id} already ended: FAILED (driver error)" in out
    assert f"\njob {job_id}: FAILED (driver error)" in out

    # an explicit --user must own the job; the error's hint lists that user's jobs
    code, _, err = run_cli("logs", job_id, "--cluster", "testcluster", "--user", "someone-else")
    assert code == 1 and "belongs to another user" in err
    [hint] = hints_in(err)
    assert hint == "radas ls --cluster testcluster --user someone-else"
    code, out, _ = run_hint(hint)
    assert code == 0
    assert out.startswith("Experiments of 'someone-else' (--user) on cluster:testcluster: 0 job")

    # a job id radas never submitted: the hint lists the default user's jobs
    code, _, err = run_cli("logs", "radas-nobody-x-r1", "--cluster", "testcluster")
    assert code == 1
    assert "No radas job 'radas-nobody-x-r1' on cluster:testcluster" in err
    [hint] = hints_in(err)
    assert run_hint(hint)[0] == 0

    # radas ls: whose jobs and why, in its first line
    monkeypatch.setenv("RADAS_USER", owner)
    code, out, _ = run_cli("ls", "--cluster", "testcluster")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Experiments of {owner!r} (RADAS_USER) on cluster:testcluster: 1 job(s)"
    assert job_id in lines[2] and "FAILED" in lines[2]


def waits_for(release: Path):
    """A trainable that marks its start, then runs until the file ``release`` exists."""

    def trainable(config):
        (release.parent / "started").touch()
        while not release.exists():
            time.sleep(0.1)
        return {"x": config["x"]}

    return trainable


@pytest.mark.slow  # one job, stopped while it runs: about 20 s under load
def test_the_stop_hint_of_radas_ls_stops_the_job_of_another_user(cluster, project, monkeypatch):
    owner = unique("owner")
    release = project / "release"
    thread, box = in_thread(
        radas.run_experiment_sync,
        user_name=owner,
        experiment_name="waits",
        trainable=waits_for(release),
        param_space={"x": 1},
        run_with=RUN_WITH,
        run_choice="run",
        dos=["run"],
    )
    try:
        wait_for(lambda: (project / "started").exists(), what="the job to start its trial")
        monkeypatch.setenv("RADAS_USER", owner)
        code, out, _ = run_cli("ls", "--cluster", "testcluster")
        assert code == 0 and "RUNNING" in out
        [hint] = re.findall(r"^    stop it: (radas stop .+)$", out, flags=re.MULTILINE)
        [job] = radas.get_client(user_name=owner, run_with=RUN_WITH).jobs()
        assert hint == f"radas stop {job.job_id} --cluster testcluster"

        monkeypatch.setenv("RADAS_USER", "someone-else")  # the hint needs no --user
        code, out, err = run_hint(hint)
        assert code == 0, err
        assert f"stopping job {job.job_id} (experiment 'waits')" in out
        assert f"\njob {job.job_id}: STOPPED" in out, out
    finally:
        release.touch()
        thread.join(timeout=300)
    assert not thread.is_alive()
    assert "error" not in box, box.get("error")


@pytest.mark.parametrize("where", ["local", "cluster"])
def test_not_found_hints_of_analyze_and_logs_list_what_the_user_has(
    where, cluster, project, monkeypatch
):
    monkeypatch.setenv("RADAS_USER", "someone-else")
    on = ["--run-with", RUN_WITH] if where == "cluster" else []
    cluster_option = " --cluster testcluster" if where == "cluster" else ""
    title = "on cluster:testcluster" if where == "cluster" else "stored on this machine"
    for argv, user, user_option in [
        (["analyze", "never-run", "--user", "bob", *on], "bob", " --user bob"),
        (["logs", "--experiment", "never-run", *on], "someone-else", ""),
    ]:
        code, _, err = run_cli(*argv)
        assert code == 1 and "never_run" in err, err
        [hint] = hints_in(err)
        assert hint == f"radas ls{cluster_option}{user_option}"
        code, out, _ = run_hint(hint)
        assert code == 0
        whose = "--user" if user_option else "RADAS_USER"
        assert out.startswith(f"Experiments of {user!r} ({whose}) {title}"), out
