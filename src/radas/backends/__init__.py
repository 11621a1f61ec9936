"""Where an experiment executes. One interface (``Backend``), one module per backend.

- ``local``: Ray started in-process on this machine (``backends/local.py``).
- ``cluster:<name>``: a Ray Job on a named cluster (``backends/ray_jobs.py``).
"""

from __future__ import annotations

from radas.backends.base import Backend
from radas.core.spec import RunTarget, parse_run_with

# A backend standing in for one run_with ("local", "cluster:<name>"), for tests only: the
# fake backend of tests/fake_backend.py registers here (as submitit's tests pass a fake
# executor), so the decision flow of run_experiment is tested without Ray. radas never adds
# one, and no user-facing option reaches it.
_stand_ins: dict[str, Backend] = {}


def get_backend(run_with: str) -> Backend:
    """The backend for a ``run_with`` string such as ``"local"`` or ``"cluster:gpu"``."""
    target = parse_run_with(run_with)
    if str(target) in _stand_ins:
        return _stand_ins[str(target)]
    if target.kind == "local":
        from radas.backends.local import LocalBackend

        return LocalBackend()
    from radas.backends.ray_jobs import RayJobsBackend
    from radas.clusters.config import get_cluster

    return RayJobsBackend(get_cluster(target.cluster or ""))


__all__ = ["Backend", "RunTarget", "get_backend", "parse_run_with"]
