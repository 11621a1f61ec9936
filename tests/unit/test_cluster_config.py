"""The cluster config file and token lookup (no cluster needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import radas
from radas.clusters import config as cluster_config
from radas.clusters.config import ClusterConfig
from radas.clusters.shape import OVERRIDES_ENV, Overrides
from radas.core.poll import wait_until
from radas.core.spec import RunTarget, parse_run_with
from radas.errors import (
    ClusterAuthError,
    ClusterConfigError,
    InvalidArgumentError,
    UnknownClusterError,
)


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    monkeypatch.setenv("RADAS_CONFIG", str(path))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of the real user
    return path


GPU_CLUSTER = textwrap.dedent(
    """\
    # the lab's clusters
    [smtp]
    host = "127.0.0.1"

    [clusters.gpu]
    address = "http://10.0.0.5:8265"
    description = "8 GPUs"
    when_to_use = "CUDA work"
    results_root = "/shared/results"
    data_root = "/shared/data"
    cold_data_root = "/cold"
    cpus_per_node = 32
    gpus_per_node = 8
    memory_per_node_gb = 256
    token_env = "GPU_TOKEN"
    """
)


def test_clusters_load_with_optional_per_node_overrides(config_file):
    config_file.write_text(GPU_CLUSTER)
    gpu = cluster_config.get_cluster("gpu")
    assert gpu.address == "http://10.0.0.5:8265"
    assert gpu.overrides() == Overrides(cpus=32, gpus=8, memory_gb=256)
    assert json.loads(gpu.job_env()[OVERRIDES_ENV]) == {"cpus": 32, "gpus": 8, "memory_gb": 256}
    # without them the cluster's own node types size the trials: nothing is passed on
    config_file.write_text(
        GPU_CLUSTER.replace("cpus_per_node = 32\n", "")
        .replace("gpus_per_node = 8\n", "")
        .replace("memory_per_node_gb = 256\n", "")
    )
    plain = cluster_config.get_cluster("gpu")
    assert plain.overrides() == Overrides() and not plain.overrides().any()
    assert OVERRIDES_ENV not in plain.job_env()


def test_register_keeps_other_tables_and_comments(config_file):
    config_file.write_text(GPU_CLUSTER)
    cluster_config.register_cluster(
        ClusterConfig(
            name="cpu",
            address="http://127.0.0.1:1",
            results_root="/r",
            data_root="/d",
            cold_data_root="/c",
            cpus_per_node=4,
        )
    )
    text = config_file.read_text()
    assert "# the lab's clusters" in text and "[smtp]" in text
    assert sorted(cluster_config.load_clusters()) == ["cpu", "gpu"]
    assert cluster_config.unregister_cluster("cpu") is True
    assert cluster_config.unregister_cluster("cpu") is False
    assert sorted(cluster_config.load_clusters()) == ["gpu"]


def test_unknown_cluster_lists_the_known_ones(config_file):
    config_file.write_text(GPU_CLUSTER)
    with pytest.raises(UnknownClusterError, match=r"No cluster named 'gpuu'.*known: gpu"):
        radas.run_experiment_sync(
            user_name="u",
            experiment_name="e",
            trainable=lambda c: {},
            run_choice="run",
            run_with="cluster:gpuu",
        )


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ('token = "abc"', "Never put the token in the config"),
        ("colour = 1", "unknown key"),
        ("gpus_per_node = -1", "non-negative"),
    ],
)
def test_bad_cluster_tables(config_file, extra, match):
    config_file.write_text(GPU_CLUSTER.replace("gpus_per_node = 8\n", "") + extra + "\n")
    with pytest.raises(ClusterConfigError, match=match):
        cluster_config.load_clusters()


def test_missing_keys_and_bad_toml(config_file):
    config_file.write_text('[clusters.x]\naddress = "http://h:1"\n')
    with pytest.raises(ClusterConfigError, match="missing results_root, data_root, cold_data_root"):
        cluster_config.load_clusters()
    config_file.write_text("[clusters.x\n")
    with pytest.raises(ClusterConfigError, match="Cannot parse"):
        cluster_config.load_clusters()


def test_token_lookup_order(config_file, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    cluster = ClusterConfig(
        name="c",
        address="a",
        results_root="r",
        data_root="d",
        cold_data_root="c",
        token_env="C_TOKEN",
        token_file=str(token_file),
    )
    with pytest.raises(ClusterAuthError, match=r"\$C_TOKEN or .*token"):
        cluster.resolve_token()
    token_file.write_text("from-file\n")
    token_file.chmod(0o600)
    assert cluster.resolve_token() == "from-file"
    monkeypatch.setenv("C_TOKEN", "from-env")
    assert cluster.resolve_token() == "from-env"

    # An entry that names no source gets no token: Ray's own places hold the token of the
    # cluster they were made for, never sent to whatever address an entry gives (issue 23).
    plain = ClusterConfig(
        name="p", address="a", results_root="r", data_root="d", cold_data_root="c"
    )
    assert plain.resolve_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("ray-default")
    (tmp_path / ".ray" / "auth_token").chmod(0o600)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "ray-env")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / ".ray" / "auth_token"))
    assert plain.resolve_token() is None
    named_env = ClusterConfig(**{**plain.__dict__, "token_env": "RAY_AUTH_TOKEN"})
    assert named_env.resolve_token() == "ray-env"
    named_file = ClusterConfig(**{**plain.__dict__, "token_file": "~/.ray/auth_token"})
    assert named_file.resolve_token() == "ray-default"


@pytest.mark.parametrize("name", ["lab", "lab-gpu", "a.b_c", "0", "x" * 64])
def test_one_cluster_name_rule_for_run_with_and_the_config(name):
    assert parse_run_with(f"cluster:{name}") == RunTarget("cluster", name)
    assert cluster_config.validate_cluster_name(name) == name


@pytest.mark.parametrize("name", ["-lab", ".lab", "_lab", "..", "x" * 65, "a/b", "a b", ""])
def test_a_name_the_rule_refuses_is_refused_by_both(name):
    with pytest.raises(InvalidArgumentError, match="a name is 1 to 64 letters"):
        parse_run_with(f"cluster:{name}")
    with pytest.raises(UnknownClusterError, match="not a valid cluster name"):
        cluster_config.validate_cluster_name(name)


REGISTERS = textwrap.dedent(
    """\
    import sys, time
    from pathlib import Path
    from radas.clusters.config import ClusterConfig, register_cluster, unregister_cluster

    racer, folder = sys.argv[1], Path(sys.argv[2])
    (folder / f"ready-{racer}").touch()
    while not (folder / "go").exists():  # all start together
        time.sleep(0.001)
    for i in range(20):
        register_cluster(ClusterConfig(
            name=f"{racer}-{i}", address="http://127.0.0.1:8265", results_root="/r",
            data_root="/d", cold_data_root="/c",
        ))
    unregister_cluster(f"{racer}-0")
    """
)


@pytest.mark.slow
@pytest.mark.integrity("survive")
def test_processes_changing_the_config_at_once_each_keep_their_change(config_file, tmp_path):
    """`radas cluster up a` and `radas cluster up b` at once: before, each read the file,
    added its cluster and wrote it back over the other's change (31 of 60 kept in a first
    try), and a writer's rename could fail (FileNotFoundError: both wrote one temporary
    file)."""
    cluster_config.register_cluster(
        ClusterConfig(name="kept", address="http://h:8265", results_root="s3://b/r")
    )
    script = tmp_path / "registers.py"
    script.write_text(REGISTERS)
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), f"p{n}", str(tmp_path)], stderr=subprocess.PIPE, text=True
        )
        for n in range(3)
    ]
    try:
        wait_until(
            lambda: len(list(tmp_path.glob("ready-*"))) == 3 or None,
            120,
            what="the racers to start",
            max_delay_s=0.05,
        )
    finally:
        (tmp_path / "go").touch()
    errors = [racer.communicate(timeout=120)[1] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0], errors
    expected = {"kept"} | {f"p{n}-{i}" for n in range(3) for i in range(1, 20)}
    assert set(cluster_config.load_clusters()) == expected
    assert [p.name for p in config_file.parent.iterdir() if ".radas-tmp-" in p.name] == []
