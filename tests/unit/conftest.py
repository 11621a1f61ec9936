"""tests/unit: what needs no Ray (the fake backend, pure functions, files, artifact stores,
scripts), in well under a minute. A test here that starts Ray (radas's in-process one, or a
``ray start`` cluster) fails and belongs in tests/ray/."""

from __future__ import annotations

import sys

import pytest


def _ray_started() -> bool:
    ray = sys.modules.get("ray")  # never imported here
    return ray is not None and ray.is_initialized()


@pytest.fixture(autouse=True)
def _no_ray_session():
    # In a run of several folders a test of tests/ray/ may have started Ray before: only a
    # unit test that starts it fails.
    started_before = _ray_started()
    yield
    assert started_before or not _ray_started(), "this test started Ray: move it to tests/ray/"


@pytest.fixture
def cluster():
    pytest.fail("tests/unit starts no cluster: a test that needs one belongs in tests/ray/")
