"""Stage 2, execute: the run choice resolved (asked on a terminal when not given), then the
backend runs, restores or attaches; a restore with nothing left to continue is answered from
the store without starting anything. Says how it ended (``print_info``)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from radas.core.console import print_info, print_warning, warn
from radas.core.spec import SweepOutcome, SweepSpec
from radas.errors import ExperimentNotFoundError, RunChoiceRequiredError, TrialsOutOfMemoryError
from radas.results import tune_state
from radas.results.experiment_info import (
    describe_param_space,
    param_space_changes,
    read_experiment_info,
)
from radas.run import live as live_figure
from radas.run.plan import RUN_CHOICES, Plan, validate_trainable
from radas.storage.store import Location
from radas.tune.configuration import ship_trainable_by_value


async def execute(
    plan: Plan,
    spec: SweepSpec,
    runtime_env: dict[str, Any],
    experiment_path: Location,
    *,
    live: live_figure.LiveFigure | None = None,
) -> tuple[str, SweepOutcome]:
    """The run choice taken and the outcome of running ``spec`` with it (``live``: redrawn
    while the backend runs or follows it). Raises
    TrialsOutOfMemoryError when trials ran out of memory on the largest node, and
    KeyboardInterrupt when a local run was interrupted (its state is saved)."""
    name = plan.experiment_name
    choice = resolve_run_choice(
        plan.run_choice, experiment_name=name, experiment_path=experiment_path, yes=plan.yes
    )
    if choice in ("run", "restore"):
        validate_trainable(spec.trainable)
        ship_trainable_by_value(spec.trainable)
    outcome = None
    if choice == "restore":
        if not await asyncio.to_thread(tune_state.has_stored_experiment, experiment_path):
            raise ExperimentNotFoundError(
                f"Nothing to restore for experiment {name!r}: no stored state at "
                f"{experiment_path}. Start it with run_choice='run' (the full name includes the "
                f"working directory you run from).{plan.stored_elsewhere()}"
            )
        _warn_ignored_param_space(experiment_path, name, spec.param_space)
        outcome = await asyncio.to_thread(_nothing_to_continue, experiment_path, name)
    if outcome is None:
        async with live_figure.following(live, choice):
            if choice in ("attach", "stop_attach"):
                outcome = await plan.backend.attach(spec, stop=choice == "stop_attach")
            else:
                spec.run_choice = choice
                outcome = await plan.backend.run(spec, runtime_env=runtime_env)
    _report_outcome(spec, outcome)
    if outcome.out_of_memory:
        raise TrialsOutOfMemoryError(
            f"{len(outcome.out_of_memory)} trial(s) of {name!r} still ran out of "
            f"memory with cpu_per_trial={outcome.cpu_per_trial:g}, the most one node can "
            f"give: {', '.join(outcome.out_of_memory)}. Make the trainable use less memory "
            "(smaller batches or models) or run on a cluster with bigger nodes. The other "
            "trials' results are stored: analyze them with dos=['analyze'].",
            trial_ids=outcome.out_of_memory,
            cpu_per_trial=outcome.cpu_per_trial or spec.cpu_per_trial,
        )
    if outcome.interrupted and plan.target.kind == "local":
        raise KeyboardInterrupt(f"{name} was interrupted; see the message above")
    return choice, outcome


def resolve_run_choice(
    run_choice: str | None, *, experiment_name: str, experiment_path: Location, yes: bool
) -> str:
    """The run choice to use; asks on a terminal when ``run_choice`` is None."""
    if run_choice is not None:
        return run_choice
    found = tune_state.has_stored_experiment(experiment_path)
    trials = tune_state.load_trial_states(experiment_path) if found else []
    if not trials and yes:
        return "run"
    if not sys.stdin.isatty():
        stored = (
            f"it has stored results ({sum(t.finished for t in trials)} of {len(trials)} trials "
            "done) at " + str(experiment_path)
            if trials
            else "nothing is stored under that name yet"
        )
        raise RunChoiceRequiredError(
            f"run_choice is required when there is no terminal to ask on (experiment "
            f"{experiment_name!r}: {stored}). Pass one of: run_choice='run' (start fresh; "
            "earlier results are moved aside), 'restore' (continue from the stored state), "
            "'attach' (follow the running cluster job), 'stop_attach' (stop the running "
            "cluster job, then analyze)."
        )
    if not trials:
        answer = input(f"[radas] Start experiment {experiment_name!r}? [Y/n] ").strip().lower()
        if answer in ("", "y", "yes"):
            return "run"
        raise KeyboardInterrupt("cancelled at the prompt")
    done = sum(trial.finished for trial in trials)
    prompt = (
        f"[radas] Experiment {experiment_name!r} has stored results ({done} of {len(trials)} "
        f"trials done). Choose {', '.join(RUN_CHOICES)} (or q to quit): "
    )
    while True:
        answer = input(prompt).strip()
        if answer in RUN_CHOICES:
            return answer
        if answer.lower() in ("q", "quit"):
            raise KeyboardInterrupt("cancelled at the prompt")


def _warn_ignored_param_space(
    experiment_path: Location, experiment_name: str, param_space: dict[str, Any] | None
) -> None:
    """A restore continues the stored trials: say which values of a changed param_space it
    ignores (experiments stored before radas recorded their param_space are not compared)."""
    info = read_experiment_info(experiment_path)
    if not param_space or info is None or "param_space" not in info:
        return
    changes = param_space_changes(info["param_space"], describe_param_space(param_space))
    if not changes:
        return
    message = (
        f"{experiment_name}: restore continues the stored trials with the param_space they "
        "were started with; the param_space given now differs, and these values are ignored: "
        f"{'; '.join(changes)}. To search the new values start afresh with run_choice='run' "
        "(the stored results are moved to .archive/)."
    )
    warn(message, stacklevel=2)


def _nothing_to_continue(experiment_path: Location, experiment_name: str) -> SweepOutcome | None:
    """The stored outcome when a restore has nothing to do (every trial finished and the
    searcher made all it will make), answered from the store without starting Ray or a job;
    None when something may continue (errored trials run again) or it cannot be told."""
    trials = tune_state.load_trial_states(experiment_path)
    if not trials or any(not trial.finished for trial in trials):
        return None
    if not tune_state.search_finished(experiment_path):
        return None
    print_info(
        f"{experiment_name}: nothing to continue: {len(trials)} of {len(trials)} trials "
        "finished; the stored results are used (run_choice='run' runs it again from scratch)."
    )
    return SweepOutcome.of_trials(str(experiment_path), trials, already_done=len(trials))


def _report_outcome(spec: SweepSpec, outcome: SweepOutcome) -> None:
    summary = (
        f"{spec.experiment_name}: {outcome.status} ({outcome.total_trials} trials, "
        f"{outcome.seconds:.1f} s). Results: {outcome.experiment_path}"
    )
    print_info(summary)
    if outcome.memory_retried and not outcome.out_of_memory:
        print_info(
            f"{len(outcome.memory_retried)} trial(s) ran out of memory with cpu_per_trial="
            f"{spec.cpu_per_trial:g} and finished with cpu_per_trial={outcome.cpu_per_trial:g}. "
            f"Start with cpu_per_trial={outcome.cpu_per_trial:g} next time to skip the retries."
        )
    if outcome.errored_trials:
        print_warning(
            f"{outcome.errored_trials} trial(s) errored; the df shows them with status 'ERROR' "
            "and their error. Fix what the error names (the trainable, or a damaged state it "
            "names), then run_choice='restore' re-runs only them."
        )
    if outcome.interrupted:
        print_warning(
            f"{spec.experiment_name} was interrupted with "
            f"{outcome.total_trials - outcome.finished_trials - outcome.errored_trials} "
            "trial(s) unfinished; its state is saved. Continue it with run_choice='restore'."
        )
