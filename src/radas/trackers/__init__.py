"""Experiment trackers a trainable can log to: wandb (``radas.rwandb``) and SwanLab
(``radas.rswanlab``), driven by a ``config["wandb"]`` / ``config["swanlab"]`` block.

``prepare_secrets`` is what ``run_experiment`` applies to ``param_space`` and ``runtime_env``
so that a tracker's API key reaches the workers without being stored with the trials.
"""

from __future__ import annotations

from radas.trackers.base import (
    TRACKERS,
    default_init_kwargs,
    is_secret_key,
    logged_config,
    prepare_secrets,
    read_block,
)

__all__ = [
    "TRACKERS",
    "default_init_kwargs",
    "is_secret_key",
    "logged_config",
    "prepare_secrets",
    "read_block",
]
