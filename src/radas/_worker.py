"""Runs in every Ray worker process radas starts (``worker_process_setup_hook``)."""

from __future__ import annotations

import warnings


def setup() -> None:
    # The seed's trainables report with the legacy ``ray.air.session.report``; it works
    # inside Tune but warns once per worker. radas supports it on purpose, so keep it quiet.
    warnings.filterwarnings(
        "ignore", message=r".*`ray\.train\.report` should be switched to `ray\.tune\.report`.*"
    )
