"""Issue 11: bad inputs around clusters, artifacts and figures get a clear radas error.

No cluster is needed: config files, token files, artifact stores and figure paths are real
files in a temporary folder; the CLI runs in-process through ``radas.cli.main``.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import seaborn as sns

import radas
from radas import cli
from radas.backends.job_client import cluster_timeout_s
from radas.clusters import config as cluster_config
from radas.clusters.config import ClusterConfig
from radas.errors import (
    ArtifactPathError,
    ArtifactTypeError,
    ClusterAuthError,
    ClusterConfigError,
    ClusterError,
    InvalidArgumentError,
    RadasWarning,
    UnknownClusterError,
)
from radas.storage import LocalArtifactStore
from radas.storage.artifacts import MAX_NAME_BYTES, TEMP_MARKER, temporary_name

pytestmark = pytest.mark.integrity("error")

GOOD = {
    "address": '"http://127.0.0.1:8265"',
    "results_root": '"/shared/results"',
    "data_root": '"/shared/data"',
    "cold_data_root": '"/cold"',
}


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("RADAS_CONFIG", str(path))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of the real user
    return path


def cluster_table(name: str = "lab", **overrides: str) -> str:
    values = {**GOOD, **overrides}
    lines = [f"{key} = {value}" for key, value in values.items() if value is not None]
    return f"[clusters.{name}]\n" + "\n".join(lines) + "\n"


# --- the config file: every wrong value names the key and the file ---------------------------


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"address": "8265"}, "address = 8265 is not valid"),
        ({"address": '""'}, "address = '' is not valid"),
        ({"address": '"ray://10.0.0.5:10001"'}, "not a Ray job server address"),
        ({"address": '"http://"'}, "not a Ray job server address"),
        ({"address": '"http://host:port"'}, "not a Ray job server address"),
        ({"address": '"ftp://host:8265"'}, "not a Ray job server address"),
        ({"results_root": '""'}, "results_root = '' is not valid"),
        ({"data_root": "5"}, "data_root = 5 is not valid"),
        ({"cold_data_root": "[1, 2]"}, "cold_data_root = [1, 2] is not valid"),
        ({"cpus_per_node": '"8"'}, "cpus_per_node = '8' is not valid"),
        ({"cpus_per_node": "-1"}, "cpus_per_node = -1 is not valid"),
        ({"cpus_per_node": "0"}, "cpus_per_node must be positive"),
        ({"cpus_per_node": "true"}, "cpus_per_node = True is not valid"),
        ({"cpus_per_node": "nan"}, "cpus_per_node = nan is not valid"),
        ({"gpus_per_node": "inf"}, "gpus_per_node = inf is not valid"),
        ({"memory_per_node_gb": "-3.5"}, "memory_per_node_gb = -3.5 is not valid"),
        ({"token_env": "1"}, "token_env = 1 is not valid"),
        ({"token_file": '["a"]'}, "token_file = ['a'] is not valid"),
        ({"description": "3"}, "description = 3 is not valid"),
        ({"managed_by_radas": '"yes"'}, "managed_by_radas must be true or false"),
        ({"artifact_root": '""'}, "artifact_root = '' is not valid"),
        ({"adress": '"http://h:1"'}, "unknown key(s) ['adress']"),
        ({"address": None}, "is missing address"),
        # issue 23: resolved against each process's working directory
        ({"results_root": '"relative/results"'}, "results_root = 'relative/results' is a rel"),
        ({"data_root": '"data"'}, "data_root = 'data' is a relative path"),
        ({"artifact_root": '"./art"'}, "artifact_root = './art' is a relative path"),
    ],
)
def test_a_wrong_value_in_the_cluster_table_names_key_and_file(config_file, overrides, says):
    config_file.write_text(cluster_table(**overrides))
    with pytest.raises(ClusterConfigError) as caught:
        cluster_config.load_clusters()
    message = str(caught.value)
    assert says in message
    assert "[clusters.lab]" in message and str(config_file) in message


def test_one_s3_root_on_two_servers_is_read_through_the_named_clusters_endpoint(config_file):
    """Two clusters keep results under one s3:// URI on different servers: a read through a
    cluster goes to its own endpoint (it went to whichever the config listed last: "no
    results stored"); a bare URI under that root says it is ambiguous, and how to read it."""
    from radas.backends.ray_jobs import RayJobsBackend
    from radas.errors import StorageError
    from radas.storage import store as _store

    s3 = {"results_root": '"s3://lab/results"', "data_root": None, "cold_data_root": None}
    config_file.write_text(
        cluster_table("a", **s3, results_endpoint_url='"http://127.0.0.1:9000"')
        + cluster_table("b", **s3, results_endpoint_url='"http://127.0.0.1:9001"')
    )
    uri = "s3://lab/results/alice/_home_alice_lr"
    for name, port in (("a", 9000), ("b", 9001)):
        with RayJobsBackend(cluster_config.get_cluster(name)).store_scope():
            assert _store.endpoint_for(uri) == f"http://127.0.0.1:{port}"
            tuner_scope = _store.scoped_endpoints()
        assert tuner_scope == {"s3://lab/results": f"http://127.0.0.1:{port}"}
    with pytest.raises(StorageError) as caught:
        _store.endpoint_for(uri)
    message = str(caught.value)
    assert "a: http://127.0.0.1:9000; b: http://127.0.0.1:9001" in message
    assert "run_with='cluster:<name>'" in message
    assert _store.endpoint_for("s3://lab/elsewhere/x") is None  # not under that root


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("clusters = 5\n", "'clusters' in"),
        ('clusters = "lab"\n', "must be a table of clusters"),
        ("[clusters]\nlab = 5\n", "'clusters.lab' in"),
        ('[clusters."../x"]\n' + "\n".join(f"{k} = {v}" for k, v in GOOD.items()), "'../x'"),
        ('[clusters.".hidden"]\n' + "\n".join(f"{k} = {v}" for k, v in GOOD.items()), "name"),
        ("[clusters.lab\naddress = 1\n", "Cannot parse"),
        ('[clusters.lab]\naddress = "http://h:1"\naddress = "http://h:2"\n', "Cannot parse"),
    ],
)
def test_a_config_file_of_the_wrong_shape_is_a_config_error(config_file, text, says):
    config_file.write_text(text)
    with pytest.raises(ClusterConfigError, match=r"config|clusters") as caught:
        cluster_config.load_clusters()
    assert says in str(caught.value) and str(config_file) in str(caught.value)


def test_a_config_file_that_is_not_utf8_is_a_config_error(config_file):
    config_file.write_bytes(b'[clusters.lab]\ndescription = "caf\xe9"\n')
    with pytest.raises(ClusterConfigError, match="UTF-8 TOML") as caught:
        cluster_config.load_clusters()
    assert str(config_file) in str(caught.value)


def test_a_config_path_that_is_a_folder_is_a_config_error(config_file):
    config_file.mkdir()
    with pytest.raises(ClusterConfigError, match="Cannot parse the radas config"):
        cluster_config.load_clusters()


def test_an_address_without_scheme_is_taken_as_http(config_file):
    """Documented: ``address = "host:port"`` means the job server at http://host:port (Ray's
    client would otherwise take it for a GCS address and hang ~40 s on gRPC)."""
    config_file.write_text(cluster_table(address='"127.0.0.1:8265/"'))
    assert cluster_config.get_cluster("lab").address == "http://127.0.0.1:8265"


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "", " lab", "-lab", "x" * 65])
def test_a_cluster_name_that_could_leave_its_folder_is_refused(config_file, name):
    config_file.write_text(cluster_table())
    with pytest.raises(UnknownClusterError, match="not a valid cluster name"):
        cluster_config.get_cluster(name)
    with pytest.raises(UnknownClusterError, match="not a valid cluster name"):
        radas.clusters.start_local_cluster(name)
    assert not (Path(os.environ["RADAS_HOME"]) / "x").exists()


def test_run_with_a_cluster_name_with_a_slash_is_refused(config_file):
    with pytest.raises(InvalidArgumentError, match=r"run_with=.cluster:\.\./x. is not valid"):
        radas.run_experiment_sync(
            user_name="alice",
            experiment_name="e",
            trainable=lambda config: {"x": 1},
            run_with="cluster:../x",
            run_choice="run",
        )


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan"])
def test_a_bad_cluster_timeout_is_refused(monkeypatch, value):
    monkeypatch.setenv("RADAS_CLUSTER_TIMEOUT_S", value)
    with pytest.raises(ClusterError, match=r"RADAS_CLUSTER_TIMEOUT_S=.* is not a positive"):
        cluster_timeout_s()


# --- token files ---------------------------------------------------------------------------


def token_cluster(token_file: Path) -> ClusterConfig:
    return ClusterConfig(
        name="lab",
        address="http://127.0.0.1:1",
        results_root="/r",
        data_root="/d",
        cold_data_root="/c",
        token_file=str(token_file),
    )


def test_a_token_file_others_can_read_gets_a_chmod_warning(config_file, tmp_path):
    token_file = tmp_path / "lab.token"
    token_file.write_text("s3cret\n")
    token_file.chmod(0o644)
    with pytest.warns(RadasWarning, match=f"chmod 600 {token_file}") as caught:
        assert token_cluster(token_file).resolve_token() == "s3cret"
    assert "mode 644" in str(caught[0].message)
    token_file.chmod(0o600)
    assert token_cluster(token_file).resolve_token() == "s3cret"  # private: no warning


def test_a_token_file_that_is_not_text_is_an_auth_error(config_file, tmp_path):
    token_file = tmp_path / "lab.token"
    token_file.write_bytes(b"\xff\xfe\x00binary")
    token_file.chmod(0o600)
    with pytest.raises(ClusterAuthError, match="UTF-8 text file") as caught:
        token_cluster(token_file).resolve_token()
    assert str(token_file) in str(caught.value)


# --- artifacts: names too long, values the format cannot hold --------------------------------


@pytest.fixture
def store(tmp_path) -> LocalArtifactStore:
    return LocalArtifactStore("alice", tmp_path / "artifacts")


def files_under(store: LocalArtifactStore) -> list[str]:
    return sorted(p.name for p in Path(store.location).rglob("*"))


@pytest.mark.parametrize("length", [240, 250, MAX_NAME_BYTES])
def test_a_legal_long_name_saves_although_the_temporary_name_would_be_longer(store, length):
    name = "m" * (length - 4) + ".pkl"
    assert len(f".{name}{TEMP_MARKER}1234567-abcdef01") > MAX_NAME_BYTES
    assert len(temporary_name(name).encode()) <= MAX_NAME_BYTES
    store.save(name, {"length": length})
    assert store.load(name) == {"length": length}
    assert files_under(store) == [name]  # no temporary file left


@pytest.mark.parametrize(
    "path",
    [
        "m" * 252 + ".pkl",  # 256 bytes
        "m" * 296 + ".pkl",  # 300 bytes
        "é" * 126 + ".pkl",  # 256 bytes of UTF-8 in 130 characters
        "f" * 300 + "/w.pkl",  # a folder name
    ],
)
def test_a_name_over_the_limit_is_refused_with_the_limit(store, path):
    with pytest.raises(ArtifactPathError, match=f"over the limit of {MAX_NAME_BYTES} bytes"):
        store.save(path, 1)
    with pytest.raises(ArtifactPathError, match="per file or folder name"):
        store.load(path)
    assert files_under(store) == []


def test_a_local_path_over_path_max_is_refused(store):
    path = "/".join(["d" * 250] * 17) + "/w.pkl"
    with pytest.raises(ArtifactPathError, match="over the limit of 4095"):
        store.save(path, 1)
    assert files_under(store) == []


@pytest.mark.parametrize(
    ("obj", "says"),
    [
        ({"loss": math.nan}, "JSON has no NaN or Infinity"),
        ({"loss": [1.0, math.inf]}, "JSON has no NaN or Infinity"),
        ([{"deep": {"x": -math.inf}}], "JSON has no NaN or Infinity"),
        ({1: "a"}, "the key 1 is not a str"),
        ({"by_seed": {0: 0.5}}, "the key 0 is not a str"),
        ({None: 1}, "the key None is not a str"),
    ],
)
def test_json_refuses_what_it_cannot_hold_exactly(store, obj, says):
    with pytest.raises(ArtifactTypeError, match="Nothing was written") as caught:
        store.save("metrics.json", obj)
    assert says in str(caught.value) and "'.pkl'" in str(caught.value)
    assert files_under(store) == []


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({0: [1, 2], 1: [3, 4]}),
        pd.DataFrame(np.zeros((2, 2)), columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)])),
        pd.DataFrame({"ok": [1], 2.5: [2]}),
    ],
)
def test_parquet_refuses_non_str_column_names_and_says_to_rename(store, frame):
    with pytest.raises(ArtifactTypeError, match="Parquet needs str column names") as caught:
        store.save("table.parquet", frame)
    assert "df.columns = [str(c) for c in df.columns]" in str(caught.value)
    assert files_under(store) == []
    frame.columns = [str(c) for c in frame.columns]
    store.save("table.parquet", frame)  # renamed as the message says: saved
    assert list(store.load("table.parquet").columns) == list(frame.columns)


# --- figures: radas creates no folder the user did not make --------------------------------


def test_plot_path_in_a_missing_folder_is_refused_before_anything_runs(project, tmp_path):
    missing = tmp_path / "nonexistent" / "dir"
    ran = []
    with pytest.raises(InvalidArgumentError, match=r"does not exist\. Create it first") as caught:
        radas.run_experiment_sync(
            user_name="alice",
            experiment_name="figs",
            trainable=lambda config: ran.append(1) or {"x": 1},
            run_choice="run",
            plot_fn=sns.lineplot,
            plot_kwargs=dict(x="x", y="x"),
            plot_path=missing / "f.png",
        )
    assert f"mkdir -p {missing}" in str(caught.value)
    assert not (tmp_path / "nonexistent").exists() and ran == []


def test_cli_analyze_to_a_missing_folder_exits_1_and_creates_nothing(project, capsys):
    code = cli.main(["analyze", "nothing-here", "--x", "a", "--y", "b", "-o", "no/dir/f.png"])
    assert code == 1
    err = capsys.readouterr().err
    assert "the folder" in err and "does not exist" in err
    assert not (project / "no").exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["cluster", "down", "../x"], "not a valid cluster name"),
        (["ls", "--cluster", "../x"], "not valid"),
        (["ls", "--cluster", "nosuch"], "No cluster named 'nosuch'"),
    ],
)
def test_cli_refuses_bad_cluster_names_with_exit_1(config_file, capsys, argv, says):
    config_file.write_text(textwrap.dedent(cluster_table()))
    assert cli.main(argv) == 1
    assert says in capsys.readouterr().err


# --- issue 23: raw errors of Python, Ray or argparse become radas errors ---------------------


def test_report_of_something_else_than_a_dict_is_refused():
    with pytest.raises(InvalidArgumentError, match=r"takes a dict of metrics, got list.*'loss'"):
        radas.report([1, 2])


@pytest.mark.parametrize("path", [None, 123])
def test_a_tuner_of_something_else_than_a_path_is_refused(path):
    with pytest.raises(InvalidArgumentError, match="path \\(or URI\\) of a stored experiment"):
        radas.Tuner(path)


def test_config_seed_of_something_else_than_a_config_is_refused():
    with pytest.raises(InvalidArgumentError, match="takes the trial's config dict, got NoneType"):
        radas.utils.config_seed(None)
    assert radas.utils.config_seed({"seed": 3}) == 3


@pytest.mark.parametrize("root", ["ftp://x/y", "http://example.invalid/a", "sftp://h/p"])
def test_an_artifact_root_of_an_unsupported_scheme_is_refused_before_any_network(root, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    from radas import cloud_artifact

    scheme = root.split("://")[0]
    with pytest.raises(InvalidArgumentError, match=f"uses {scheme}://, which radas does not"):
        cloud_artifact.init(user_name="alice", root=root)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--num-gpus", "nan"], "num_gpus=nan is not a number of CPUs or GPUs"),
        (["--num-cpus", "inf"], "num_cpus=inf is not a number of CPUs or GPUs"),
        (["--worker-cpus=nan", "--workers", "1"], "worker_cpus=nan is not a number"),
    ],
)
def test_cluster_up_with_a_count_that_is_not_finite_exits_1(capsys, radas_home, argv, says):
    name = "not-finite"
    assert cli.main(["cluster", "up", name, *argv]) == 1
    assert says in capsys.readouterr().err
    assert not (radas_home / "clusters" / name).exists()


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_cli_analyze_with_a_dir_that_is_not_a_folder_exits_1(project, capsys, kind):
    target = project / "nonexistent"
    if kind == "file":
        target.write_text("x")
    assert cli.main(["analyze", "X", "--dir", str(target)]) == 1
    says = "is not a directory" if kind == "file" else "does not exist"
    assert f"--dir {target} {says}" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["missing folder", "a folder"])
def test_cli_analyze_csv_that_cannot_be_written_exits_1_before_reading(project, capsys, kind):
    csv = "no/such/out.csv" if kind == "missing folder" else "adir"
    if kind == "a folder":
        (project / "adir").mkdir()
    # the experiment does not exist either: the --csv check comes first
    assert cli.main(["analyze", "nothing-here", "--csv", csv]) == 1
    err = capsys.readouterr().err
    says = "does not exist. Create it first" if kind == "missing folder" else "is a directory"
    assert says in err and "No stored results" not in err
    assert not (project / "no").exists()


def test_a_relative_radas_home_is_refused_before_anything_is_created(project, monkeypatch):
    monkeypatch.setenv("RADAS_HOME", "relhome")
    with pytest.raises(radas.errors.StorageError, match="RADAS_HOME=relhome is a relative path"):
        radas.run_experiment_sync(
            user_name="alice",
            experiment_name="rel",
            trainable=lambda config: {"x": 1},
            run_choice="run",
        )
    assert list(project.iterdir()) == []
