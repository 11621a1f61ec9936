"""The retry policy: which failed trials run again, when, and with what.

A trial that lost its node or worker runs again as it was, from its latest saved state: in the
same fit, as soon as a node has room (``LostTrialRetries.in_fit``, which Tune asks through
``lost_trials.trials_recovered_by``), at most MAX_LOST_TRIAL_RETRIES times per sweep, so a
node that keeps dying does not loop for ever. A trial that ran out of memory runs again with
``cpu_per_trial`` doubled (more memory each, fewer per node) once the fit has ended (a
requeued trial's resources could change within the fit, but radas's outcome, the df's
``cpu_per_trial`` and the trials still pending all follow one ``cpu_per_trial`` per fit). The
trainable's own errors are never retried. ``run_sweep`` calls ``retry_failed_trials`` after
each fit, with the way to run the requeued trials again (``rerun``), so the policy holds no
Tune code; lost trials the fit could not run again (Ray's internals differ from what radas
was verified against: ``ray_compat.targets.fixes_apply``) run again there, with the same budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from radas.core.console import print_info
from radas.core.spec import SweepSpec
from radas.resources import (
    FAILURE_HEADER,
    NodeCapacity,
    classify_failure,
    error_file_text,
    next_cpu_per_trial,
)
from radas.results import state_repair, tune_state

MAX_LOST_TRIAL_RETRIES = 3


@dataclass
class Retries:
    """What the retries did: the ``cpu_per_trial`` the last retried trials ran with, the
    trials that ran out of memory and ran again, and those still out of memory at the cap."""

    cpu_per_trial: float
    memory_retried: set[str] = field(default_factory=set)
    out_of_memory: set[str] = field(default_factory=set)


@dataclass
class LostTrialRetries:
    """How many times each trial that lost its node or worker ran again in this sweep (one
    run or restore call, in its fits or after them): at most ``limit`` times each."""

    limit: int = MAX_LOST_TRIAL_RETRIES
    used: dict[str, int] = field(default_factory=dict)

    def take(self, trial_id: str) -> bool:
        """Count one more retry of ``trial_id``; False (nothing counted) when none is left."""
        if self.used.get(trial_id, 0) >= self.limit:
            return False
        self.used[trial_id] = self.used.get(trial_id, 0) + 1
        return True

    def in_fit(self, trial: Any, error: BaseException | None) -> bool:
        """Whether Tune runs the failed ``trial`` again in this fit: yes when it lost its node
        or worker (``classify_failure``, on the exception and the error file Tune just
        wrote) and has a retry left."""
        last_failure = error_file_text(trial).rpartition(FAILURE_HEADER)[2]
        return classify_failure(error, last_failure) == "lost" and self.take(trial.trial_id)


def retry_failed_trials(
    spec: SweepSpec,
    capacity: NodeCapacity,
    rerun: Callable[[float], None],
    lost_retries: LostTrialRetries | None = None,
) -> Retries:
    """After a fit, run failed trials again when the failure was not the trainable's own error.

    Trials that lost their node or worker and were not run again within the fit run again as
    they were, while ``lost_retries`` allows; trials that ran out of memory run again with
    ``cpu_per_trial`` doubled, until they pass or no node can give more. Finished trials
    are never run again. ``rerun(cpu_per_trial)`` fits the requeued trials again.
    """
    path = spec.experiment_path
    retries = Retries(cpu_per_trial=spec.cpu_per_trial)
    lost_retries = lost_retries if lost_retries is not None else LostTrialRetries()
    while True:
        records = tune_state.read_trial_records(path)
        trials = tune_state.load_trial_states(path)
        # The records hold the statuses Tune had in memory at the end (its state can lag).
        statuses = {t.trial_id: records.get(t.trial_id, {}).get("status", t.status) for t in trials}
        if any(status not in tune_state.TERMINAL_STATUSES for status in statuses.values()):
            return retries  # interrupted: leave the rest to run_choice='restore'
        failures = {
            trial.trial_id: classify_failure(
                tune_state.trial_error(path, trial), tune_state.error_text(path, trial)
            )
            for trial in trials
            if statuses[trial.trial_id] == "ERROR"
        }
        lost = {
            trial_id
            for trial_id, kind in failures.items()
            if kind == "lost" and lost_retries.take(trial_id)
        }
        memory = {trial_id for trial_id, kind in failures.items() if kind == "memory"}
        bigger = next_cpu_per_trial(retries.cpu_per_trial, capacity) if memory else None
        if memory and bigger is None:
            retries.out_of_memory = memory
            memory = set()
        if not lost and not memory:
            return retries
        if lost:
            print_info(
                f"{spec.experiment_name}: {len(lost)} trial(s) lost their node or worker "
                "(not an error of the trainable); running them again (each at most "
                f"{lost_retries.limit} times)"
            )
        if memory and bigger is not None:
            print_info(
                f"{spec.experiment_name}: {len(memory)} trial(s) ran out of memory with "
                f"cpu_per_trial={retries.cpu_per_trial:g}; running them again with "
                f"cpu_per_trial={bigger:g} (more memory each, fewer per node)"
            )
            retries.cpu_per_trial = bigger
            retries.memory_retried |= memory
        state_repair.requeue_trials(path, lost | memory)
        rerun(retries.cpu_per_trial)
