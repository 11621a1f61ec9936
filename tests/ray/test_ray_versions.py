"""The supported Ray range (radas/ray_compat/versions.py) and the client/cluster version check."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import tomlkit
from packaging.requirements import Requirement

import radas
from radas.backends import job_driver
from radas.backends.job_client import JobServer
from radas.clusters.config import get_cluster
from radas.errors import ClusterError
from radas.ray_compat.versions import (
    CLIENT_RAY_VERSION_ENV,
    NEWEST,
    OLDEST,
    check_pair,
    is_supported,
    minor,
    pip_requirement,
    supported_range,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_pin_in_pyproject_is_the_supported_range():
    project = tomlkit.parse((ROOT / "pyproject.toml").read_text())["project"]
    rays = [dep for dep in project["dependencies"] if dep.startswith("ray")]
    assert rays == [pip_requirement()]
    (major, first), (_, last) = OLDEST, NEWEST
    in_range = [f"{major}.{first}.0", f"{major}.{last}.9"]
    outside = [f"{major}.{first - 1}.9", f"{major}.{last + 1}.0"]
    allowed = Requirement(pip_requirement()).specifier
    assert list(allowed.filter(in_range)) == in_range
    assert list(allowed.filter(outside)) == []
    assert supported_range() == f"{major}.{first}-{major}.{last}"


def test_the_installed_ray_is_supported():
    assert is_supported(ray.__version__), ray.__version__


def test_minor_reads_release_versions_only():
    assert minor("2.60.0") == (2, 60)
    assert minor("2.55.1rc1") == (2, 55)
    assert minor("3.0.0.dev0") == (3, 0)
    assert minor("2") is None
    assert minor("not a version") is None
    assert [is_supported(v) for v in ("2.54.1", "2.55.0", "2.60.9", "2.61.0", "3.0.0.dev0")] == [
        False,
        True,
        True,
        False,
        False,
    ]


def test_same_minor_passes_whatever_the_patch():
    assert check_pair("2.60.0", "2.60.1", "dev") is None
    assert check_pair("2.55.1", "2.55.0", "dev") is None


def test_different_supported_minors_name_both_versions_and_both_fixes():
    problem = check_pair("2.60.0", "2.55.1", "dev")
    assert problem == (
        "This client has Ray 2.60.0, cluster 'dev' runs Ray 2.55.1 (radas supports Ray "
        "2.55-2.60 and needs the same minor on both sides to unpickle the experiment on the "
        "cluster): pip install 'ray[default,tune]==2.55.*' here, or run Ray 2.60.* on the "
        "cluster."
    )


def test_an_unsupported_cluster_is_the_side_to_change():
    problem = check_pair("2.60.0", "2.54.0", "dev")
    assert problem is not None
    assert "cluster 'dev' runs Ray 2.54.0" in problem
    assert problem.endswith("run Ray 2.60.* on the cluster (every node), as this client does.")
    newer = check_pair("2.60.0", "2.61.0", "dev")
    assert newer is not None and "run Ray 2.60.* on the cluster" in newer


def test_an_unsupported_client_is_the_side_to_change():
    problem = check_pair("2.54.0", "2.58.1", "dev")
    assert problem is not None
    assert problem.startswith("This client has Ray 2.54.0, cluster 'dev' runs Ray 2.58.1")
    assert problem.endswith(": pip install 'ray[default,tune]==2.58.*' here.")


def test_both_sides_unsupported_asks_for_a_supported_ray_on_both():
    problem = check_pair("2.53.0", "2.53.0", "dev")
    assert problem is not None
    assert problem.endswith(
        "install a supported Ray on both sides (e.g. pip install 'ray[default,tune]==2.60.*')."
    )


def test_the_job_driver_refuses_to_load_on_another_ray(monkeypatch, capsys):
    # Fake: a driver on another Ray (a runtime_env installing one) cannot be made here, so the
    # client's version it receives is made different; the check runs before anything loads.
    monkeypatch.setenv(CLIENT_RAY_VERSION_ENV, "2.54.0")
    monkeypatch.setenv("RADAS_CLUSTER", "dev")
    assert job_driver.main(["job_driver", "no_such_spec_module"]) == 1
    error = capsys.readouterr().err
    assert f"its driver runs Ray {ray.__version__} (is ray in the job's runtime_env?)" in error
    assert "This client has Ray 2.54.0, cluster 'dev' runs Ray" in error


@pytest.mark.cluster
def test_the_job_server_reports_the_clusters_ray_version(cluster):
    server = JobServer(get_cluster("testcluster"))
    # the session cluster runs the Ray of this environment: the pair is supported
    assert server.ray_version == ray.__version__
    assert check_pair(ray.__version__, server.ray_version, "testcluster") is None
    # a Ray client that does not keep the version it was told: radas asks the server
    server._client._server_ray_version = None
    assert server.ray_version == ray.__version__


@pytest.mark.cluster
def test_a_cluster_on_another_minor_is_refused_before_submitting(cluster, project, monkeypatch):
    # Fake: the session cluster runs this environment's Ray, so only its reported version is
    # made different (a second Ray install for a real mismatched cluster is not available).
    monkeypatch.setattr(JobServer, "ray_version", property(lambda self: "2.54.0"))
    with pytest.raises(ClusterError) as raised:
        radas.run_experiment_sync(
            user_name="alice",
            experiment_name="mismatch",
            trainable=lambda config: {"score": 1},
            param_space={"a": 1},
            run_with="cluster:testcluster",
            run_choice="run",
        )
    assert str(raised.value) == (
        f"This client has Ray {ray.__version__}, cluster 'testcluster' runs Ray 2.54.0 (radas "
        f"supports Ray {supported_range()} and needs the same minor on both sides to unpickle "
        f"the experiment on the cluster): run Ray {ray.__version__.rsplit('.', 1)[0]}.* on the "
        "cluster (every node), as this client does. Nothing was submitted."
    )
    jobs = JobServer(get_cluster("testcluster")).list_jobs()
    assert not [job for job in jobs if (job.metadata or {}).get("radas_experiment") == "mismatch"]
