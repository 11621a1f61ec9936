"""The interface every backend implements, and parsing of ``run_with``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from radas.errors import InvalidArgumentError
from radas.sweep import SweepOutcome, SweepSpec

CLUSTER_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class RunTarget:
    kind: Literal["local", "cluster"]
    cluster: str | None = None

    def __str__(self) -> str:
        return "local" if self.kind == "local" else f"cluster:{self.cluster}"


def parse_run_with(run_with: object) -> RunTarget:
    """``"local"`` or ``"cluster:<name>"`` -> RunTarget.

    >>> parse_run_with("cluster:gpu-a")
    RunTarget(kind='cluster', cluster='gpu-a')
    """
    if run_with == "local":
        return RunTarget("local")
    if isinstance(run_with, str) and run_with.startswith("cluster:"):
        name = run_with.removeprefix("cluster:")
        if CLUSTER_NAME_PATTERN.fullmatch(name):
            return RunTarget("cluster", name)
    raise InvalidArgumentError(
        f"run_with={run_with!r} is not valid: use 'local' (Ray on this machine) or "
        "'cluster:<name>' with a cluster name from your radas config, e.g. 'cluster:gpu'."
    )


class Backend(Protocol):
    """Executes experiments and knows where their results live."""

    target: RunTarget

    def results_root(self, user_name: str) -> str:
        """The directory holding ``user_name``'s experiments, readable on this machine."""
        ...

    async def run(self, spec: SweepSpec, *, runtime_env: dict[str, Any]) -> SweepOutcome:
        """Run or restore ``spec`` (``spec.run_choice``) to its end; returns the outcome."""
        ...

    async def attach(self, spec: SweepSpec, *, stop: bool) -> SweepOutcome:
        """Follow (after stopping, if ``stop``) the running experiment to its end."""
        ...
