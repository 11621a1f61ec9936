"""Weights & Biases from a trainable, driven by ``config["wandb"]``.

    import radas.rwandb as rw

    def trainable(config):
        rw.rwandb_init(config)          # None (and no wandb needed) when disabled
        for epoch in range(10):
            rw.rwandb_log({"loss": 1 / (epoch + 1)})
        rw.rwandb_finish()

    param_space = {"lr": tune.grid_search([0.01, 0.1]),
                   "wandb": {"enable": True, "api_key": None, "init_kwargs": {"mode": "offline"}}}

Defaults and details: ``radas.trackers.wandb.rwandb_init``.
"""

from __future__ import annotations

from radas.trackers.wandb import rwandb_finish, rwandb_init, rwandb_log, rwandb_run

__all__ = ["rwandb_finish", "rwandb_init", "rwandb_log", "rwandb_run"]
