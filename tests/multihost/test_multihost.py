"""radas on several hosts that share a network and an object store, not a disk (issue 12 §3).

The test bed (tests/support/hostbed.py): the client is this process in the root namespace; the head
and two workers are hosts of their own (network and mount namespaces, private /tmp); results
go to an S3 server (moto) on the bed's bridge. Trials cannot write into the client's files, so
they leave their marks (start, epoch, done, with their node's IP) as cloud artifacts in the
same bucket, and the client reads them from there.

S3 credentials: the bed's moto server takes the "testing" keys; every host has them in its own
environment (as an admin would set them), the client gets them from ``bed.aws_env``. They are
test values; real keys never go into ``runtime_env`` (Ray keeps it with the job and logs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import seaborn as sns
from ray import tune

import radas
import radas.cloud_artifact as rda
from radas.clusters.config import unregister_cluster
from support.hostbed import Host, HostBed, available

pytest_plugins = ["support.hostbed_fixtures"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.cluster,
    pytest.mark.xdist_group("hostbed"),  # one worker: the bed is machine-wide
    pytest.mark.skipif(available() is not None, reason=str(available())),
    # the bed's head is reached over plain http at 198.18.x: radas's warning about sending the
    # token that way (tested in test_cluster_jobs.py) is expected here
    pytest.mark.filterwarnings("ignore:radas sends the Ray token:radas.errors.RadasWarning"),
]

USER = "alice"
CLUSTER = "bed"
RUN_WITH = f"cluster:{CLUSTER}"


@dataclass
class BedCluster:
    """The bed registered as cluster ``bed``, its results under a fresh ``s3://`` prefix."""

    bed: HostBed
    results_root: str
    tag: str  # this test's folder for the trials' marks among the cloud artifacts

    def run(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("user_name", USER)
        kwargs.setdefault("run_with", RUN_WITH)
        kwargs.setdefault("run_choice", "run")
        return radas.run_experiment_sync(**kwargs)

    def marks(self, kind: str) -> list[dict[str, Any]]:
        """The marks trials left (``kind``: start, epoch, done): their i, epoch and ip, read
        from the names (one listing of the bucket)."""
        found = []
        for path in rda.list_cloud_artifacts(f"marks/{self.tag}"):
            name_kind, i, epoch, ip, _ = Path(path).stem.split("_")
            if name_kind == kind:
                found.append({"i": int(i), "epoch": int(epoch), "ip": ip})
        return found

    @property
    def host_ips(self) -> set[str]:
        return {host.ip for host in self.bed.hosts}


@pytest.fixture
def bed_cluster(
    multi_host_bed: HostBed, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BedCluster]:
    bed = multi_host_bed
    for name, value in bed.aws_env.items():  # the client's own S3 credentials
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # the config says where S3 is
    tag = uuid.uuid4().hex[:8]
    results_root = f"s3://{bed.s3_bucket}/results-{tag}"
    bed.write_cluster_config(
        os.environ["RADAS_CONFIG"],
        CLUSTER,
        results_root=results_root,
        results_endpoint_url=bed.s3_endpoint_url,
    )
    rda.init(user_name=USER, run_with=RUN_WITH)
    yield BedCluster(bed, results_root, tag)
    unregister_cluster(CLUSTER)  # later tests of the session list only their own clusters


# --- trainables (they run on the hosts) ----------------------------------------------------


def mark(kind: str, config: dict[str, Any], epoch: int = -1) -> None:
    """Leave a mark of this trial in the bucket: ``kind``, its ``i``, ``epoch``, its node's IP
    (in the name, so that one listing reads them all)."""
    import ray

    rda.init(user_name=USER)  # on the cluster: its artifact root, from the job's environment
    ip = ray.util.get_node_ip_address()
    name = f"{kind}_{config['i']}_{epoch}_{ip}_{uuid.uuid4().hex}.txt"
    rda.save_cloud_artifact(f"marks/{config['tag']}/{name}", name)


def shifted_sum(config: dict[str, Any]) -> dict[str, Any]:
    """Reads the client's artifact, writes one back, and notes where it ran. The first trials
    wait (up to a minute) until trials run on three hosts: 1 CPU each, so whenever three run
    side by side they are on three hosts, however Ray placed them."""
    import ray

    rda.init(user_name=USER)
    ip = ray.util.get_node_ip_address()
    rda.save_cloud_artifact(f"hosts/{config['tag']}/{ip}.txt", ip)
    deadline = time.monotonic() + 60
    while len(rda.list_cloud_artifacts(f"hosts/{config['tag']}")) < 3:
        if time.monotonic() > deadline:
            break  # the test's assertion on the hosts tells
        time.sleep(0.2)
    offset = rda.load_cloud_artifact(f"inputs/{config['tag']}.json")["offset"]
    score = config["a"] + config["b"] + offset
    workdir = Path.cwd() / f"written-on-host-{config['a']}-{config['b']}"
    workdir.write_text("a file on the host's own disk")
    rda.save_cloud_artifact(
        f"outputs/{config['tag']}/{config['a']}-{config['b']}.json", {"score": score, "ip": ip}
    )
    return {"score": score, "ip": ip, "host_file": str(workdir)}


def checkpointed(config: dict[str, Any]) -> None:
    """Trials 0-2 take 2 epochs, the others 12; a checkpoint every epoch, continued from the
    newest one when the trial restarts. The long ones hold before epoch 3 until the client
    writes ``go/<tag>.txt`` (so a stop surely finds them half-way)."""
    import tempfile

    import ray

    epochs = 2 if config["i"] < 3 else 12
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            start = json.loads((Path(folder) / "state.json").read_text())["epoch"] + 1
    mark("start", config, epoch=start)
    ip = ray.util.get_node_ip_address()
    for epoch in range(start, epochs):
        if epoch == 3:
            deadline = time.monotonic() + 120
            while not rda.exists(f"go/{config['tag']}.txt") and time.monotonic() < deadline:
                time.sleep(0.2)
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "state.json").write_text(json.dumps({"epoch": epoch}))
            radas.report(
                {"epoch": epoch, "ip": ip}, checkpoint=tune.Checkpoint.from_directory(folder)
            )
        mark("epoch", config, epoch=epoch)
    mark("done", config)


def steady(config: dict[str, Any]) -> None:
    """Eight reports, half a second apart."""
    import ray

    mark("start", config)
    ip = ray.util.get_node_ip_address()
    for step in range(8):
        time.sleep(0.5)
        radas.report({"step": step, "ip": ip})
    mark("done", config)


# --- the scenarios -------------------------------------------------------------------------


def test_a_grid_runs_on_all_three_hosts_and_is_reanalyzed_from_s3(bed_cluster: BedCluster):
    """The seed's workflow, storage both ways, and the client never sees a host's disk."""
    bed = bed_cluster.bed
    tag = bed_cluster.tag
    rda.save_cloud_artifact(f"inputs/{tag}.json", {"offset": 100})  # client -> trainable
    space = {"a": tune.grid_search([1, 2, 3]), "b": tune.grid_search([10, 20]), "tag": tag}
    results = bed_cluster.run(
        experiment_name="grid",
        trainable=shifted_sum,
        param_space=space,
        plot_fn=sns.relplot,
        plot_kwargs=dict(x="config/a", y="score", hue="config/b"),
        plot_format="png",
    )
    df = results["df"]
    assert len(df) == 6
    assert (df["score"] == df["config/a"] + df["config/b"] + 100).all()
    assert results["experiment_path"].startswith(f"{bed_cluster.results_root}/{USER}/")
    assert Path(results["fig_path"]).stat().st_size > 5_000

    full = results["tuner"].get_dataframe()
    assert set(full["status"]) == {"TERMINATED"}
    assert set(full["node_ip"]) == bed_cluster.host_ips  # trials ran on all three hosts
    assert (full["ip"] == full["node_ip"]).all()

    # trainable -> client: every trial's artifact, read here from the bucket
    written = {p: rda.load_cloud_artifact(p) for p in rda.list_cloud_artifacts(f"outputs/{tag}")}
    assert len(written) == 6
    by_config = {(row["config/a"], row["config/b"]): row for _, row in full.iterrows()}
    for path, record in written.items():
        a, b = map(int, Path(path).stem.split("-"))
        assert record == {"score": a + b + 100, "ip": by_config[a, b]["node_ip"]}

    # what a trial wrote on its host's disk exists there and is not visible to the client
    ip_to_host = {host.ip: host for host in bed.hosts}
    for _, row in full.iterrows():
        assert not Path(row["host_file"]).exists()
        on_host = bed.run(ip_to_host[row["node_ip"]], f"test -f {row['host_file']}")
        assert on_host.returncode == 0, row["host_file"]
    for host in bed.hosts:  # nor does any host keep the results on its disk
        assert bed.run(host, "test -e /tmp/radas/results").returncode == 1

    again = bed_cluster.run(
        experiment_name="grid",
        trainable=shifted_sum,
        dos=["analyze"],
        run_choice=None,
        plot_fn=sns.lineplot,
        plot_kwargs=dict(x="config/a", y="score", hue="config/b"),
        plot_format="svg",
    )
    assert again["df"]["score"].tolist() == df["score"].tolist()
    assert again["df"]["trial_id"].tolist() == df["trial_id"].tolist()
    assert "<svg" in Path(again["fig_path"]).read_text()


def test_optuna_search_on_the_hosts(bed_cluster: BedCluster):
    from ray.tune.search.optuna import OptunaSearch

    results = bed_cluster.run(
        experiment_name="optuna",
        trainable=lambda config: {"loss": (config["x"] - 2) ** 2},
        param_space={"x": tune.uniform(-10, 10)},
        tuner_init_kwargs=dict(
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(seed=0), metric="loss", mode="min", num_samples=8
            )
        ),
    )
    df = results["df"]
    assert len(df) == 8 and df["trial_id"].is_unique
    assert set(results["tuner"].get_dataframe()["status"]) == {"TERMINATED"}
    assert ((df["config/x"] - 2) ** 2 - df["loss"]).abs().max() < 1e-9
    assert results["outcome"].finished_trials == 8


@pytest.mark.integrity("survive")
def test_stop_attach_from_a_second_process_then_restore_continues_checkpoints_on_another_host(
    bed_cluster: BedCluster, project: Path, tmp_path_factory: pytest.TempPathFactory, capfd
):
    bed = bed_cluster.bed
    space = {"i": tune.grid_search(list(range(6))), "tag": bed_cluster.tag}
    worker_ips = {worker.ip for worker in bed.workers}
    thread, box = _in_thread(
        bed_cluster.run, experiment_name="long", trainable=checkpointed, param_space=space
    )

    def a_long_trial_deep_in_on_a_worker() -> dict[str, Any] | None:
        done = {m["i"] for m in bed_cluster.marks("done")}
        deep = [
            m
            for m in bed_cluster.marks("epoch")
            if m["i"] >= 3 and m["epoch"] == 2 and m["ip"] in worker_ips
        ]
        return deep[0] if {0, 1, 2} <= done and deep else None

    moved = _wait_for(a_long_trial_deep_in_on_a_worker, "a long trial at epoch 2 on a worker", box)

    stopper = tmp_path_factory.mktemp("stopper") / "stop.py"
    stopper.write_text(STOPPER.format(user=USER, run_with=RUN_WITH))
    stopped = subprocess.run(
        [sys.executable, str(stopper)],
        cwd=project,  # the same working directory: the same experiment
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopping job" in stopped.stdout and "stopped" in stopped.stdout
    seen = json.loads(stopped.stdout.split("STOPPED ", 1)[1].splitlines()[0])
    thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    assert box["results"]["outcome"].interrupted
    jobs = radas.get_client(user_name=USER, run_with=RUN_WITH).list_experiments()
    assert jobs.loc[jobs["experiment"] == "long", "status"].tolist()[-1].startswith("STOPPED")
    finished_before = sorted({m["i"] for m in bed_cluster.marks("done")})
    assert seen["terminated"] == finished_before == [0, 1, 2]  # the long ones held
    assert seen["total"] == 6
    rda.save_cloud_artifact(f"go/{bed_cluster.tag}.txt", "go")

    # the worker that ran the checkpointed trial goes away: the trial must continue elsewhere
    victim = next(worker for worker in bed.workers if worker.ip == moved["ip"])
    bed.kill_raylet(victim)
    bed.wait_for_states({victim.ip: "DEAD"}, timeout_s=120)
    capfd.readouterr()
    restored = bed_cluster.run(
        experiment_name="long",
        trainable=checkpointed,
        param_space=space,
        run_choice="restore",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )
    output = capfd.readouterr().out
    assert "resuming from" in output and "3 of 6 trials were already done" in output
    assert restored["outcome"].already_done == 3
    final = restored["tuner"].get_dataframe()
    assert sorted(final["config/i"]) == list(range(6))
    assert set(final["status"]) == {"TERMINATED"}

    starts = bed_cluster.marks("start")
    for i in finished_before:  # finished before the stop: not run again
        assert [m["epoch"] for m in starts if m["i"] == i] == [0]
    again = sorted((m for m in starts if m["i"] == moved["i"]), key=lambda m: m["epoch"])
    assert len(again) == 2 and again[0] == {"i": moved["i"], "ip": victim.ip, "epoch": 0}
    resumed_at = again[1]["epoch"]
    assert resumed_at == moved["epoch"] + 1 == 3  # from its checkpoint, not from scratch
    assert again[1]["ip"] != victim.ip  # on another host

    history = restored["df"]
    assert history.groupby("config/i").size().tolist() == [2, 2, 2, 12, 12, 12]
    rows = history[history["config/i"] == moved["i"]].sort_values("epoch")
    assert rows["epoch"].tolist() == list(range(12))  # every epoch once: none lost, none twice
    assert set(rows.loc[rows["epoch"] < resumed_at, "ip"]) == {victim.ip}
    assert victim.ip not in set(rows.loc[rows["epoch"] >= resumed_at, "ip"])


STOPPER = textwrap.dedent(
    """
    import json
    import radas

    results = radas.run_experiment_sync(
        user_name="{user}", experiment_name="long", run_with="{run_with}",
        run_choice="stop_attach", tuner_to_df_fn=lambda tuner: tuner.get_dataframe(),
    )
    df = results["df"]
    terminated = sorted(int(i) for i in df.loc[df["status"] == "TERMINATED", "config/i"])
    print("STOPPED " + json.dumps({{"terminated": terminated, "total": len(df)}}))
    """
)


@pytest.mark.integrity("survive")
def test_a_worker_cut_off_mid_experiment_loses_no_trial_and_counts_none_twice(
    bed_cluster: BedCluster,
):
    bed = bed_cluster.bed
    space = {"i": tune.grid_search(list(range(6))), "tag": bed_cluster.tag}
    thread, box = _in_thread(
        bed_cluster.run,
        experiment_name="cut",
        trainable=steady,
        param_space=space,
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )

    def running_on_a_worker() -> tuple[Host, set[int]] | None:
        done = {m["i"] for m in bed_cluster.marks("done")}
        for worker in bed.workers:
            running = {m["i"] for m in bed_cluster.marks("start") if m["ip"] == worker.ip}
            if running - done:
                return worker, running - done
        return None

    victim, cut_off = _wait_for(running_on_a_worker, "a trial running on a worker", box)
    bed.link_down(victim)
    thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    results = box["results"]
    final = results["tuner"].get_dataframe()
    assert sorted(final["config/i"]) == list(range(6)) and final["trial_id"].is_unique
    assert set(final["status"]) == {"TERMINATED"}
    assert results["outcome"].finished_trials == 6
    for i in cut_off:  # finished elsewhere
        assert final.loc[final["config/i"] == i, "node_ip"].item() != victim.ip
    history = results["df"]
    assert history.groupby("config/i").size().tolist() == [8] * 6  # every report once
    for _, rows in history.groupby("config/i"):
        assert sorted(rows["step"]) == list(range(8))


# --- helpers ---------------------------------------------------------------------------------


@pytest.mark.integrity("error")
def test_path_roots_the_hosts_do_not_share_are_refused_before_the_sweep(
    multi_host_bed: HostBed, bed_client_dirs: dict[str, Path], project: Path
):
    """A results_root and data_root that are folders of the client, and other (empty)
    folders on every host: refused before any trial runs (issue 23; before, the job ran to
    its end, then ExperimentNotFoundError: no results stored)."""
    from radas.errors import ClusterConfigError

    root = bed_client_dirs["results"] / f"paths-{uuid.uuid4().hex[:8]}"  # hidden on the hosts
    multi_host_bed.write_cluster_config(
        os.environ["RADAS_CONFIG"],
        "bed-paths",
        results_root=str(root / "results"),
        data_root=str(root / "data"),
        cold_data_root=str(root / "cold"),
    )
    start = time.monotonic()
    try:
        with pytest.raises(ClusterConfigError) as caught:
            radas.run_experiment_sync(
                user_name=USER,
                experiment_name="private-roots",
                run_with="cluster:bed-paths",
                run_choice="run",
                trainable=lambda config: {"score": config["i"]},
                param_space={"i": tune.grid_search([1, 2])},
            )
    finally:
        unregister_cluster("bed-paths")
    print(f"refused in {time.monotonic() - start:.1f} s")
    message = str(caught.value)
    assert f"does not see results_root = '{root / 'results'}'" in message
    assert f"data_root = '{root / 'data'}'" in message and "The sweep did not start" in message
    assert not (root / "results" / USER).exists()  # nothing of the sweep reached the client
    assert list(root.rglob(".radas-checks/*")) == []


def _in_thread(function: Callable[..., Any], **kwargs: Any) -> tuple[threading.Thread, dict]:
    """Run ``function(**kwargs)`` in a thread (run_experiment_sync: its own event loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["results"] = function(**kwargs)
        except BaseException as err:  # handed to the test
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _wait_for(
    condition: Callable[[], Any], what: str, box: dict[str, Any], timeout_s: float = 180.0
) -> Any:
    """Poll ``condition`` until it is truthy (its value); fail at once when the experiment
    running in the background (``box``) has ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert "error" not in box, f"the experiment failed: {box['error']!r}"
        assert "results" not in box, f"the experiment ended before {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        time.sleep(0.3)
