"""Where an experiment executes. One interface (``Backend``), one module per backend.

- ``local``: Ray started in-process on this machine (``backends/local.py``).
"""

from __future__ import annotations

from radas.backends.base import Backend, RunTarget, parse_run_with


def get_backend(run_with: str) -> Backend:
    """The backend for a ``run_with`` string such as ``"local"`` or ``"cluster:gpu"``."""
    target = parse_run_with(run_with)
    if target.kind == "local":
        from radas.backends.local import LocalBackend

        return LocalBackend()
    from radas.errors import NotSupportedError

    raise NotSupportedError(
        f"run_with={run_with!r}: running on named Ray clusters is not available in this "
        "version of radas yet. Use run_with='local'."
    )


__all__ = ["Backend", "RunTarget", "get_backend", "parse_run_with"]
