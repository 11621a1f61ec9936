"""A cluster that scales from zero (Ray's real autoscaler, tests/support/autoscaling_bed.py): a
0-CPU head, one worker type of 2 CPUs (min 0, max 2) that the autoscaler launches when trials ask
and removes after 15 idle seconds. The bed proves itself first (a plain Ray job scales it from
zero), so a failure here is radas's.

Launches take a few seconds here; where a test needs to see radas waiting for one, the
provider takes 12 s more to launch (as a cloud machine boots for a minute)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from ray import tune

import radas
from radas.clusters import get_cluster_availability, shape_record
from radas.clusters.config import get_cluster, register_cluster
from radas.errors import JobFailedError, ResourceRequestError
from support.autoscaling_bed import NodeType, proved_bed
from support.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("autoscaling")]

NAME = "auto"


@pytest.fixture(scope="module")
def bed():
    types = {"cpu2": NodeType({"CPU": 2}, max_workers=2)}
    with proved_bed(NAME, types, idle_timeout_minutes=0.25) as bed:
        yield bed


@pytest.fixture
def scaled_to_zero(bed):
    """The bed with no worker node (idle ones go after 15 s), launching at full speed."""
    bed.launch_delay_file.unlink(missing_ok=True)
    bed.fail_launch_file.unlink(missing_ok=True)
    bed.wait_scaled_to(0)
    yield bed
    bed.launch_delay_file.unlink(missing_ok=True)
    bed.fail_launch_file.unlink(missing_ok=True)


def epochs(config):
    """Reports ``epochs`` epochs a second apart, continuing from its saved state, and marks
    each epoch with the node it ran on."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    state = radas.load_state() or {"epoch": 0}
    for epoch in range(state["epoch"], config["epochs"]):
        time.sleep(config["seconds"])
        (config["marks"] / f"{config['i']}-{epoch}-{node}").touch()
        radas.report({"epoch": epoch, "node": node}, state={"epoch": epoch + 1})


def sweep(name: str, param_space: dict, *, cluster: str = NAME, **arguments):
    """A sweep of ``epochs`` trials on ``cluster`` (1 CPU each unless given; a new run unless
    ``run_choice`` says otherwise)."""
    return radas.run_experiment_sync(
        **{
            "user_name": "alice",
            "experiment_name": name,
            "trainable": epochs,
            "param_space": param_space,
            "run_with": f"cluster:{cluster}",
            "cpu_per_trial": 1,
            "run_choice": "run",
            **arguments,
        }
    )


def one_epoch(marks) -> dict:
    return {"i": 0, "epochs": 1, "seconds": 0, "marks": marks}


def test_a_sweep_scales_from_zero_says_what_it_waits_for_and_keeps_busy_nodes(
    scaled_to_zero, project, capsys
):
    bed = scaled_to_zero
    bed.launch_delay_file.write_text("12")
    launched_before = len(bed.launched())
    marks = project / "marks"
    marks.mkdir()
    # each trial runs ~20 s, longer than the 15 s after which an idle node goes
    results = sweep(
        "from-zero",
        {
            "i": tune.grid_search([0, 1, 2, 3]),
            "epochs": 20,
            "seconds": 1.0,
            "marks": marks,
        },
    )
    out = capsys.readouterr().out
    df = results["df"]
    assert set(df["status"]) == {"TERMINATED"} and len(df) == 4, df
    assert "scales with its autoscaler; trials are sized from its largest node type, cpu2" in out
    assert "× cpu2 the autoscaler is launching" in out, out
    # no node was taken from under a trial: no trial lost, no replacement launched
    assert "lost their node" not in out
    assert len(bed.launched()) - launched_before == 2
    history = results["tuner"].get_history_dataframe()
    for _, trial in history.groupby("trial_id"):
        assert sorted(trial["epoch"]) == list(range(20))  # every epoch once
    # what the driver read is what `radas clusters` shows, per node type
    status = get_cluster_availability()[NAME]
    assert status.shape is not None and status.shape.autoscaling
    types = {t.name: t for t in status.shape.node_types}
    assert types["cpu2"].max_workers == 2 and types["cpu2"].cpus == 2
    assert (
        "cpu2: " in str(status.describe()) and "up to 2 (2 CPUs, 0 GPUs each)" in status.describe()
    )
    table = get_cluster_availability().node_types()
    row = table[(table["cluster"] == NAME) & (table["node_type"] == "cpu2")].iloc[0]
    assert (row["max_workers"], row["cpus"]) == (2, 2.0)


def test_a_request_no_node_type_holds_is_refused_naming_the_types(
    scaled_to_zero, project, tmp_path
):
    record = Path(get_cluster(NAME).results_root) / shape_record.RECORD_FILE
    record.unlink(missing_ok=True)
    # no node runs and no type was read yet: the client cannot tell, the job's driver reads
    # the types on the head and refuses
    with pytest.raises(JobFailedError) as failed:
        sweep("too-big", one_epoch(tmp_path), cpu_per_trial=3)
    assert "cpu_per_trial=3 asks for more than the largest node of cluster:auto" in str(
        failed.value
    )
    assert "cpu2: " in str(failed.value) and "up to 2" in str(failed.value)
    # now the client knows the types (the driver left them in the results root): refused
    # before anything is submitted
    assert record.exists()
    with pytest.raises(ResourceRequestError, match=r"cpu_per_trial=3 .* its node types: .*cpu2"):
        sweep("too-big", one_epoch(tmp_path), cpu_per_trial=3)
    # a GPU no type has (the config claims one per node): refused, naming what it asks for
    claimed = get_cluster(NAME)
    register_cluster(
        type(claimed)(**{**claimed.__dict__, "name": "auto-claims-gpu", "gpus_per_node": 1})
    )
    with pytest.raises(ResourceRequestError, match=r"ask for 1 CPUs, 0.5 GPUs, and no node type"):
        sweep("gpu-wanted", one_epoch(tmp_path), cluster="auto-claims-gpu")


def test_a_node_taken_away_under_a_trial_continues_elsewhere(scaled_to_zero, project, capsys):
    bed = scaled_to_zero
    marks = project / "marks"
    marks.mkdir()
    taken: list[str] = []

    def take_the_node_of_trial_0():
        mark = wait_for(lambda: sorted(marks.glob("0-3-*")), what="trial 0 at epoch 3")[0]
        node = mark.name.split("-", 2)[2]
        taken.append(node)
        bed.kill_node(node)  # as a provider reclaiming a spot machine

    killer = threading.Thread(target=take_the_node_of_trial_0, daemon=True)
    killer.start()
    results = sweep(
        "preempted",
        {"i": tune.grid_search([0, 1]), "epochs": 12, "seconds": 0.5, "marks": marks},
    )
    killer.join(timeout=10)
    out = capsys.readouterr().out
    assert taken, "the node was not taken away"
    df = results["df"]
    assert set(df["status"]) == {"TERMINATED"}, df[["config/i", "status", "error"]]
    assert "lost its node or worker (not an error of the trainable); it runs again" in out
    trial_0 = sorted(marks.glob("0-*"))
    after = [m for m in trial_0 if m.name.split("-", 2)[2] != taken[0]]
    assert after, "trial 0 did not continue on another node"
    # it continued from its saved state, not from epoch 0, and reported each epoch once
    first_elsewhere = min(int(m.name.split("-")[1]) for m in after)
    assert first_elsewhere >= 3
    history = results["tuner"].get_history_dataframe()
    for _, trial in history.groupby("trial_id"):
        epochs_seen = list(trial["epoch"])
        assert len(epochs_seen) == len(set(epochs_seen)), epochs_seen
        assert max(epochs_seen) == 11


def flaky(config):
    if not (config["marks"] / "fixed").exists() and config["i"] == 1:
        raise ValueError("not yet")
    return {"score": config["i"]}


def test_restore_after_the_cluster_scaled_back_to_zero(bed, project):
    marks = project / "marks"
    marks.mkdir()
    arguments = dict(
        user_name="alice",
        experiment_name="restore-from-zero",
        trainable=flaky,
        param_space={"i": tune.grid_search([0, 1]), "marks": marks},
        run_with=f"cluster:{NAME}",
        cpu_per_trial=1,
    )
    first = radas.run_experiment_sync(**arguments, run_choice="run")
    assert sorted(first["df"]["status"]) == ["ERROR", "TERMINATED"]
    bed.wait_scaled_to(0)
    (marks / "fixed").touch()
    second = radas.run_experiment_sync(**arguments, run_choice="restore")
    assert set(second["df"]["status"]) == {"TERMINATED"}
    assert sorted(second["df"]["score"]) == [0, 1]


def test_a_launch_that_keeps_failing_is_reported_not_waited_on(
    scaled_to_zero, project, tmp_path, capsys
):
    bed = scaled_to_zero
    bed.fail_launch_file.write_text("quota exceeded for cpu2 (the test's provider)")
    started = time.monotonic()
    with pytest.raises(JobFailedError) as failed:
        sweep(
            "no-quota",
            one_epoch(tmp_path),
            runtime_env={"env_vars": {"RADAS_LAUNCH_FAILURE_S": "15"}},
        )
    message = str(failed.value)
    assert "NodeLaunchError" in message and "failed to launch nodes" in message
    assert "quota exceeded for cpu2" in message
    assert "the autoscaler's last launch failed: cpu2: quota exceeded" in capsys.readouterr().out
    assert time.monotonic() - started < 180
    # the quota is back: the experiment continues where it stopped
    bed.fail_launch_file.unlink()
    restored = sweep("no-quota", one_epoch(tmp_path), run_choice="restore")
    assert list(restored["df"]["status"]) == ["TERMINATED"]
