"""The `radas` command's cluster commands, run as a user runs them: the installed `radas`
script in a subprocess, with this test session's RADAS_HOME and RADAS_CONFIG."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from radas.clusters.local import cluster_dir
from radas.clusters.node_processes import node_temp_dir

pytestmark = pytest.mark.cluster
RADAS = str(Path(sys.executable).with_name("radas"))


def radas_command(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RADAS, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},  # conftest set RADAS_HOME and RADAS_CONFIG
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_cluster_up_refuses_fractional_cpus_before_starting_anything():
    name = unique("frac")
    done = radas_command("cluster", "up", name, "--num-cpus", "1.5")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "num_cpus=1.5" in done.stderr and "whole number" in done.stderr
    assert "stopped" not in done.stdout + done.stderr
    assert not (cluster_dir(name) / "state.json").exists()


@pytest.mark.slow  # a `ray start` that fails, then `cluster down`: 23 s under load
def test_a_failed_start_says_what_failed_and_nothing_about_results():
    name = unique("fails")
    blocker = Path(node_temp_dir(name, "head"))  # a file where Ray wants its temp dir
    blocker.touch()
    try:
        done = radas_command("cluster", "up", name, "--num-cpus", "1")
    finally:
        blocker.unlink()
        radas_command("cluster", "down", name)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"Local cluster {name!r} did not start: `ray start` exited" in done.stderr
    assert "FileExistsError" in done.stderr and "\x1b[" not in output
    assert "results are kept" not in output and "stopped" not in output
    assert not (cluster_dir(name) / "state.json").exists()


@pytest.mark.slow
def test_every_flag_of_cluster_up_down_and_clusters():
    """One start with every `cluster up` flag (whole counts written as 2.0 included)."""
    name = unique("cli")
    try:
        up = radas_command(
            "cluster",
            "up",
            name,
            "--num-cpus",
            "2.0",
            "--num-gpus",
            "1",
            "--workers",
            "1",
            "--worker-cpus",
            "1",
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"local cluster {name!r} is up" in up.stdout
        assert "2 CPUs on the head, 1 worker node(s)" in up.stdout

        listing = radas_command("clusters")
        assert listing.returncode == 0, listing.stdout + listing.stderr
        section = listing.stdout.split(f"{name}  [status: ")[1].split("\n\n")[0]
        assert section.startswith("online]"), section
        assert "on 2 node(s)" in section and f"run_with='cluster:{name}'" in section
        # sized from the cluster's own largest node (the head: 2 CPUs, 1 GPU), no config numbers
        assert "Trials sized from: 2 CPUs, 1 GPUs" in section and "its largest node type" in section
    finally:
        down = radas_command("cluster", "down", name, "--force")
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"local cluster {name!r} stopped (its results are kept)" in down.stdout

    again = radas_command("cluster", "down", name)
    assert again.returncode == 1 and f"local cluster {name!r} is not running" in again.stdout
    listing = radas_command("clusters")
    assert f"{name}  [status: offline]" in listing.stdout
