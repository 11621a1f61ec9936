"""SwanLab from a trainable, driven by ``config["swanlab"]``.

    import radas.rswanlab as rs

    def trainable(config):
        rs.rswanlab_init(config)        # None (and no swanlab needed) when disabled
        for epoch in range(10):
            rs.rswanlab_log({"loss": 1 / (epoch + 1)})
        rs.rswanlab_finish()

    param_space = {"lr": tune.grid_search([0.01, 0.1]),
                   "swanlab": {"enable": True, "init_kwargs": {"mode": "offline"}}}

Defaults and details: ``radas.trackers.swanlab.rswanlab_init``.
"""

from __future__ import annotations

from radas.trackers.swanlab import rswanlab_finish, rswanlab_init, rswanlab_log, rswanlab_run

__all__ = ["rswanlab_finish", "rswanlab_init", "rswanlab_log", "rswanlab_run"]
