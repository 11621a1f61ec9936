"""The suite runs in two processes (scripts/test.sh: ``-n 2 --dist loadgroup``); the tests of a
machine-wide bed must stay in one of them. pytest 9.2 with pytest-xdist 3.8 dropped the groups
without a word (pytest-dev/pytest-xdist#1386), and marks added in a conftest hook never count
(#1241): these tests catch either before two beds meet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
GROUPED = {
    "test_hostbed.py": "hostbed",
    "test_multihost.py": "hostbed",
    "test_autoscaling.py": "autoscaling",
    "test_autoscaling_gpu.py": "autoscaling",
}

GROUPED_TESTS = """
import os

import pytest

pytestmark = [pytest.mark.xdist_group("bed")]


@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    (OUT / f"grouped-{i}").write_text(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


@pytest.mark.slow  # two pytest workers start: ~5 s
def test_tests_of_one_group_run_in_one_worker(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "test_grouped.py").write_text(
        f"from pathlib import Path\nOUT = Path({str(out)!r})\n" + GROUPED_TESTS
    )
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "2",
            "--dist",
            "loadgroup",
            "test_grouped.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    workers = {path.read_text() for path in out.glob("grouped-*")}
    assert len(list(out.glob("grouped-*"))) == 6
    assert len(workers) == 1, f"one group ran in {sorted(workers)}: pytest/xdist lost the groups"


def test_every_bed_module_declares_its_group():
    for name, group in GROUPED.items():
        text = (TESTS / "multihost" / name).read_text()
        assert f'pytest.mark.xdist_group("{group}")' in text, f"{name} runs its bed in any worker"
