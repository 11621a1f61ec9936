"""Experiment trackers a trainable can log to: wandb (``radas.rwandb``) and SwanLab
(``radas.rswanlab``), driven by a ``config["wandb"]`` / ``config["swanlab"]`` block.

``prepare_secrets`` (``radas.trackers.secrets``) is what ``run_experiment`` applies to
``param_space``: a tracker's API key reaches the trials without being stored or logged.
"""

from __future__ import annotations

from radas.core.secrets import is_secret_key
from radas.trackers.base import TRACKERS, default_init_kwargs, logged_config, read_block
from radas.trackers.secrets import prepare_secrets

__all__ = [
    "TRACKERS",
    "default_init_kwargs",
    "is_secret_key",
    "logged_config",
    "prepare_secrets",
    "read_block",
]
