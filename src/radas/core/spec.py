"""The plain data an experiment is described by: where it runs (``RunTarget``), what runs
(``SweepSpec``) and what happened (``SweepOutcome``).

Dependency-free (no Ray, no other radas module but errors and the status words), so the
modules that only pass these around (backends' interface, storage dirs, the listing) import
them without importing Tune, and without import cycles.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from radas.core.status import TrialCounts, experiment_status
from radas.errors import InvalidArgumentError

# The one rule for a cluster's name (run_with="cluster:<name>", the config's [clusters.<name>],
# a local cluster's folder): it names a folder, so no '/' and no leading '.', '_' or '-'.
CLUSTER_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CLUSTER_NAME_RULE = (
    "1 to 64 letters, digits, '.', '_' and '-', starting with a letter or digit (no '/', no '..')"
)


def is_cluster_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` can name a cluster (``CLUSTER_NAME_RULE``).

    >>> is_cluster_name("lab-gpu"), is_cluster_name("../x")
    (True, False)
    """
    return isinstance(name, str) and CLUSTER_NAME_PATTERN.fullmatch(name) is not None


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
        if is_cluster_name(name):
            return RunTarget("cluster", name)
    raise InvalidArgumentError(
        f"run_with={run_with!r} is not valid: use 'local' (Ray on this machine) or "
        "'cluster:<name>' with a cluster name from your radas config, e.g. 'cluster:gpu' "
        f"(a name is {CLUSTER_NAME_RULE})."
    )


@dataclass
class SweepSpec:
    """Everything needed to run (or resume) one experiment. Picklable, without ``secrets``
    (a pickled spec never holds them: a cluster job gets them by ``_secrets.hand_over``)."""

    user_name: str
    experiment_name: str
    full_name: str
    storage_root: str
    trainable: Any
    param_space: dict[str, Any] | None
    run_choice: str  # "run" or "restore" when it runs; attach/stop_attach only read names
    cpu_per_trial: float = 1
    tuner_init_kwargs: dict[str, Any] = field(default_factory=dict)
    cwd: str = ""  # the working directory it was started from ("": not known)
    # environment variable -> secret, in each trial's os.environ (see radas.core.secrets)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def experiment_path(self) -> str:
        return os.path.join(self.storage_root, self.full_name)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "secrets": {}}


@dataclass
class SweepOutcome:
    """What happened, in numbers. Plain data so a job driver can hand it to the client."""

    experiment_path: str
    total_trials: int
    finished_trials: int
    errored_trials: int
    already_done: int | None = None
    archived_to: str | None = None
    seconds: float = 0.0
    cpu_per_trial: float | None = None  # what the last retried trials ran with
    memory_retried: list[str] = field(default_factory=list)  # ran out of memory, retried
    out_of_memory: list[str] = field(default_factory=list)  # still out of memory at the cap

    @classmethod
    def of_trials(cls, experiment_path: str, trials: Iterable[Any], **more: Any) -> SweepOutcome:
        """The outcome of stored trials (anything with a Tune ``status``), plus ``more``."""
        counts = TrialCounts.of(trial.status for trial in trials)
        return cls(
            experiment_path=experiment_path,
            total_trials=counts.total,
            finished_trials=counts.finished,
            errored_trials=counts.errored,
            **more,
        )

    @property
    def interrupted(self) -> bool:
        return self.finished_trials + self.errored_trials < self.total_trials

    @property
    def status(self) -> str:
        """In words, as radas shows it everywhere: ``FINISHED``, ``FINISHED, 3 of 3 trials
        errored``, ``STOPPED, 4 of 10 trials finished`` (``radas.core.status``)."""
        counts = TrialCounts(self.total_trials, self.finished_trials, self.errored_trials)
        return experiment_status("ENDED", counts)
