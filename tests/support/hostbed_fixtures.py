"""pytest fixtures for the multi-host test bed (tests/support/hostbed.py), as a plugin.

A test module that needs simulated hosts registers it and asks for ``multi_host_bed``::

    pytest_plugins = ["support.hostbed_fixtures"]
    pytestmark = [pytest.mark.slow, pytest.mark.cluster]

    def test_something(multi_host_bed): ...  # skipped, with the reason, where it cannot run

One bed (head + 2 workers) serves the whole session; after each test, workers the test cut
off or killed are revived, so every test starts with all three nodes alive.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hostbed import HostBed, available, host_bed


@pytest.fixture(scope="session")
def bed_client_dirs() -> Iterator[dict[str, Path]]:
    """A project folder and a results folder of the client outside /tmp (which every host
    replaces anyway), so the bed must hide them itself."""
    root = Path(tempfile.mkdtemp(prefix="radas-hostbed-client-", dir="/var/tmp"))
    dirs = {"project": root / "project", "results": root / "results"}
    for folder in dirs.values():
        folder.mkdir()
    yield dirs
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def _multi_host_bed_session(bed_client_dirs: dict[str, Path]) -> Iterator[HostBed]:
    """Started from the client's project folder; it also hides the folder that holds the
    Python environment (the repository), which must then still work on every host."""
    reason = available()
    if reason:
        pytest.skip(reason)
    started_in = Path.cwd()
    os.chdir(bed_client_dirs["project"])
    try:
        context = host_bed(hide=[bed_client_dirs["results"], Path(sys.prefix).parent])
        bed = context.__enter__()
    finally:
        os.chdir(started_in)
    print(f"\nhost bed up in {bed.started_s:.1f} s (to {len(bed.hosts)} alive nodes)")
    try:
        yield bed
    finally:
        began = time.monotonic()
        context.__exit__(*sys.exc_info())
        print(f"\nhost bed torn down in {time.monotonic() - began:.1f} s")


@pytest.fixture
def multi_host_bed(_multi_host_bed_session: HostBed) -> Iterator[HostBed]:
    """The session's bed, all nodes alive; what a test broke is mended after it."""
    yield _multi_host_bed_session
    _multi_host_bed_session.heal()
