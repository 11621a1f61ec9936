"""radas.cloud_artifact and its stores: one contract suite run against a local directory and a
real S3-compatible server (moto's server mode on 127.0.0.1), plus atomicity under SIGKILL,
path safety and a 1 GiB array."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import radas
import radas.cloud_artifact as rda
from radas.errors import (
    ArtifactNotFoundError,
    ArtifactPathError,
    ArtifactTypeError,
    InvalidArgumentError,
    RadasError,
    StorageError,
)
from radas.storage import FsspecArtifactStore, LocalArtifactStore, open_store
from radas.storage.artifacts import TEMP_MARKER, ArtifactStore
from support.moto_s3 import moto_s3_server


@pytest.fixture(scope="module")
def s3():
    with moto_s3_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def store_kwargs(request, tmp_path) -> dict:
    """Where a store lives: a fresh local directory, or a fresh prefix in the moto bucket."""
    if request.param == "local":
        return {"root": str(tmp_path / "artifacts")}
    server = request.getfixturevalue("s3")
    return {"root": fresh_prefix(server), "endpoint_url": server.endpoint_url}


def fresh_prefix(server) -> str:
    """A new, empty place in the moto bucket: each test's own."""
    return server.url(f"t-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def store(store_kwargs) -> ArtifactStore:
    return open_store("alice", **store_kwargs)


def everything_under(store_kwargs: dict) -> list[str]:
    """Every file under the artifact root, all users (to prove that nothing was written)."""
    root = store_kwargs["root"]
    if root.startswith("s3://"):
        fs = FsspecArtifactStore("probe", root, endpoint_url=store_kwargs["endpoint_url"]).fs
        return sorted(fs.find(root.removeprefix("s3://")))
    return sorted(str(p) for p in Path(root).rglob("*") if p.is_file())


class Point:  # a class defined in a test module: pickled by value
    def __init__(self, x):
        self.x = x


def test_every_extension_round_trips(store):
    class Local:  # a class local to a function survives .pkl (cloudpickle)
        def __init__(self, value):
            self.value = value

    frame = pd.DataFrame(
        {"lr": [0.1, 0.01], "seed": [1, 2], "name": ["a", "b"], "ok": [True, False]}
    )
    weights = np.arange(12, dtype=np.float32).reshape(3, 4)
    cases = {
        "obj.pkl": {"double": lambda x: 2 * x, "local": Local(7), "point": Point(3)},
        "cfg.json": {"lr": 0.1, "layers": [64, 32], "name": "mlp", "ok": True, "none": None},
        "note.txt": "héllo\nwörld",
        "models/w.npy": weights,
        "models/ws.npz": {"w": weights, "b": np.array([1, 2, 3], dtype=np.int64)},
        "tables/df.parquet": frame,
        "tables/df.csv": frame,
        "blob.bin": b"\x00\x01\xff",
        "README": bytearray(b"raw bytes"),
    }
    for path, obj in cases.items():
        location = store.save(path, obj)
        assert location == f"{store.location}/{path}"
    loaded = {path: store.load(path) for path in cases}

    assert loaded["obj.pkl"]["double"](21) == 42
    assert loaded["obj.pkl"]["local"].value == 7
    assert type(loaded["obj.pkl"]["local"]).__name__ == "Local"
    assert loaded["obj.pkl"]["point"].x == 3
    assert loaded["cfg.json"] == cases["cfg.json"]
    assert loaded["note.txt"] == "héllo\nwörld"
    assert loaded["models/w.npy"].dtype == np.float32
    np.testing.assert_array_equal(loaded["models/w.npy"], weights)
    assert loaded["models/ws.npz"].keys() == {"w", "b"}
    np.testing.assert_array_equal(loaded["models/ws.npz"]["b"], [1, 2, 3])
    pd.testing.assert_frame_equal(loaded["tables/df.parquet"], frame)
    pd.testing.assert_frame_equal(loaded["tables/df.csv"], frame)
    assert loaded["blob.bin"] == b"\x00\x01\xff"
    assert loaded["README"] == b"raw bytes"
    assert store.list() == sorted(cases)


@pytest.mark.parametrize(
    ("path", "obj", "says"),
    [
        ("w.npy", {"a": 1}, "numpy.ndarray"),
        ("w.npy", np.array([object(), 1], dtype=object), "not dtype=object"),
        ("ws.npz", [np.zeros(2)], "dict of str -> numpy.ndarray"),
        ("df.parquet", [1, 2], "pandas.DataFrame"),
        ("df.csv", pd.Series([1, 2]), "pandas.DataFrame"),
        ("note.txt", 42, "a str"),
        ("cfg.json", {"f": object()}, "JSON values"),
        ("blob.bin", {"a": 1}, "raw bytes"),
    ],
)
def test_an_object_that_does_not_fit_its_extension_is_refused(store_kwargs, path, obj, says):
    store = open_store("alice", **store_kwargs)
    with pytest.raises(ArtifactTypeError, match="Nothing was written") as caught:
        store.save(path, obj)
    assert says in str(caught.value) and path in str(caught.value)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, RadasError)
    assert not store.exists(path)
    assert everything_under(store_kwargs) == []


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("this object refuses to be pickled")


def test_a_failed_save_keeps_the_previous_version(store_kwargs):
    store = open_store("alice", **store_kwargs)
    store.save("model.pkl", {"version": 1})
    # 64 MiB first: on S3 the multipart upload has started when pickling fails
    with pytest.raises(ArtifactTypeError, match="cannot be pickled"):
        store.save("model.pkl", [np.ones(8 * 2**20), Unpicklable()])
    assert store.load("model.pkl") == {"version": 1}
    assert store.list() == ["model.pkl"]
    assert len(everything_under(store_kwargs)) == 1  # no temporary or partial file left


BAD_PATHS = [
    "../x.pkl",
    "../../etc/passwd",
    "/etc/passwd",
    "models/../../bob/x.pkl",
    "a/./b.pkl",
    "a//b.pkl",
    "",
    "~/x.pkl",
    "s3://another-bucket/x.pkl",
    "file:///etc/passwd",
    "..\\x.pkl",
    "C:/x.pkl",
    f".x.pkl{TEMP_MARKER}123",
]


def test_paths_that_leave_the_root_are_refused_and_nothing_is_written(store_kwargs):
    store = open_store("alice", **store_kwargs)
    store.save("keep.json", [1])
    before = everything_under(store_kwargs)
    for path in BAD_PATHS:
        for call, arguments in (
            (store.save, (path, {"evil": True})),
            (store.load, (path,)),
            (store.remove, (path,)),
            (store.exists, (path,)),
        ):
            with pytest.raises(ArtifactPathError) as caught:
                call(*arguments)
            message = str(caught.value)
            assert repr(path) in message and "Nothing was read or written" in message
            assert store.location in message
            assert isinstance(caught.value, InvalidArgumentError)
    assert everything_under(store_kwargs) == before
    assert Path("/etc/passwd").read_text().startswith("root")


def test_another_users_folder_is_refused(store_kwargs):
    bob = open_store("bob", **store_kwargs)
    bob.save("secret.json", {"owner": "bob"})
    alice = open_store("alice", **store_kwargs)
    for attempt in (
        lambda: alice.save("bob/secret.json", {"owner": "alice"}),
        lambda: alice.load("bob/secret.json"),
        lambda: alice.remove("bob/secret.json"),
    ):
        with pytest.raises(ArtifactPathError, match="another user's root") as caught:
            attempt()
        assert "'bob'" in str(caught.value)
    assert bob.load("secret.json") == {"owner": "bob"}
    assert alice.list() == []
    alice.save("from_bob/notes.txt", "fine")  # a folder of her own
    assert alice.list() == ["from_bob/notes.txt"]
    assert bob.list() == ["secret.json"]


def test_a_missing_artifact_names_the_location_looked_at(store):
    store.save("models/best.pkl", 1)
    with pytest.raises(ArtifactNotFoundError) as caught:
        store.load("models/bset.pkl")
    message = str(caught.value)
    assert f"{store.location}/models/bset.pkl" in message
    assert "Did you mean 'models/best.pkl'" in message
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(ArtifactNotFoundError, match="nothing is stored at"):
        store.remove("models/gone.pkl")
    with pytest.raises(ArtifactNotFoundError, match="is a folder of artifacts"):
        store.load("models")


def test_list_exists_overwrite_and_remove(store):
    store.save("runs/a/metrics.json", {"loss": 1.0})
    store.save("runs/b/metrics.json", {"loss": 0.5})
    store.save("summary.txt", "v1")
    store.save("summary.txt", "v2")
    assert store.load("summary.txt") == "v2"
    assert store.list() == ["runs/a/metrics.json", "runs/b/metrics.json", "summary.txt"]
    assert store.list("runs/b") == ["runs/b/metrics.json"]
    assert store.list("runs/b/metrics.json") == ["runs/b/metrics.json"]
    assert store.list("nothing-here") == []
    assert store.exists("runs") and store.exists("runs/a/metrics.json")
    assert not store.exists("runs/c/metrics.json")
    with pytest.raises(ArtifactPathError, match="recursive=True"):
        store.remove("runs")
    store.remove("runs/a/metrics.json")
    assert store.list() == ["runs/b/metrics.json", "summary.txt"]
    store.remove("runs", recursive=True)
    assert store.list() == ["summary.txt"]
    assert not store.exists("runs")


def test_a_folder_whose_first_artifact_arrives_mid_listing_is_not_listed_as_one(s3):
    """s3fs lists a prefix, and when that finds nothing it asks the prefix's info; an artifact
    another host saves between the two makes the prefix a "directory", which s3fs's find
    returns as the one thing found. The listing must have files only. The other host's save is
    injected at that exact moment (a wrapper around the real listing call, against the real
    S3 server): by chance it happened under load, with the bed's marks
    (tests/multihost/test_multihost)."""
    import boto3

    store = open_store("alice", root=fresh_prefix(s3), endpoint_url=s3.endpoint_url)
    other_host = boto3.client("s3", endpoint_url=s3.endpoint_url)
    key = store.location.removeprefix(f"s3://{s3.bucket}/") + "/marks/run-1/start_0.txt"
    real_lsdir = store.fs._lsdir

    async def listing_then_another_hosts_save(path, *args, **kwargs):
        found = await real_lsdir(path, *args, **kwargs)
        if path.endswith("/marks/run-1") and not found:
            other_host.put_object(Bucket=s3.bucket, Key=key, Body=b"started")
        return found

    store.fs._lsdir = listing_then_another_hosts_save
    try:
        listed = store.list("marks/run-1")
    finally:
        del store.fs._lsdir
    assert listed == []  # a moment later, the new artifact:
    assert store.list("marks/run-1") == ["marks/run-1/start_0.txt"]
    assert store.list("marks") == ["marks/run-1/start_0.txt"]


def test_symlinks_out_of_the_root_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    store = LocalArtifactStore("alice", tmp_path / "artifacts")
    root = Path(store.location)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "secret.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ArtifactPathError, match="symbolic link"):
        store.save("escape/x.pkl", 1)
    with pytest.raises(ArtifactPathError, match="symbolic link"):
        store.save("escape/deeper/x.pkl", 1)
    with pytest.raises(ArtifactPathError, match="symbolic link"):
        store.load("secret.txt")
    with pytest.raises(ArtifactPathError, match="symbolic link"):
        store.exists("escape")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert store.list() == []  # links out of the root are not listed
    # a link that stays inside the root is fine
    store.save("v2/model.json", {"v": 2})
    (root / "latest").symlink_to(root / "v2", target_is_directory=True)
    assert store.load("latest/model.json") == {"v": 2}


def test_module_api_needs_init_then_uses_the_local_store(monkeypatch, radas_home):
    monkeypatch.setattr(rda, "_store", None)
    with pytest.raises(StorageError, match=r"rda.init\(user_name="):
        rda.save_cloud_artifact("x.pkl", 1)
    store = rda.init(user_name="modapi")  # not in a cluster job: local
    assert store.location == str(radas_home / "artifacts" / "modapi")
    assert rda.init("modapi", run_with="local").location == store.location
    assert rda.save_cloud_artifact("a/b.json", [1, 2]) == str(
        radas_home / "artifacts/modapi/a/b.json"
    )
    assert rda.load_cloud_artifact("a/b.json") == [1, 2]
    assert rda.exists("a/b.json") and rda.artifact_exists("a")
    assert rda.list_cloud_artifacts() == ["a/b.json"]
    rda.rm_cloud_artifact("a", recursive=True)
    assert rda.list_cloud_artifacts() == [] and not rda.exists("a/b.json")
    assert rda.get_store() is rda._store


def test_inside_a_cluster_job_init_finds_the_jobs_store(monkeypatch, s3, tmp_path):
    """The variables a radas job carries (ClusterConfig.job_env) are all a trial needs."""
    monkeypatch.setenv("RADAS_CLUSTER", "not-in-this-config")
    for name in ("RESULTS", "DATA", "COLD_DATA"):
        monkeypatch.setenv(f"RADAS_{name}_ROOT", str(tmp_path / name.lower()))
    monkeypatch.setenv("RADAS_ARTIFACT_ROOT", s3.url("from-env"))
    monkeypatch.setenv("RADAS_ARTIFACT_ENDPOINT_URL", s3.endpoint_url)
    store = rda.init(user_name="alice")
    assert isinstance(store, FsspecArtifactStore)
    assert store.location == f"s3://{s3.bucket}/from-env/alice"
    rda.save_cloud_artifact("x.json", {"from": "trial"})
    assert open_store("alice", root=s3.url("from-env"), endpoint_url=s3.endpoint_url).load(
        "x.json"
    ) == {"from": "trial"}
    monkeypatch.delenv("RADAS_ARTIFACT_ROOT")  # default: inside the data root
    monkeypatch.delenv("RADAS_ARTIFACT_ENDPOINT_URL")
    store = rda.init(user_name="alice")
    assert store.location == str(tmp_path / "data" / ".radas-artifacts" / "alice")
    assert radas.get_data_dir("alice") == str(tmp_path / "data" / "alice")


def test_store_configuration_errors_say_what_to_do(s3, tmp_path):
    missing_bucket = open_store("alice", root="s3://no-such-bucket/x", endpoint_url=s3.endpoint_url)
    with pytest.raises(StorageError, match="Check that the bucket exists") as caught:
        missing_bucket.save("a.json", 1)
    assert "s3://no-such-bucket/x/alice/a.json" in str(caught.value)
    with pytest.raises(InvalidArgumentError, match="not both"):
        open_store("alice", root=str(tmp_path), run_with="local")
    with pytest.raises(InvalidArgumentError, match="endpoint_url is for S3"):
        open_store("alice", root=str(tmp_path), endpoint_url="http://127.0.0.1:9")
    with pytest.raises(InvalidArgumentError, match="not an http"):
        open_store("alice", root="s3://b/x", endpoint_url="127.0.0.1:9000")
    with pytest.raises(radas.InvalidNameError):
        open_store("../bob", root=str(tmp_path))
    with pytest.raises(radas.InvalidNameError, match="reserved"):
        open_store(".radas-artifacts", root=str(tmp_path))
    unreachable = open_store(
        "alice",
        root="s3://b/x",
        endpoint_url="http://127.0.0.1:9",
        storage_options={"config_kwargs": {"retries": {"max_attempts": 1}}},
    )
    with pytest.raises(StorageError, match="answers from this machine"):
        unreachable.load("a.json")
    with pytest.raises(StorageError, match="Check storage_options: they go to s3fs"):
        open_store("alice", root="s3://b/x", storage_options={"retries": 1})


def test_torch_files_need_torch(tmp_path):
    store = LocalArtifactStore("alice", tmp_path)
    try:
        import torch
    except ImportError:
        with pytest.raises(StorageError, match="pip install torch"):
            store.save("w.pt", {"w": [1.0]})
        assert store.list() == []
        return
    state = {"w": torch.arange(4.0)}
    store.save("w.pt", state)
    assert torch.equal(store.load("w.pt")["w"], state["w"])


KILLED_WRITER_HOST = textwrap.dedent(
    """
    import json, os, pickle, random, signal, sys, time
    import numpy as np
    from radas.errors import StorageError
    from radas.storage.artifacts import TEMP_MARKER, LocalArtifactStore

    root, rounds = sys.argv[1], int(sys.argv[2])
    store = LocalArtifactStore("alice", root)
    n = 4 * 2**20  # 32 MiB per version

    def make(path, k):
        if path.endswith(".npy"):
            return np.full(n, k, dtype=np.float64)
        return {"version": k, "payload": bytes([k % 256]) * (8 * n)}

    def version(path):
        value = store.load(path)  # a torn file fails to load or has mixed contents
        if path.endswith(".npy"):
            assert value.shape == (n,) and (value == value[0]).all(), "torn array"
            return int(value[0])
        assert value["payload"] == bytes([value["version"] % 256]) * (8 * n), "torn pickle"
        return value["version"]

    def child_saves(path, k):
        pid = os.fork()
        if pid == 0:
            try:
                store.save(path, make(path, k))
            finally:
                os._exit(0)
        return pid

    report = {"threads_before_fork": __import__("threading").active_count()}
    for path in ("model.npy", "state.pkl"):
        store.save(path, make(path, 0))
        # the quickest of 3 whole saves: one slowed by a busy moment would put every kill
        # after the save had ended, and no kill would land mid-write
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            os.waitpid(child_saves(path, 0), 0)
            timings.append(time.perf_counter() - start)
        full_s = min(timings)
        current, old, new, torn = 0, 0, 0, []
        for _ in range(rounds):
            pid = child_saves(path, current + 1)
            time.sleep(random.uniform(0.05, 1.1) * full_s)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            try:
                got = version(path)
            except (AssertionError, StorageError, pickle.UnpicklingError) as err:
                torn.append(repr(err))
                continue
            if got == current:
                old += 1
            elif got == current + 1:
                new += 1
                current = got
            else:
                torn.append(f"version {got} after {current}")
        leftovers = [f for f in os.listdir(store.location) if TEMP_MARKER in f]
        report[path] = {"old": old, "new": new, "torn": torn, "temporaries": len(leftovers),
                        "save_s": full_s}
    report["listed"] = store.list()
    print(json.dumps(report))
    """
)


@pytest.mark.slow
def test_a_writer_killed_mid_save_never_leaves_a_torn_artifact(tmp_path):
    """SIGKILL a saving process at random moments, many times: the artifact always loads as
    the old or the new version, never a mix. (The saves run in forks of one helper process.)"""
    rounds = 40
    script = tmp_path / "host.py"
    script.write_text(KILLED_WRITER_HOST)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "artifacts"), str(rounds)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["threads_before_fork"] == 1
    for path in ("model.npy", "state.pkl"):
        outcome = report[path]
        assert outcome["torn"] == [], outcome
        assert outcome["old"] + outcome["new"] == rounds
        assert outcome["temporaries"] >= 1, outcome  # evidence that kills landed mid-write
    assert report["listed"] == ["model.npy", "state.pkl"]  # temporaries are not listed


@pytest.mark.slow
def test_a_one_gib_array_saves_and_loads(tmp_path):
    store = LocalArtifactStore("alice", tmp_path)
    array = np.arange(2**27, dtype=np.float64)  # 1 GiB
    store.save("big/array.npy", array)
    assert os.path.getsize(Path(store.location) / "big/array.npy") >= array.nbytes
    loaded = store.load("big/array.npy")
    assert loaded.shape == array.shape and loaded.dtype == array.dtype
    assert np.array_equal(loaded, array)
