"""Results in an object store (issue 12 §2): a cluster whose ``results_root`` is ``s3://...``.

A real S3-compatible server (moto's server mode on 127.0.0.1) holds the results; the real local
Ray cluster (the ``cluster`` fixture) runs the jobs; the client reads everything it shows (the
df, the history, tracebacks) from the bucket, never from a path it shares with the cluster.

S3 credentials: moto takes any keys. The job gets the test keys through
``runtime_env["env_vars"]`` (the cluster's nodes were started without them), which radas
rightly warns about; real keys belong in each machine's environment or ``~/.aws/credentials``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stdout, suppress
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
import seaborn as sns
from ray import tune

import radas
import radas.cloud_artifact as rda
from radas.clusters import register_cluster
from radas.clusters.config import ClusterConfig, get_cluster, load_clusters, unregister_cluster
from radas.errors import (
    ClusterConfigError,
    JobFailedError,
    RadasWarning,
    StorageError,
)
from radas.storage import store as _store
from support.moto_s3 import MotoS3, moto_s3_server

USER = "s3-user"
ALIAS = "testcluster-s3results"


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3_server() as server:
        yield server


def _register(results_root: str, endpoint_url: str | None, name: str = ALIAS) -> str:
    """The test cluster under another name, its results in ``results_root`` and no shared
    data path."""
    alias = dataclasses.replace(
        get_cluster("testcluster"),
        name=name,
        managed_by_radas=False,
        results_root=results_root,
        results_endpoint_url=endpoint_url,
        data_root="",
        cold_data_root="",
    )
    register_cluster(alias)
    return f"cluster:{name}"


@pytest.fixture
def s3_results(cluster, s3: MotoS3) -> Iterator[tuple[str, str]]:
    """(run_with, results_root) of the test cluster with its results in a fresh S3 prefix."""
    root = s3.url(f"results-{uuid.uuid4().hex[:8]}")
    yield _register(root, s3.endpoint_url), root
    unregister_cluster(ALIAS)


def run_on(run_with: str, s3: MotoS3, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("user_name", USER)
    kwargs.setdefault("run_choice", "run")
    kwargs.setdefault("runtime_env", {"env_vars": s3.env})  # test keys: see the module doc
    with pytest.warns(RadasWarning, match="secret-looking AWS_SECRET_ACCESS_KEY"):
        return radas.run_experiment_sync(run_with=run_with, **kwargs)


def keys_under(s3: MotoS3, prefix: str) -> list[str]:
    """The objects stored under ``prefix`` (without the empty folder markers pyarrow adds)."""
    client = boto3.client("s3", endpoint_url=s3.endpoint_url)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    return [key for key in keys if not key.endswith("/")]


def download(s3: MotoS3, prefix: str, target: Path) -> None:
    client = boto3.client("s3", endpoint_url=s3.endpoint_url)
    for key in keys_under(s3, prefix):
        local = target / key[len(prefix) :].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(s3.bucket, key, str(local))


# --- the store itself, without Ray ------------------------------------------------------------


def test_local_paths_stay_paths_and_uris_read_and_write_through_the_store(
    s3, tmp_path, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)  # no cluster names this store
    assert _store.location(tmp_path) == tmp_path  # a plain pathlib.Path, as before
    root = _store.location(s3.url("store-unit"))
    assert isinstance(root, _store.UriPath)
    assert str(root / "a" / "b.json") == f"s3://{s3.bucket}/store-unit/a/b.json"
    assert not (root / "a").exists()

    from radas.storage import files

    files.write_atomic(root / "a" / "b.json", json.dumps({"x": 1}))
    assert json.loads((root / "a" / "b.json").read_text()) == {"x": 1}
    assert (root / "a").is_dir() and (root / "a" / "b.json").is_file()
    # the temporary name is gone: one object, under its own name
    assert keys_under(s3, "store-unit/") == ["store-unit/a/b.json"]
    (root / "a" / "c.txt").write_text("c")
    assert sorted(p.name for p in (root / "a").glob("*.json")) == ["b.json"]
    (root / "a").move_tree(root / "moved")
    assert keys_under(s3, "store-unit/") == ["store-unit/moved/b.json", "store-unit/moved/c.txt"]
    (root / "moved" / "c.txt").unlink()
    (root / "moved" / "c.txt").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        (root / "moved" / "c.txt").read_bytes()
    _store.check_writable(str(root), what="")  # bucket there, writes accepted
    assert keys_under(s3, "store-unit/") == ["store-unit/moved/b.json"]  # probe removed


@pytest.mark.integrity("error")
@pytest.mark.slow
def test_reading_from_a_store_that_does_not_answer_is_a_clear_error(monkeypatch, radas_home):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    uri = "s3://radas-test/results/alice/_home_alice_exp"
    with pytest.raises(StorageError, match="did not answer while radas read the experiment"):
        radas.Tuner(uri)
    # an object store cannot lock: the lock of a run is on the driver host's own disk
    from radas.storage.locks import lock_path

    lock = lock_path("s3://radas-test/results/alice", "_home_alice_exp")
    assert lock.is_relative_to(radas_home / "locks") and lock.name == "_home_alice_exp.lock"


@pytest.mark.integrity("error")
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"results_root": "ftp://host/results"}, "not a results store radas can use"),
        ({"results_root": "s3://"}, "not a results store radas can use"),
        (
            {
                "results_root": "/shared/results",
                "results_endpoint_url": "http://h:9000",
                "data_root": "/d",
                "cold_data_root": "/c",
            },
            "results_endpoint_url is for an S3-compatible server",
        ),
        (
            {"results_root": "s3://lab/r", "results_endpoint_url": "h:9000"},
            "not an http\\(s\\) URL",
        ),
        ({"results_root": "/shared/results"}, "missing data_root, cold_data_root"),
    ],
)
def test_results_root_uri_config_is_checked(table, message, tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    monkeypatch.setenv("RADAS_CONFIG", str(config))
    lines = [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    config.write_text('[clusters.uri-check]\naddress = "http://127.0.0.1:1"\n' + "\n".join(lines))
    with pytest.raises(ClusterConfigError, match=message):
        load_clusters()


@pytest.mark.integrity("error")
def test_data_dirs_of_a_cluster_without_a_shared_data_path_are_refused(s3):
    root = s3.url("no-data-path")
    register_cluster(  # no job server needed: nothing runs
        ClusterConfig("s3-only", "http://127.0.0.1:1", root, results_endpoint_url=s3.endpoint_url)
    )
    run_with = "cluster:s3-only"
    try:
        cluster = get_cluster("s3-only")
        assert cluster.data_root == ""
        with pytest.raises(StorageError, match=r"no shared data path.*cloud artifacts"):
            radas.get_data_dir(USER, run_with=run_with)
        with pytest.raises(StorageError, match="cold_data_root is not set"):
            radas.get_cold_data_dir(USER, run_with=run_with)
        # artifacts and results share the store, and its endpoint
        store = rda.init(user_name=USER, run_with=run_with)
        assert store.location == f"{root}/.radas-artifacts/{USER}"
        rda.save_cloud_artifact("x.json", {"ok": True})
        assert keys_under(s3, "no-data-path/") == [f"no-data-path/.radas-artifacts/{USER}/x.json"]
        env = cluster.job_env()
        assert env["RADAS_RESULTS_ENDPOINT_URL"] == s3.endpoint_url
        assert env["RADAS_ARTIFACT_ENDPOINT_URL"] == s3.endpoint_url
        assert "RADAS_DATA_ROOT" not in env
        assert radas.get_ray_results_dir(USER, run_with=run_with) == f"{root}/{USER}"
    finally:
        unregister_cluster("s3-only")


@pytest.mark.slow
def test_local_runs_are_unchanged(project, radas_home):
    results = radas.run_experiment_sync(
        user_name=USER,
        experiment_name="still-local",
        trainable=lambda config: {"score": config["a"] * 2},
        param_space={"a": tune.grid_search([1, 2])},
        run_choice="run",
    )
    path = Path(results["experiment_path"])
    assert path.is_dir() and path.is_relative_to(radas_home / "ray-results" / USER)
    assert sorted(results["df"]["score"]) == [2, 4]
    assert (path / "radas_trials.json").is_file() and (path / "radas_history").is_dir()


# --- a cluster whose results are in S3 ------------------------------------------------------


def counted(config: dict[str, Any]) -> None:
    """Notes each start in the store (cloud artifacts default to the results' store); a=3
    fails until the client saves ``fixed/<tag>``."""
    import radas.cloud_artifact as rda

    rda.init(user_name=USER)
    rda.save_cloud_artifact(f"runs/{config['tag']}/{config['a']}-{uuid.uuid4().hex}.txt", "ran")
    if config["a"] == 3 and not rda.exists(f"fixed/{config['tag']}.txt"):
        raise ValueError("a=3 is broken until it is fixed")
    for step in range(3):
        radas.report({"score": config["a"] * 10 + step, "step": step})


def starts(tag: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for path in rda.list_cloud_artifacts(f"runs/{tag}"):
        a = int(Path(path).name.split("-")[0])
        counts[a] = counts.get(a, 0) + 1
    return counts


@pytest.mark.cluster
@pytest.mark.slow
def test_results_in_s3_are_run_restored_and_analyzed_from_the_store_alone(
    s3_results, s3, project, tmp_path, capfd
):
    run_with, root = s3_results
    tag = uuid.uuid4().hex[:8]
    rda.init(user_name=USER, run_with=run_with)
    space = {"a": tune.grid_search([1, 2, 3]), "tag": tag}
    results = run_on(run_with, s3, experiment_name="counted", trainable=counted, param_space=space)
    path = results["experiment_path"]
    full_name = results["full_name"]
    assert path == f"{root}/{USER}/{full_name}"
    df = results["tuner"].get_dataframe().set_index("config/a")
    assert df["status"].to_dict() == {1: "TERMINATED", 2: "TERMINATED", 3: "ERROR"}
    assert df.loc[3, "error"] == "ValueError: a=3 is broken until it is fixed"
    assert df.loc[[1, 2], "score"].tolist() == [12, 22]

    # where the job said the traceback is: in the store, and readable from here
    output = capfd.readouterr().out
    errored_id = df.loc[3, "trial_id"]
    assert f"traceback in {path}/" in output and "/error.txt)" in output
    traceback = results["tuner"].get_traceback(errored_id)
    assert 'in counted\n    raise ValueError("a=3 is broken until it is fixed")' in traceback
    assert traceback.rstrip().endswith("ValueError: a=3 is broken until it is fixed")

    # everything is in the bucket; nothing at a path the client shares with the cluster
    prefix = path.removeprefix(f"s3://{s3.bucket}/")
    stored = {key.removeprefix(prefix + "/") for key in keys_under(s3, prefix)}
    for name in (
        "radas_trials.json",
        "radas_experiment.json",
        "radas_job_outcome.json",
        "radas_history/compacted.parquet",
        "tuner.pkl",
    ):
        assert name in stored
    assert any(name.startswith("experiment_state-") for name in stored)
    assert not (Path(get_cluster("testcluster").results_root) / USER / full_name).exists()

    # radas.Tuner on the URI reads what a copy on disk reads
    copy = tmp_path / "copy"
    download(s3, prefix, copy)
    from_s3, from_disk = radas.Tuner(path), radas.Tuner(copy)
    pd.testing.assert_frame_equal(from_s3.get_dataframe(), from_disk.get_dataframe())
    history = from_s3.get_history_dataframe()
    pd.testing.assert_frame_equal(history, from_disk.get_history_dataframe())
    assert history.groupby("config/a")["step"].apply(list).to_dict() == {
        1: [0, 1, 2],
        2: [0, 1, 2],
    }
    grid = from_s3.get_results()  # Ray's ResultGrid, through the store's filesystem
    assert sorted(len(r.metrics_dataframe) for r in grid if r.error is None) == [3, 3]

    # restore: the finished trials are kept, only the errored one runs again
    rda.save_cloud_artifact(f"fixed/{tag}.txt", "yes")
    assert starts(tag) == {1: 1, 2: 1, 3: 1}
    restored = run_on(
        run_with,
        s3,
        experiment_name="counted",
        trainable=counted,
        param_space=space,
        run_choice="restore",
    )
    assert restored["outcome"].already_done == 2
    final = restored["tuner"].get_dataframe().set_index("config/a")
    assert set(final["status"]) == {"TERMINATED"}
    assert final["score"].to_dict() == {1: 12, 2: 22, 3: 32}
    assert starts(tag) == {1: 1, 2: 1, 3: 2}

    # analyze only: nothing runs, everything is read from the store
    analyzed = radas.run_experiment_sync(
        user_name=USER,
        experiment_name="counted",
        run_with=run_with,
        dos=["analyze"],
        plot_fn=sns.barplot,
        plot_kwargs=dict(x="config/a", y="score"),
        plot_format="png",
    )
    assert sorted(analyzed["df"]["score"]) == [12, 22, 32]
    assert Path(analyzed["fig_path"]).stat().st_size > 1000
    assert starts(tag) == {1: 1, 2: 1, 3: 2}

    jobs = radas.get_client(user_name=USER, run_with=run_with).list_experiments()
    first, second = jobs[jobs["experiment"] == "counted"].to_dict(orient="records")
    assert (first["job_status"], second["job_status"]) == ("SUCCEEDED", "SUCCEEDED")
    # the trials of the stored experiment are the restore's (read from the store)
    assert (second["status"], second["finished"], second["total"]) == ("FINISHED", 3, 3)
    assert first["status"] == (
        f"SUCCEEDED (trials unknown: a later job, {second['job_id']}, ran this experiment since)"
    )

    from radas.cli import main

    figure, csv = tmp_path / "cli.png", tmp_path / "cli.csv"
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(
            [
                *("analyze", "counted", "--user", USER, "--run-with", run_with),
                *("--dir", str(project), "--plot", "barplot", "--x", "config/a"),
                *("--y", "score", "-o", str(figure), "--csv", str(csv)),
            ]
        )
    assert code == 0, printed.getvalue()
    assert f"stored at {path}" in printed.getvalue()
    assert sorted(pd.read_csv(csv)["score"]) == [12, 22, 32]
    assert figure.stat().st_size > 1000


# --- the store unusable before submitting -----------------------------------------------------


@pytest.fixture(scope="module")
def s3_strict() -> Iterator[MotoS3]:
    """An S3 server that refuses every request after creating its bucket: the credentials
    radas has here are not ones it knows."""
    with moto_s3_server(bucket="strict", server_env={"INITIAL_NO_AUTH_ACTION_COUNT": "1"}) as s:
        yield s


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.integrity("error")
@pytest.mark.parametrize("problem", ["missing bucket", "credentials refused", "endpoint down"])
def test_an_unusable_store_is_refused_before_anything_is_submitted(
    problem, cluster, s3, s3_strict, project
):
    root, endpoint, expected = {
        "missing bucket": (
            "s3://no-such-bucket/results",
            s3.endpoint_url,
            "bucket 'no-such-bucket' does not exist",
        ),
        "credentials refused": (
            s3_strict.url("results"),
            s3_strict.endpoint_url,
            "did not answer a request.*ACCESS_DENIED",
        ),
        "endpoint down": (
            s3.url("results"),
            f"http://127.0.0.1:{_closed_port()}",
            "did not answer a request.*(connect|NETWORK)",
        ),
    }[problem]
    run_with = _register(root, endpoint, name="s3-broken")
    experiment = f"refused-{uuid.uuid4().hex[:6]}"
    try:
        started = time.monotonic()
        with pytest.raises(StorageError, match=expected) as raised:
            radas.run_experiment_sync(
                user_name=USER,
                experiment_name=experiment,
                trainable=lambda config: {"x": 1},
                run_with=run_with,
                run_choice="run",
            )
        message = str(raised.value)
        assert message.startswith(f"The results store {root}")
        assert "Nothing was submitted to cluster:s3-broken" in message
        assert "results_endpoint_url" in message and "AWS_ACCESS_KEY_ID" in message
        assert time.monotonic() - started < 60
        jobs = radas.get_client(user_name=USER, run_with=run_with).list_experiments()
        assert experiment not in set(jobs["experiment"])
    finally:
        unregister_cluster("s3-broken")


# --- the store failing mid-run --------------------------------------------------------------


class StoreLink:
    """A TCP forwarder on 127.0.0.1 in front of the S3 server: ``cut()`` refuses new
    connections and breaks the open ones (the store is down for everyone using this
    address); ``restore()`` serves again on the same port, with everything stored before."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = _closed_port()
        self._up = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._up.set()
        self._thread = threading.Thread(target=self._serve, args=(listener,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self._up.clear()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for connection in self._open:
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._open.clear()

    def _serve(self, listener: socket.socket) -> None:
        with listener:
            while self._up.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                except OSError:
                    client.close()
                    continue
                with self._lock:
                    self._open |= {client, upstream}
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for connection in (source, sink):
                with suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


def steady(config: dict[str, Any]) -> None:
    """Six reports, 0.4 s apart; the start is noted on the node's disk (one machine here)."""
    marks = Path(config["marks"])
    (marks / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
    for step in range(6):
        time.sleep(0.4)
        radas.report({"step": step})


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.integrity("survive")
def test_the_store_going_away_mid_run_is_reported_and_restore_continues(
    cluster, s3, project, tmp_path
):
    link = StoreLink(int(s3.endpoint_url.rsplit(":", 1)[1]))
    link.restore()
    root = s3.url(f"outage-{uuid.uuid4().hex[:8]}")
    run_with = _register(root, link.endpoint_url, name="s3-outage")
    marks = tmp_path / "marks"
    marks.mkdir()
    space = {"i": tune.grid_search(list(range(6))), "marks": str(marks)}
    box: dict[str, Any] = {}

    def first_run() -> None:
        try:
            box["results"] = run_on(
                run_with, s3, experiment_name="outage", trainable=steady, param_space=space
            )
        except BaseException as err:  # handed to the test
            box["error"] = err

    try:
        thread = threading.Thread(target=first_run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 240
        records_key = None
        while True:  # some trials ended (on record in the store), others still running
            assert "results" not in box and "error" not in box, box
            assert time.monotonic() < deadline, "no trial ended in time"
            keys = keys_under(s3, root.removeprefix(f"s3://{s3.bucket}/"))
            records_key = next((k for k in keys if k.endswith("/radas_trials.json")), None)
            if records_key:
                records = json.loads(
                    boto3.client("s3", endpoint_url=s3.endpoint_url)
                    .get_object(Bucket=s3.bucket, Key=records_key)["Body"]
                    .read()
                )
                ended = [r for r in records.values() if r.get("status") == "TERMINATED"]
                if ended and len(list(marks.iterdir())) < 6:
                    break
            time.sleep(0.3)
        link.cut()
        thread.join(timeout=300)
        assert not thread.is_alive()
        error = box.get("error")
        assert isinstance(error, JobFailedError), box
        assert f"The results store of {root}/{USER}/" in str(error)
        assert "did not answer while the experiment ran" in str(error)
        assert "run_choice='restore' continues the experiment" in str(error)
        assert len(list(marks.iterdir())) < 6  # the run did not go on without its store

        link.restore()
        started_before = {int(p.name.split("-")[1]) for p in marks.iterdir()}
        restored = run_on(
            run_with,
            s3,
            experiment_name="outage",
            trainable=steady,
            param_space=space,
            run_choice="restore",
            tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        )
        final = restored["tuner"].get_dataframe()
        assert sorted(final["config/i"]) == list(range(6)) and final["trial_id"].is_unique
        assert set(final["status"]) == {"TERMINATED"}
        history = restored["df"]
        assert history.groupby("config/i")["step"].apply(sorted).tolist() == [list(range(6))] * 6
        kept = restored["outcome"].already_done
        assert kept >= 1
        runs: dict[int, int] = {}
        for mark in marks.iterdir():
            i = int(mark.name.split("-")[1])
            runs[i] = runs.get(i, 0) + 1
        assert sum(count == 1 for count in runs.values()) >= kept  # kept trials: not re-run
        assert set(runs) == set(range(6)) and started_before <= set(runs)
    finally:
        link.cut()
        unregister_cluster("s3-outage")
