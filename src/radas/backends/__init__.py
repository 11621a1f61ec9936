"""Where an experiment executes. One interface (``Backend``), one module per backend.

- ``local``: Ray started in-process on this machine (``backends/local.py``).
- ``cluster:<name>``: a Ray Job on a named cluster (``backends/ray_jobs.py``).

``get_backend`` is the one place a run target becomes a backend: callers look it up on this
module (``backends.get_backend(...)``), so a test swaps in a fake backend by patching it.
"""

from __future__ import annotations

from radas.backends.base import Backend
from radas.core.spec import RunTarget, parse_run_with


def get_backend(run_with: str | RunTarget) -> Backend:
    """The backend for a run target, or a ``run_with`` string such as ``"cluster:gpu"``."""
    target = run_with if isinstance(run_with, RunTarget) else parse_run_with(run_with)
    if target.kind == "local":
        from radas.backends.local import LocalBackend

        return LocalBackend()
    from radas.backends.ray_jobs import RayJobsBackend
    from radas.clusters.config import get_cluster

    return RayJobsBackend(get_cluster(target.cluster or ""))


__all__ = ["Backend", "RunTarget", "get_backend", "parse_run_with"]
