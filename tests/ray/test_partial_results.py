"""Results of an experiment that is still running: what was reported so far, said to be partial.

Locally the experiment runs in another process (a script started by the test); on a cluster it
runs as a job. Its trials report once and then wait for a file the test writes, so the test
knows exactly what is finished while it reads.
"""

from __future__ import annotations

import os
import textwrap
import threading
from pathlib import Path

import pytest
from ray import tune

import radas
from radas import cli
from radas.clusters import get_cluster_availability
from radas.core.naming import full_experiment_name
from radas.errors import ExperimentNotFoundError, RadasWarning
from support.held_sweep import held_sweep
from support.waiting import wait_for

TRAINABLE = textwrap.dedent(
    """
    import os, time
    import radas

    def waits_for_release(config):
        # trial 0 reports 3 times and ends; the others first wait for the release file
        while config["i"] and not os.path.exists(config["release"]):
            time.sleep(0.1)
        for loss in (1.0, 0.5, 0.25):
            radas.report({"loss": loss, "i": config["i"]})
    """
)
exec(TRAINABLE)  # the cluster test's trainable (the local test's script defines its own)
SCRIPT = TRAINABLE + textwrap.dedent(
    """
    import sys
    from ray import tune

    radas.run_experiment_sync(
        user_name="alice",
        experiment_name="partial",
        trainable=waits_for_release,
        param_space={"i": tune.grid_search([0, 1, 2]), "release": sys.argv[1]},
        cpu_per_trial=0.5,
        run_choice="run",
        dos=["run"],
    )
    """
)


def statuses(tuner: radas.Tuner) -> list[str]:
    try:
        return sorted(tuner.get_dataframe()["status"])
    except KeyError:  # no trial yet
        return []


def analyze(**kwargs):
    return radas.run_experiment_sync(dos=["analyze"], user_name="alice", **kwargs)


@pytest.mark.slow
def test_a_local_experiment_running_in_another_process_reads_as_partial(project, capsys):
    with held_sweep(project, SCRIPT) as sweep:
        path = Path(radas.get_ray_results_dir("alice")) / full_experiment_name(
            "partial", cwd=str(project)
        )
        wait_for(path.joinpath("radas_trials.json").exists, what="the experiment to start")
        tuner = radas.Tuner(path)
        assert tuner.is_running
        wait_for(
            lambda: statuses(tuner) == ["RUNNING", "RUNNING", "TERMINATED"],
            what="trial 0 to finish while the others run",
        )
        capsys.readouterr()

        results = analyze(experiment_name="partial")
        assert results["partial"] is True
        df = results["df"].set_index("config/i")
        assert df.loc[0, "status"] == "TERMINATED" and df.loc[0, "loss"] == 0.25
        assert df.loc[[1, 2], "status"].tolist() == ["RUNNING", "RUNNING"]
        assert "partial is still running: partial results, 1 of 3 trials finished" in (
            capsys.readouterr().out
        )
        history = results["tuner"].get_history_dataframe()
        assert history.groupby("config/i")["loss"].apply(list).to_dict() == {0: [1.0, 0.5, 0.25]}
        grid = results["tuner"].get_results()  # read while it runs: not kept for later
        assert len(grid) == 3 and grid.num_errors == 0
        reported = [r.metrics_dataframe for r in sorted(grid, key=lambda r: r.path)]  # by trial
        assert [0 if frame is None else len(frame) for frame in reported] == [3, 0, 0]
        assert reported[0]["loss"].tolist() == [1.0, 0.5, 0.25]

        assert cli.main(["analyze", "partial", "--user", "alice"]) == 0
        assert "(3 rows; partial: the experiment is still running;" in capsys.readouterr().out

        sweep.finish()

    done = analyze(experiment_name="partial")
    assert done["partial"] is False and not done["tuner"].is_running
    assert set(done["df"]["status"]) == {"TERMINATED"}
    assert "still running" not in capsys.readouterr().out
    assert done["tuner"].get_history_dataframe().groupby("config/i").size().tolist() == [3] * 3
    # result.json files written while it ran are brought up to date
    grid = radas.Tuner(path).get_results()
    assert [len(result.metrics_dataframe) for result in grid] == [3, 3, 3]


@pytest.mark.cluster
@pytest.mark.slow
def test_a_running_cluster_job_reads_as_partial_and_its_memory_is_reported_truly(
    cluster, project, capsys
):
    release = project / "release"
    box: dict = {}
    run = threading.Thread(
        target=lambda: box.update(
            results=radas.run_experiment_sync(
                user_name="alice",
                experiment_name="partial-job",
                trainable=waits_for_release,  # noqa: F821 (defined by exec above)
                param_space={"i": tune.grid_search([0, 1, 2]), "release": str(release)},
                run_with="cluster:testcluster",
                run_choice="run",
                dos=["run"],
            )
        ),
        daemon=True,
    )
    run.start()
    try:
        path = Path(cluster.state_dir / "ray-results" / "alice") / full_experiment_name(
            "partial-job", cwd=str(project)
        )
        wait_for(path.joinpath("radas_trials.json").exists, what="the job to start")
        tuner = radas.Tuner(path)
        # two trials hold the cluster's 2 CPUs; which two is the scheduler's choice
        wait_for(lambda: "TERMINATED" in statuses(tuner), what="trial 0 to finish")
        wait_for(lambda: statuses(tuner).count("RUNNING") == 2, what="two trials running")
        capsys.readouterr()
        results = analyze(experiment_name="partial-job", run_with="cluster:testcluster")
        assert results["partial"] is True
        assert sorted(results["df"]["status"]) == ["RUNNING", "RUNNING", "TERMINATED"]
        assert "partial-job is still running: partial results, 1 of 3 trials finished" in (
            capsys.readouterr().out
        )

        def availability():
            return get_cluster_availability()["testcluster"]

        # Ray's monitor reports usage every few seconds: wait until it shows the 2 trials
        wait_for(lambda: availability().free.get("CPU") == 0, what="the trials' CPUs in use")
        status = availability()
        assert status.free["memory"] < status.total["memory"]  # reserved by the trials
        ram = status.physical_memory
        assert 0 < ram["available"] < ram["total"]
        text = str(get_cluster_availability())
        assert f"{ram['available'] / 2**30:.1f} of {ram['total'] / 2**30:.1f} GiB RAM" in text
        assert "unreserved for trials" in text
    finally:
        release.touch()
        run.join(timeout=180)
    assert "results" in box, box
    done = analyze(experiment_name="partial-job", run_with="cluster:testcluster")
    assert done["partial"] is False and set(done["df"]["status"]) == {"TERMINATED"}


@pytest.mark.cluster
@pytest.mark.slow
def test_a_cluster_job_with_results_in_an_object_store_reads_as_partial(
    cluster, project, tmp_path, monkeypatch
):
    """The job holds the experiment's lock on the cluster's disk; a client on another machine
    (here: another RADAS_HOME, where this host's locks of object-store roots live) cannot see
    it, so run_experiment asks the cluster whether the job runs."""
    import dataclasses

    from radas.clusters import register_cluster
    from radas.clusters.config import get_cluster, unregister_cluster
    from support.moto_s3 import moto_s3_server

    release = project / "release"
    with moto_s3_server() as s3:
        root = s3.url("partial-results")
        register_cluster(
            dataclasses.replace(
                get_cluster("testcluster"),
                name="testcluster-s3partial",
                managed_by_radas=False,
                results_root=root,
                results_endpoint_url=s3.endpoint_url,
                data_root="",
                cold_data_root="",
            )
        )
        run_with = "cluster:testcluster-s3partial"
        box: dict = {}

        def run_job():
            try:
                with pytest.warns(RadasWarning, match="secret-looking"):  # the test's S3 keys
                    box["results"] = radas.run_experiment_sync(
                        user_name="alice",
                        experiment_name="partial-s3",
                        trainable=waits_for_release,  # noqa: F821 (defined by exec above)
                        param_space={"i": tune.grid_search([0, 1, 2]), "release": str(release)},
                        run_with=run_with,
                        run_choice="run",
                        dos=["run"],
                        runtime_env={"env_vars": s3.env},
                    )
            except BaseException as err:  # handed to the test
                box["error"] = err

        job = threading.Thread(target=run_job, daemon=True)
        job.start()
        try:
            path = f"{root}/alice/{full_experiment_name('partial-s3', cwd=str(project))}"

            def one_finished_two_running() -> bool:
                try:
                    return statuses(radas.Tuner(path)) == ["RUNNING", "RUNNING", "TERMINATED"]
                except ExperimentNotFoundError:  # not stored yet
                    return False

            wait_for(one_finished_two_running, what="trial 0 to finish, the others to run")
            monkeypatch.setenv("RADAS_HOME", str(tmp_path / "another-client"))
            assert not radas.Tuner(path).is_running  # the lock is out of sight here
            results = analyze(experiment_name="partial-s3", run_with=run_with)
            assert results["partial"] is True and results["tuner"].is_running
            assert sorted(results["df"]["status"]) == ["RUNNING", "RUNNING", "TERMINATED"]

            release.touch()
            job.join(timeout=180)
            assert "results" in box, box
            done = analyze(experiment_name="partial-s3", run_with=run_with)
            assert done["partial"] is False and set(done["df"]["status"]) == {"TERMINATED"}
        finally:
            release.touch()
            job.join(timeout=180)
            unregister_cluster("testcluster-s3partial")


@pytest.mark.timing
def test_the_lock_says_whether_it_runs_and_a_readers_probe_never_refuses_a_run(tmp_path):
    import fcntl

    from radas.storage.locks import experiment_lock, is_held, lock_path

    experiment = tmp_path / "alice" / "_proj_exp"
    assert not is_held(experiment) and not (tmp_path / "alice").exists()  # nothing created
    with experiment_lock(tmp_path / "alice", "_proj_exp", "exp"):
        assert is_held(experiment)
    assert not is_held(experiment)

    # a probe's shared lock held at the instant a run starts: the run waits it out
    probe = os.open(lock_path(tmp_path / "alice", "_proj_exp"), os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)
    threading.Timer(0.2, os.close, [probe]).start()
    with experiment_lock(tmp_path / "alice", "_proj_exp", "exp"):
        assert is_held(experiment)
