"""Per-user data dirs, cold data dirs and results dirs: local, from a cluster's config, and
inside a radas job on a cluster (from the variables the job carries). No cluster needed."""

from __future__ import annotations

import re
import textwrap
import threading
from pathlib import Path

import pytest

import radas
from radas.clusters import config as cluster_config
from radas.clusters.config import ClusterConfig
from radas.errors import InvalidNameError, StorageError, UnknownClusterError
from radas.storage import files, storage_roots
from radas.storage.dirs import cluster_artifact_root


@pytest.fixture
def config_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("RADAS_CONFIG", str(path))
    for name in ("RADAS_CLUSTER", "RADAS_RESULTS_ROOT", "RADAS_DATA_ROOT"):
        monkeypatch.delenv(name, raising=False)
    return path


def lab_cluster(tmp_path: Path, **extra) -> ClusterConfig:
    return ClusterConfig(
        name="lab",
        address="http://127.0.0.1:1",
        results_root=str(tmp_path / "shared/results"),
        data_root=str(tmp_path / "shared/data"),
        cold_data_root=str(tmp_path / "cold"),
        **extra,
    )


def test_local_dirs_live_under_radas_home_and_are_created(radas_home, monkeypatch):
    monkeypatch.delenv("RADAS_CLUSTER", raising=False)
    data = radas.get_data_dir("dirs-alice")
    assert data == str(radas_home / "data" / "dirs-alice") and Path(data).is_dir()
    cold = radas.get_cold_data_dir("dirs-alice")
    assert cold == str(radas_home / "cold-data" / "dirs-alice") and Path(cold).is_dir()
    results = radas.get_ray_results_dir("dirs-alice")
    assert results == str(radas_home / "ray-results" / "dirs-alice")
    assert radas.get_data_dir("dirs-alice", run_with="local") == data
    (Path(data) / "train.csv").write_text("x\n1\n")  # plain file I/O, as users do
    assert (Path(radas.get_data_dir("dirs-alice")) / "train.csv").read_text() == "x\n1\n"


def test_cluster_dirs_come_from_its_config(config_file, tmp_path):
    cluster_config.register_cluster(lab_cluster(tmp_path))
    data = radas.get_data_dir("alice", run_with="cluster:lab")
    assert data == str(tmp_path / "shared/data/alice") and Path(data).is_dir()
    assert radas.get_cold_data_dir("alice", run_with="cluster:lab") == str(tmp_path / "cold/alice")
    assert radas.get_ray_results_dir("alice", run_with="cluster:lab") == str(
        tmp_path / "shared/results/alice"
    )
    roots = storage_roots("cluster:lab")
    assert roots.artifact_root == str(tmp_path / "shared/data/.radas-artifacts")
    assert roots.artifact_endpoint_url is None
    with pytest.raises(UnknownClusterError, match="No cluster named 'nope'"):
        radas.get_data_dir("alice", run_with="cluster:nope")


def test_inside_a_job_the_same_paths_come_from_the_jobs_environment(
    config_file, tmp_path, monkeypatch
):
    """A trainable calls get_data_dir(user) without run_with and no config file there: it gets
    what the client gets with run_with='cluster:lab'."""
    cluster = lab_cluster(tmp_path, artifact_root="s3://lab/radas")
    cluster_config.register_cluster(cluster)
    on_client = {
        "data": radas.get_data_dir("alice", run_with="cluster:lab"),
        "cold": radas.get_cold_data_dir("alice", run_with="cluster:lab"),
        "results": radas.get_ray_results_dir("alice", run_with="cluster:lab"),
        "roots": storage_roots("cluster:lab"),
    }
    config_file.unlink()  # the cluster's nodes have no radas config
    for name, value in cluster.job_env().items():
        monkeypatch.setenv(name, value)
    assert radas.get_data_dir("alice") == on_client["data"]
    assert radas.get_cold_data_dir("alice") == on_client["cold"]
    assert radas.get_ray_results_dir("alice") == on_client["results"]
    assert radas.get_data_dir("alice", run_with="cluster:lab") == on_client["data"]
    assert storage_roots() == on_client["roots"]
    assert radas.get_data_dir("alice", run_with="local") != on_client["data"]


def test_job_env_carries_the_artifact_store(tmp_path):
    plain = lab_cluster(tmp_path)
    assert plain.job_env() == {
        "RADAS_CLUSTER": "lab",
        "RADAS_RESULTS_ROOT": str(tmp_path / "shared/results"),
        "RADAS_DATA_ROOT": str(tmp_path / "shared/data"),
        "RADAS_COLD_DATA_ROOT": str(tmp_path / "cold"),
        "RADAS_ARTIFACT_ROOT": str(tmp_path / "shared/data/.radas-artifacts"),
    }
    s3 = lab_cluster(
        tmp_path, artifact_root="s3://lab/radas", artifact_endpoint_url="http://10.0.0.9:9000"
    )
    assert cluster_artifact_root(s3) == "s3://lab/radas"
    assert s3.job_env()["RADAS_ARTIFACT_ROOT"] == "s3://lab/radas"
    assert s3.job_env()["RADAS_ARTIFACT_ENDPOINT_URL"] == "http://10.0.0.9:9000"


def test_artifact_keys_in_the_config_file(config_file):
    config_file.write_text(
        textwrap.dedent(
            """\
            [clusters.minio]
            address = "http://10.0.0.5:8265"
            results_root = "/shared/results"
            data_root = "/shared/data"
            cold_data_root = "/cold"
            artifact_root = "s3://lab-bucket/radas"
            artifact_endpoint_url = "http://10.0.0.9:9000"
            """
        )
    )
    roots = storage_roots("cluster:minio")
    assert roots.artifact_root == "s3://lab-bucket/radas"
    assert roots.artifact_endpoint_url == "http://10.0.0.9:9000"
    cluster_config.register_cluster(cluster_config.get_cluster("minio"))  # round trip
    assert "artifact_endpoint_url = " in config_file.read_text()
    assert cluster_config.get_cluster("minio").artifact_root == "s3://lab-bucket/radas"


def test_bad_names_and_unusable_roots_say_what_to_do(config_file, tmp_path):
    with pytest.raises(InvalidNameError, match=re.escape("user_name='../bob' is not valid")):
        radas.get_data_dir("../bob")
    with pytest.raises(InvalidNameError, match="reserved"):
        radas.get_data_dir(".radas-artifacts", run_with="local")
    with pytest.raises(radas.InvalidArgumentError, match="run_with='gpu' is not valid"):
        radas.get_data_dir("alice", run_with="gpu")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data root should be")
    cluster_config.register_cluster(
        ClusterConfig("blocked", "http://127.0.0.1:1", str(tmp_path), str(blocker), str(tmp_path))
    )
    with pytest.raises(StorageError, match="mounted at the same path") as caught:
        radas.get_data_dir("alice", run_with="cluster:blocked")
    assert str(blocker / "alice") in str(caught.value)
    assert "data_root" in str(caught.value)


@pytest.mark.integrity("survive")
def test_threads_replacing_one_file_at_once_each_leave_it_whole(tmp_path):
    """Two threads of one process write_atomic the same file (a live refresh and a final
    write, two experiments of one process): before, both wrote one temporary file named by
    the process, so one rename failed (FileNotFoundError) or moved a half-written file."""
    target = tmp_path / "page.html"
    payloads = {letter: letter * 300_000 for letter in "ab"}
    errors: list[BaseException] = []
    seen: set[str] = set()
    done = threading.Event()

    def write(letter: str) -> None:
        try:
            for _ in range(150):
                files.write_atomic(target, payloads[letter])
        except BaseException as err:  # reported by the test
            errors.append(err)

    def read() -> None:
        while not done.is_set():
            if target.exists():
                seen.add(target.read_text())

    writers = [threading.Thread(target=write, args=(letter,)) for letter in payloads]
    reader = threading.Thread(target=read)
    for thread in [reader, *writers]:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert errors == []
    assert seen <= set(payloads.values()), "a reader saw a file that was neither write"
    assert target.read_text() in payloads.values()
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary file left
