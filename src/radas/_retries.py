"""The retry policy: which failed trials run again, and with what, after a fit.

A trial that lost its node or worker runs again as it was; a trial that ran out of memory runs
again with ``cpu_per_trial`` doubled (more memory each, fewer per node). The trainable's own
errors are never retried. ``run_sweep`` calls ``retry_failed_trials`` after each fit, with
the way to run the requeued trials again (``rerun``), so the policy holds no Tune code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from radas import _ray_state
from radas._spec import SweepSpec
from radas.console import print_info
from radas.resources import NodeCapacity, classify_failure, next_cpu_per_trial

MAX_LOST_TRIAL_ROUNDS = 3


@dataclass
class Retries:
    """What the retries did: the ``cpu_per_trial`` the last retried trials ran with, the
    trials that ran out of memory and ran again, and those still out of memory at the cap."""

    cpu_per_trial: float
    memory_retried: set[str] = field(default_factory=set)
    out_of_memory: set[str] = field(default_factory=set)


def retry_failed_trials(
    spec: SweepSpec, capacity: NodeCapacity, rerun: Callable[[float], None]
) -> Retries:
    """Run failed trials again when the failure was not the trainable's own error.

    Trials that lost their node or worker run again as they were (up to
    MAX_LOST_TRIAL_ROUNDS times); trials that ran out of memory run again with
    ``cpu_per_trial`` doubled, until they pass or no node can give more. Finished trials
    are never run again. ``rerun(cpu_per_trial)`` fits the requeued trials again.
    """
    path = spec.experiment_path
    retries = Retries(cpu_per_trial=spec.cpu_per_trial)
    lost_rounds = 0
    while True:
        records = _ray_state.read_trial_records(path)
        trials = _ray_state.load_trial_states(path)
        # The records hold the statuses Tune had in memory at the end (its state can lag).
        statuses = {t.trial_id: records.get(t.trial_id, {}).get("status", t.status) for t in trials}
        if any(status not in _ray_state.TERMINAL_STATUSES for status in statuses.values()):
            return retries  # interrupted: leave the rest to run_choice='restore'
        failures = {
            trial.trial_id: classify_failure(
                _ray_state.trial_error(path, trial), _ray_state.error_text(path, trial)
            )
            for trial in trials
            if statuses[trial.trial_id] == "ERROR"
        }
        lost = {trial_id for trial_id, kind in failures.items() if kind == "lost"}
        memory = {trial_id for trial_id, kind in failures.items() if kind == "memory"}
        if lost and lost_rounds >= MAX_LOST_TRIAL_ROUNDS:
            lost = set()
        bigger = next_cpu_per_trial(retries.cpu_per_trial, capacity) if memory else None
        if memory and bigger is None:
            retries.out_of_memory = memory
            memory = set()
        if not lost and not memory:
            return retries
        if lost:
            lost_rounds += 1
            print_info(
                f"{spec.experiment_name}: {len(lost)} trial(s) lost their node or worker "
                f"(not an error of the trainable); running them again (round {lost_rounds} "
                f"of {MAX_LOST_TRIAL_ROUNDS})"
            )
        if memory and bigger is not None:
            print_info(
                f"{spec.experiment_name}: {len(memory)} trial(s) ran out of memory with "
                f"cpu_per_trial={retries.cpu_per_trial:g}; running them again with "
                f"cpu_per_trial={bigger:g} (more memory each, fewer per node)"
            )
            retries.cpu_per_trial = bigger
            retries.memory_retried |= memory
        _ray_state.requeue_trials(path, lost | memory)
        rerun(retries.cpu_per_trial)
