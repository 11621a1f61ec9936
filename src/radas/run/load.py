"""Stage 3, load: the stored experiment read back as a ``radas.Tuner``, in the
``ExperimentResult`` that the analysis fills in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from radas.core.spec import SweepOutcome
from radas.errors import ExperimentNotFoundError
from radas.results import tune_state
from radas.results.experiment_result import ExperimentResult
from radas.results.tuner import Tuner
from radas.run.plan import Plan
from radas.storage.store import Location


async def load(
    plan: Plan, experiment_path: Location, run_choice: str | None, outcome: SweepOutcome | None
) -> ExperimentResult:
    """The experiment stored at ``experiment_path``; ExperimentNotFoundError (saying where
    else the name is stored) when nothing is. Blocking reads run off the event loop."""
    tuner = await asyncio.to_thread(
        _load_tuner,
        experiment_path,
        plan.experiment_name,
        plan.dos,
        plan.stored_elsewhere,
        job_running=plan.backend.running_probe(plan.user_name, plan.full_name),
    )
    # before anything is read: a run ending meanwhile leaves results called partial, never
    # partial ones called complete (asked off the loop: on a cluster it asks the job server)
    partial = await asyncio.to_thread(lambda: tuner.is_running)
    return ExperimentResult(
        experiment_path=str(experiment_path),
        full_name=plan.full_name,
        tuner=tuner,
        target=plan.target,
        run_choice=run_choice,
        outcome=outcome,
        partial=partial,
    )


def _load_tuner(
    experiment_path: Location,
    experiment_name: str,
    dos: list[str],
    stored_elsewhere: Callable[[], str],
    job_running: Callable[[], bool] | None = None,
) -> Tuner:
    if not tune_state.has_stored_experiment(experiment_path):
        hint = (
            "Run it first with dos=['run', 'analyze'] and run_choice='run'"
            if dos == ["analyze"]
            else "Check that the run wrote results"
        )
        raise ExperimentNotFoundError(
            f"No stored results for experiment {experiment_name!r} at {experiment_path}. "
            f"{hint}; note the full name includes the working directory you run from."
            f"{stored_elsewhere()}"
        )
    return Tuner(str(experiment_path), job_running=job_running)
