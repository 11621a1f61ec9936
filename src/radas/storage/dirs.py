"""Per-user directories: results root, data dir and cold data dir.

On ``run_with="local"`` everything lives under ``$RADAS_HOME`` (default ``~/.radas``).
"""

from __future__ import annotations

import os
from pathlib import Path

from radas.naming import validate_user_name


def radas_home() -> Path:
    """The local radas directory: ``$RADAS_HOME``, else ``~/.radas``."""
    return Path(os.environ.get("RADAS_HOME") or Path.home() / ".radas").expanduser()


def get_ray_results_dir(user_name: str, run_with: str = "local") -> str:
    """The directory holding this user's experiments for ``run_with``.

    >>> get_ray_results_dir("alice").endswith("ray-results/alice")
    True
    """
    validate_user_name(user_name)
    from radas.backends import parse_run_with

    parse_run_with(run_with)
    return str(radas_home() / "ray-results" / user_name)


def figures_dir(user_name: str) -> Path:
    """Where saved figures go on this machine (never inside the working directory)."""
    return radas_home() / "figures" / validate_user_name(user_name)
