"""Weights & Biases from a trainable: ``rwandb_init``, ``rwandb_log``, ``rwandb_finish``.

This module is ``radas.trackers.wandb``; the real package is imported by its absolute name
(``importlib.import_module("wandb")``) and only when a trial enables it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from radas.trackers.base import ActiveRun, import_tracker, merged_init_kwargs, read_block

TRACKER = "wandb"

_active = ActiveRun()  # the run rwandb_init started in this process


def rwandb_init(config: Mapping[str, Any]) -> Any:
    """Start a wandb run for this trial when ``config["wandb"]["enable"]`` is True.

    ``config["wandb"] = {"enable": bool, "api_key": str | None, "init_kwargs": {...}}``.
    Defaults: project = the experiment name, group = experiment name + start time, run name
    = the trial name, config = the trial config without the tracker blocks and secrets, run
    files in the trial's directory; ``init_kwargs`` (any ``wandb.init`` argument, e.g.
    ``{"project": "thesis", "mode": "offline"}``) overrides them. The API key comes from the
    block, else ``$WANDB_API_KEY`` (radas moves the block's key there, so it is never stored
    with the trial), else wandb's own login. Returns the ``wandb`` Run, or None when disabled
    (then wandb need not be installed). A run this process started earlier is finished first.

    >>> def trainable(config):  # doctest: +SKIP
    ...     rwandb_init(config)
    ...     for epoch in range(3):
    ...         rwandb_log({"loss": 1 / (epoch + 1)})
    ...     rwandb_finish()
    """
    block = read_block(config, TRACKER)
    if not block.enable:
        return None
    wandb = import_tracker(TRACKER)
    rwandb_finish()
    kwargs = merged_init_kwargs(TRACKER, config, block)
    kwargs.setdefault("reinit", "finish_previous")
    if block.api_key:
        settings = kwargs.get("settings")
        if settings is None:
            settings = wandb.Settings(api_key=block.api_key)
        elif isinstance(settings, dict):
            settings = {"api_key": block.api_key, **settings}
        else:
            settings.api_key = block.api_key
        kwargs["settings"] = settings
    _active.run = wandb.init(**kwargs)
    return _active.run


def rwandb_log(metrics: Mapping[str, Any], **log_kwargs: Any) -> None:
    """Log ``metrics`` to the run ``rwandb_init`` started; a no-op when there is none.

    ``log_kwargs`` go to ``wandb.Run.log`` (``step=``, ``commit=``).

    >>> rwandb_log({"loss": 0.1})  # disabled or not started: nothing happens
    """
    _active.log(metrics, **log_kwargs)


def rwandb_finish(*, wait: bool = True, **finish_kwargs: Any) -> None:
    """Finish the run ``rwandb_init`` started; a no-op when there is none.

    ``wandb.Run.finish`` returns before wandb's background process has written everything;
    with ``wait=True`` (the default) this also waits for it (``wandb.teardown()``), so the
    run's files are complete when the trial ends and Ray may stop its worker. The next
    ``rwandb_init`` in the process starts that background process again (about a second).
    ``finish_kwargs`` go to ``wandb.Run.finish`` (``exit_code=``).

    >>> rwandb_finish()
    """
    run = _active.take()
    if run is None:
        return
    run.finish(**finish_kwargs)
    if wait:
        import sys

        wandb = sys.modules.get("wandb")
        if wandb is not None:
            wandb.teardown()


def rwandb_run() -> Any:
    """The run ``rwandb_init`` started in this process, or None.

    >>> rwandb_run() is None
    True
    """
    return _active.run
