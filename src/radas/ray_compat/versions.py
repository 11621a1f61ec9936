"""The Ray releases radas supports, and whether a client and a cluster can work together.

The one place that says which Ray minors radas runs on: ``pyproject.toml``'s ``ray`` pin,
``scripts/test-oldest-ray.sh`` (CI runs a focused subset on the oldest) and the check before a
job is submitted all follow ``OLDEST`` and ``NEWEST`` (tests/ray/test_ray_versions.py keeps the pin
and the script honest).

A cluster job receives the experiment pickled by the client's Ray (cloudpickle, bundled with
Ray) and runs it with the cluster's Ray. Tune's objects in it (search spaces, searchers,
schedulers, ``RunConfig``) are pickled by reference with their attributes, so a release that
renames or adds an attribute unpickles into an object that is wrong without an error; and
cloudpickle's by-value functions need the same cloudpickle on both sides. Ray itself refuses a
``ray.init`` client of another version. radas therefore requires the same Ray minor on both
sides (patch releases may differ: they change neither) and that minor within the supported
range, since radas itself runs on the cluster's Ray too.
"""

from __future__ import annotations

OLDEST = (2, 55)
"""The oldest Ray minor radas is verified against (CI runs a subset of the tests on it)."""
NEWEST = (2, 60)
"""The newest Ray minor radas is verified against (the whole test suite runs on it)."""
CLIENT_RAY_VERSION_ENV = "RADAS_CLIENT_RAY_VERSION"
"""Carries the client's Ray version to the job's driver, which checks the Ray it runs on."""


def supported_range() -> str:
    """The supported minors as people write them, e.g. ``2.55-2.60``."""
    return f"{_minor_text(OLDEST)}-{_minor_text(NEWEST)}"


def pip_requirement() -> str:
    """The requirement ``pyproject.toml`` declares, e.g. ``ray[default,tune]>=2.55,<2.61``."""
    return f"ray[default,tune]>={_minor_text(OLDEST)},<{NEWEST[0]}.{NEWEST[1] + 1}"


def minor(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a Ray version string (``2.60.0``, ``2.55.1rc1``); None if it is
    not one."""
    from packaging.version import InvalidVersion, Version  # a dependency of Ray

    try:
        release = Version(version).release
    except InvalidVersion:
        return None
    return (release[0], release[1]) if len(release) >= 2 else None


def is_supported(version: str) -> bool:
    """Whether radas is verified against this Ray version."""
    found = minor(version)
    return found is not None and OLDEST <= found <= NEWEST


def check_pair(client_version: str, cluster_version: str, cluster_name: str) -> str | None:
    """What stops this client (Ray ``client_version``) from running an experiment on cluster
    ``cluster_name`` (Ray ``cluster_version``), with which side to change; None: nothing.

    >>> check_pair("2.60.0", "2.60.1", "dev") is None
    True
    """
    pair = (
        f"This client has Ray {client_version}, cluster {cluster_name!r} runs Ray {cluster_version}"
    )
    rule = (
        f"radas supports Ray {supported_range()} and needs the same minor on both sides to "
        "unpickle the experiment on the cluster"
    )
    client_ok, cluster_ok = is_supported(client_version), is_supported(cluster_version)
    if client_ok and cluster_ok and minor(client_version) == minor(cluster_version):
        return None
    if not cluster_ok:
        fix = (
            f"run Ray {_pin(client_version).split('==')[1]} on the cluster (every node), as "
            "this client does"
            if client_ok
            else f"install a supported Ray on both sides (e.g. pip install '{_newest_pin()}')"
        )
    elif not client_ok:
        fix = f"pip install '{_pin(cluster_version)}' here"
    else:
        fix = (
            f"pip install '{_pin(cluster_version)}' here, or run Ray "
            f"{_pin(client_version).split('==')[1]} on the cluster"
        )
    return f"{pair} ({rule}): {fix}."


def _pin(version: str) -> str:
    found = minor(version)
    assert found is not None  # only called for supported versions
    return f"ray[default,tune]=={_minor_text(found)}.*"


def _newest_pin() -> str:
    return f"ray[default,tune]=={_minor_text(NEWEST)}.*"


def _minor_text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"
