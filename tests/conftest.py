"""Shared fixtures of every folder: a RADAS_HOME of the session's own, a working directory per
test, the session's local cluster (started only when a test asks for it) and the report of the
fault-and-input suite.

Nothing here starts or imports Ray: radas starts its in-process Ray the first time a test
runs a sweep (tests/ray/, tests/integrity/, tests/multihost/), and it is reused until the
session ends. tests/unit/ runs without it (its conftest.py checks that).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Every test session gets its own RADAS_HOME: nothing is written to the real ~/.radas. A
# process that imports this file without running tests (pytest-xdist's controller, a
# --collect-only run) removes it at its exit; one that runs them, at the session's end.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="radas-tests-"))
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
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
def _session_end():
    yield
    ray = sys.modules.get("ray")  # imported only if a test used Ray
    if ray is not None and ray.is_initialized():
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


# --- parallel runs (pytest-xdist ``-n 2 --dist loadgroup``, as scripts/test.sh runs the suite) ---
# Each worker is a session of its own (its own RADAS_HOME, in-process Ray and local clusters).
# The simulated-host bed and the autoscaling beds are machine-wide (network namespaces, Ray's
# fake multi-node provider): their modules carry ``pytest.mark.xdist_group`` in ``pytestmark``
# ("hostbed", "autoscaling"), so the tests of each run in one worker. (Marks added here, in
# pytest_collection_modifyitems, come after xdist has read the groups: pytest-xdist#1241.)
# tests/unit/test_parallel.py checks that the groups hold.


# --- the fault-and-input suite (issue 11): every case is a test marked ``integrity(kind)`` ----
# kind "error":   a bad input or an unusable situation gets a clear RadasError (or RadasWarning)
# kind "survive": a fault (kill, full disk, damaged file, dead server) is survived: nothing lost,
#                 nothing re-run, nothing mixed, and the user is told
# kind "secret":  a planted secret never lands where it must not
INTEGRITY_KINDS = ("error", "survive", "secret")
_integrity_results: dict[str, dict[str, int]] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "integrity(kind): a case of the fault-and-input suite; kind is one of "
        + ", ".join(INTEGRITY_KINDS),
    )


def pytest_runtest_logreport(report):
    if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    kind = _integrity_kind(report)
    if kind is None:
        return
    counts = _integrity_results.setdefault(kind, {"passed": 0, "failed": 0, "skipped": 0})
    counts[report.outcome] = counts.get(report.outcome, 0) + 1


def _integrity_kind(report) -> str | None:
    for keyword, value in getattr(report, "user_properties", []):
        if keyword == "integrity":
            return value
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    marker = item.get_closest_marker("integrity")
    if marker is not None:
        kind = marker.args[0] if marker.args else ""
        assert kind in INTEGRITY_KINDS, f"integrity kind must be one of {INTEGRITY_KINDS}"
        item.user_properties.append(("integrity", kind))


def pytest_terminal_summary(terminalreporter):
    if not _integrity_results:
        return
    tried = sum(sum(c.values()) for c in _integrity_results.values())
    ok = {kind: c.get("passed", 0) for kind, c in _integrity_results.items()}
    failed = sum(c.get("failed", 0) for c in _integrity_results.values())
    skipped = sum(c.get("skipped", 0) for c in _integrity_results.values())
    terminalreporter.write_line(
        f"fault-and-input suite: {tried} cases tried: {ok.get('error', 0)} clear errors, "
        f"{ok.get('survive', 0)} faults survived with nothing lost, {ok.get('secret', 0)} "
        f"secrets kept out; {failed} failed, {skipped} skipped"
    )
