"""Statuses that tell the truth (issue 13 §2): one status in words (``radas.core.status``) for the
returned outcome, the closing console line, the mail, ``radas ls`` and the cluster client; and
a not-found error that says where else the experiment is stored (§4).

Real local sweeps in-process; the cluster case on the session's real `ray start` cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from ray import tune

import radas
from radas import cli
from radas.core.status import TrialCounts, experiment_status
from radas.notify.email import experiment_summary

USER = "status-tester"
ERRORED = "all-errored"


def broken(config):
    raise ValueError(f"bad x={config['x']}")


@pytest.mark.parametrize(
    ("run", "counts", "status"),
    [
        ("ENDED", TrialCounts(6, 6, 0), "FINISHED"),
        ("SUCCEEDED", TrialCounts(3, 0, 3), "FINISHED, 3 of 3 trials errored"),
        ("STOPPED", TrialCounts(3, 3, 0), "FINISHED"),  # stopped after its last trial ended
        ("ENDED", TrialCounts(10, 4, 0), "STOPPED, 4 of 10 trials finished"),
        ("STOPPED", TrialCounts(10, 4, 2), "STOPPED, 4 of 10 trials finished, 2 errored"),
        ("RUNNING", TrialCounts(10, 2, 0), "RUNNING, 2 of 10 trials finished"),
        ("RUNNING", TrialCounts(0, 0, 0), "RUNNING"),
        ("PENDING", None, "PENDING"),
        ("FAILED", TrialCounts(4, 2, 0), "FAILED (driver error), 2 of 4 trials finished"),
        ("FAILED", None, "FAILED (driver error)"),
        ("ENDED", TrialCounts(0, 0, 0), "EMPTY (no trials stored)"),
        ("SUCCEEDED", None, "SUCCEEDED (trials unknown: results root not readable here)"),
    ],
)
def test_status_in_words(run, counts, status):
    unknown = "results root not readable here" if counts is None else ""
    assert experiment_status(run, counts, unknown=unknown) == status


@pytest.fixture(scope="module")
def errored(tmp_path_factory):
    """A real local sweep whose three trials all raise: (its folder, results, printed)."""
    folder = tmp_path_factory.mktemp("errored-project")
    previous = os.getcwd()
    os.chdir(folder)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            results = radas.run_experiment_sync(
                user_name=USER,
                experiment_name=ERRORED,
                trainable=broken,
                param_space={"x": tune.grid_search([1, 2, 3])},
                run_choice="run",
            )
    finally:
        os.chdir(previous)
    return folder, results, printed.getvalue()


def ls(*args: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["ls", "--user", USER, *args]) == 0
    return printed.getvalue()


def test_an_all_errored_experiment_says_so_everywhere(errored):
    folder, results, printed = errored
    status = "FINISHED, 3 of 3 trials errored"
    outcome = results["outcome"]
    assert outcome.status == status
    assert (outcome.total_trials, outcome.finished_trials, outcome.errored_trials) == (3, 0, 3)
    assert f"[radas] {ERRORED}: {status} (3 trials, " in printed, printed

    summary = experiment_summary(experiment_name=ERRORED, results=results)
    assert summary.status == status
    assert summary.subject == f"[radas] {ERRORED} {status} (0/3 trials done)"
    assert f"radas experiment {ERRORED!r}: {status}\n" in summary.body

    text = ls().splitlines()
    assert text[0].startswith(f"Experiments of {USER!r} (--user) stored on this machine (")
    assert text[1].split() == [
        "experiment",
        "folder",
        "status",
        "fin/err/total",
        "last",
        "update",
        "path",
    ]
    [row] = [line for line in text[2:] if line.startswith(ERRORED + " ")]
    assert f" {folder} " in row and f"  {status}  " in row and "  0/3/3  " in row
    assert row.endswith(results["experiment_path"])

    listing = json.loads(ls("--json"))
    assert (listing["user_name"], listing["run_with"]) == (USER, "local")
    [entry] = [e for e in listing["experiments"] if e["experiment"] == ERRORED]
    assert entry["status"] == status and entry["cwd"] == str(folder)
    assert (entry["finished"], entry["errored"], entry["total"]) == (0, 3, 3)
    assert entry["path"] == results["experiment_path"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?", entry["last_update"])

    # the installed command, as a script or an agent runs it
    radas_command = Path(sys.executable).with_name("radas")
    done = subprocess.run(
        [str(radas_command), "ls", "--json", "--user", USER],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout) == listing


def test_not_found_says_which_folder_has_the_experiment(errored, project):
    folder, _, _ = errored
    where = f"run_with='local' from the folder {folder} (cd there)"
    with pytest.raises(radas.ExperimentNotFoundError, match=re.escape(where)):
        radas.run_experiment_sync(user_name=USER, experiment_name=ERRORED, dos=["analyze"])
    with pytest.raises(radas.ExperimentNotFoundError, match=re.escape(where)):
        radas.run_experiment_sync(
            user_name=USER,
            experiment_name=ERRORED,
            trainable=broken,
            run_choice="restore",
            dos=["run"],
        )
    with pytest.raises(radas.ExperimentNotFoundError) as nowhere:
        radas.run_experiment_sync(user_name=USER, experiment_name="never-run", dos=["analyze"])
    assert "stored elsewhere" not in str(nowhere.value)


@pytest.mark.cluster
def run_cli(*args: str) -> tuple[int, str]:
    """``radas ARGS`` through main(): its exit status and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(list(args))
    return code, printed.getvalue()


@pytest.mark.slow
def test_cluster_jobs_show_their_trials_or_say_they_cannot(cluster, project):
    from radas.clusters.config import get_cluster, register_cluster, unregister_cluster

    run_with = "cluster:testcluster"
    results = radas.run_experiment_sync(
        user_name=USER,
        experiment_name="cluster-errored",
        trainable=broken,
        param_space={"x": tune.grid_search([1, 2])},
        run_with=run_with,
        run_choice="run",
        dos=["run"],
    )
    assert results["outcome"].status == "FINISHED, 2 of 2 trials errored"
    client = radas.get_client(user_name=USER, run_with=run_with)
    jobs = client.list_experiments()
    [row] = jobs[jobs["experiment"] == "cluster-errored"].to_dict(orient="records")
    assert row["status"] == "FINISHED, 2 of 2 trials errored"
    assert row["job_status"] == "SUCCEEDED"
    assert (row["finished"], row["errored"], row["total"]) == (0, 2, 2)
    shown = client.experiments_text()
    assert re.search(
        rf"{re.escape(row['job_id'])} +cluster-errored .*FINISHED, 2 of 2 trials errored", shown
    )

    job = ["--user", USER, row["job_id"]]
    # `radas logs --follow` and `radas stop` say how the experiment ended, not Ray's SUCCEEDED
    code, printed = run_cli("logs", "--follow", "--cluster", "testcluster", *job)
    assert printed.endswith(f"job {row['job_id']}: FINISHED, 2 of 2 trials errored\n"), printed
    assert code == 1  # every trial errored
    code, printed = run_cli("stop", "--cluster", "testcluster", *job)
    assert "already ended: FINISHED, 2 of 2 trials errored; nothing to stop" in printed, printed
    assert code == 0

    # the same job server, seen from a machine where the results root is not mounted
    away = dataclasses.replace(
        get_cluster("testcluster"), name="testcluster-away", results_root="/nonexistent/radas"
    )
    register_cluster(away)
    try:
        seen = radas.list_experiments(user_name=USER, run_with="cluster:testcluster-away")
        code, printed = run_cli("logs", "--follow", "--cluster", "testcluster-away", *job)
    finally:
        unregister_cluster("testcluster-away")
    assert "SUCCEEDED (trials unknown: results root not readable here" in printed, printed
    assert code == 0  # the job ended normally; whether its trials errored is not known here
    [row] = seen[seen["experiment"] == "cluster-errored"].to_dict(orient="records")
    assert row["status"].startswith("SUCCEEDED (trials unknown: results root not readable here")
    assert pd.isna(row["total"]) and row["job_status"] == "SUCCEEDED"


def test_the_status_module_examples_hold():
    import doctest

    from radas.core import status as _status

    failures, tried = doctest.testmod(_status)
    assert (failures, tried > 0) == (0, True)
