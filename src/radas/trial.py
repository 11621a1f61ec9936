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
