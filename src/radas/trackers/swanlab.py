"""SwanLab from a trainable: ``rswanlab_init``, ``rswanlab_log``, ``rswanlab_finish``.

This module is ``radas.trackers.swanlab``; the real package is imported by its absolute name
(``importlib.import_module("swanlab")``) and only when a trial enables it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from radas.trackers.base import ActiveRun, import_tracker, merged_init_kwargs, read_block

TRACKER = "swanlab"

_active = ActiveRun()  # the run rswanlab_init started in this process


def rswanlab_init(config: Mapping[str, Any]) -> Any:
    """Start a SwanLab run for this trial when ``config["swanlab"]["enable"]`` is True.

    ``config["swanlab"] = {"enable": bool, "api_key": str | None, "init_kwargs": {...}}``.
    Defaults: project = the experiment name, group = experiment name + start time, run
    (experiment) name = the trial name, config = the trial config without the tracker blocks
    and secrets, run files under ``<trial dir>/swanlog``; ``init_kwargs`` (any
    ``swanlab.init`` argument, e.g. ``{"mode": "offline"}``) overrides them. The API key comes
    from the block, else ``$SWANLAB_API_KEY``, else SwanLab's own login; it is never saved to
    disk by radas. Returns the SwanLab Run, or None when disabled (then swanlab need not be
    installed). A run this process started earlier is finished first.

    >>> def trainable(config):  # doctest: +SKIP
    ...     rswanlab_init(config)
    ...     for epoch in range(3):
    ...         rswanlab_log({"loss": 1 / (epoch + 1)})
    ...     rswanlab_finish()
    """
    block = read_block(config, TRACKER)
    if not block.enable:
        return None
    swanlab = import_tracker(TRACKER)
    rswanlab_finish()
    kwargs = merged_init_kwargs(TRACKER, config, block)
    kwargs.setdefault("reinit", True)
    notes = kwargs.pop("notes", None)  # wandb's word; swanlab calls it description
    if notes is not None:
        kwargs.setdefault("description", notes)
    overrides: dict[str, Any] = {"interactive": False}  # a trial cannot answer a prompt
    if block.api_key:
        overrides["api_key"] = block.api_key
    settings = kwargs.get("settings")
    if settings is None:
        kwargs["settings"] = swanlab.Settings(**overrides)
    elif isinstance(settings, dict):
        kwargs["settings"] = swanlab.Settings(**{**overrides, **settings})
    elif block.api_key:
        settings.merge_settings({"api_key": block.api_key})
    _active.run = swanlab.init(**kwargs)
    return _active.run


def rswanlab_log(metrics: Mapping[str, Any], **log_kwargs: Any) -> None:
    """Log ``metrics`` to the run ``rswanlab_init`` started; a no-op when there is none.

    ``log_kwargs`` go to ``swanlab.log`` (``step=``).

    >>> rswanlab_log({"loss": 0.1})  # disabled or not started: nothing happens
    """
    _active.log(metrics, **log_kwargs)


def rswanlab_finish(**finish_kwargs: Any) -> None:
    """Finish the run ``rswanlab_init`` started (flushes it); a no-op when there is none.

    >>> rswanlab_finish()
    """
    run = _active.take()
    if run is not None:
        run.finish(**finish_kwargs)


def rswanlab_run() -> Any:
    """The run ``rswanlab_init`` started in this process, or None.

    >>> rswanlab_run() is None
    True
    """
    return _active.run
