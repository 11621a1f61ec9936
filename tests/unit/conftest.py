"""tests/unit: what needs no Ray (the fake backend, pure functions, files, artifact stores,
scripts), in well under a minute. A test here that starts Ray (radas's in-process one, or a
``ray start`` cluster) fails and belongs in tests/ray/."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _no_ray_session():
    yield
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "this test started Ray: move it to tests/ray/"


@pytest.fixture
def cluster():
    pytest.fail("tests/unit starts no cluster: a test that needs one belongs in tests/ray/")
