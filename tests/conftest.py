"""Shared fixtures. Tests run real Ray in-process (started once by radas, reused)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Every test session gets its own RADAS_HOME: nothing is written to the real ~/.radas.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="radas-tests-"))
os.environ["RADAS_HOME"] = str(_SESSION_HOME)
os.environ["RADAS_CONFIG"] = str(_SESSION_HOME / "config.toml")
os.environ.setdefault("MPLBACKEND", "Agg")
# Trackers write nothing outside the session's directory and never try the network.
for _name, _value in {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_CACHE_DIR": str(_SESSION_HOME / "wandb-cache"),
    "WANDB_CONFIG_DIR": str(_SESSION_HOME / "wandb-config"),
    "WANDB_DATA_DIR": str(_SESSION_HOME / "wandb-data"),
}.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session", autouse=True)
def _ray_session():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster():
    """One real local Ray cluster (``ray start --head`` on 127.0.0.1, token auth) per session."""
    from radas.clusters import start_local_cluster

    local = start_local_cluster("testcluster", num_cpus=2)
    yield local
    local.stop()


@pytest.fixture
def radas_home() -> Path:
    return _SESSION_HOME


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory: experiment full names are unique per test."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def add(config):
    return {"score": config["a"] + config["b"]}


def grid_ab():
    from ray import tune

    return {"a": tune.grid_search([1, 2, 3]), "b": tune.grid_search([10, 20])}
