"""The interface every backend implements. Imports no Ray: the data it passes is plain
(``radas.core.spec``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from radas.core.spec import RunTarget, SweepOutcome, SweepSpec


class Backend(Protocol):
    """Executes experiments and knows where their results live."""

    target: RunTarget

    def results_root(self, user_name: str) -> str:
        """The directory holding ``user_name``'s experiments, readable on this machine."""
        ...

    def store_scope(self) -> contextlib.AbstractContextManager[None]:
        """Within: reads of the results go where this backend's results live (a cluster's own
        S3 endpoint); nothing to set for results on this machine."""
        ...

    async def run(self, spec: SweepSpec, *, runtime_env: dict[str, Any]) -> SweepOutcome:
        """Run or restore ``spec`` (``spec.run_choice``) to its end; returns the outcome."""
        ...

    async def attach(self, spec: SweepSpec, *, stop: bool) -> SweepOutcome:
        """Follow (after stopping, if ``stop``) the running experiment to its end."""
        ...

    def running_probe(self, user_name: str, full_name: str) -> Callable[[], bool] | None:
        """Whether the experiment runs, asked by the ``radas.Tuner`` at each read, where the
        experiment's lock is out of this machine's sight (a cluster's job); None where the
        lock alone tells (a local run holds it on this machine)."""
        ...
