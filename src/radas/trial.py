"""Helpers a trainable calls while it runs as a Ray Tune trial."""

from __future__ import annotations

from typing import Any


def report(metrics: dict[str, Any], *, checkpoint: Any = None) -> None:
    """Report one result (a dict of metrics) from inside a trainable.

    Same as ``ray.tune.report``; every call is one row of ``get_history_dataframe()``.

    >>> def trainable(config):  # doctest: +SKIP
    ...     for epoch in range(10):
    ...         radas.report({"loss": 1 / (epoch + 1)})
    """
    from ray import tune

    tune.report(metrics, checkpoint=checkpoint)


def current_experiment() -> dict[str, Any] | None:
    """Inside a trial: the radas experiment it belongs to, else None.

    A dict with ``user_name``, ``experiment_name``, ``full_name``, ``storage_root``,
    ``started``, ``cluster`` (None for local runs), plus ``trial_id`` and ``trial_name``.
    """
    import json
    import warnings
    from pathlib import Path

    from ray import tune

    try:
        context = tune.get_context()
        with warnings.catch_warnings():  # Ray warns when asked outside a trial
            warnings.simplefilter("ignore")
            storage = context.get_storage()
    except Exception:  # not inside a Tune trial
        return None
    if storage is None:
        return None
    info_file = Path(storage.experiment_fs_path) / "radas_experiment.json"
    if not info_file.exists():
        return None
    info = json.loads(info_file.read_text())
    info["trial_id"] = context.get_trial_id()
    info["trial_name"] = context.get_trial_name()
    return info
