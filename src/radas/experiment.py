"""``run_experiment``: name -> run choice -> backend -> analysis.

This module decides; a backend executes (``radas.backends``); ``radas.Tuner`` and
``radas.results.analysis`` read the stored results.

``run_experiment`` is async in deed: what blocks (a job server's answers, reading results,
building the DataFrame, sending the mail) runs in a worker thread, and a local sweep in a
thread of its own (``backends.local``), so experiments awaited together (``asyncio.gather``)
are followed together and a notebook stays responsive. The plot is drawn on the caller's
thread: matplotlib's pyplot keeps global state and GUI backends want the main thread.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from radas.backends import Backend, get_backend
from radas.core.args import checked_keywords, of_type, one_of
from radas.core.console import print_info, print_warning, warn
from radas.core.naming import full_experiment_name, validate_user_name
from radas.core.spec import SweepOutcome, SweepSpec
from radas.errors import (
    AnalysisError,
    ClusterError,
    ExperimentNotFoundError,
    InvalidArgumentError,
    NotSupportedError,
    RunChoiceRequiredError,
    TrialsOutOfMemoryError,
)
from radas.notify import email
from radas.resources import validate_cpu_per_trial
from radas.results import analysis, listing, tune_state
from radas.results.experiment_info import (
    check_owner,
    describe_param_space,
    param_space_changes,
    read_experiment_info,
)
from radas.results.tuner import Tuner
from radas.storage import store as _store
from radas.storage.dirs import figures_dir
from radas.trackers import prepare_secrets
from radas.tune.sweep import (
    ship_trainable_by_value,
    validate_tuner_init_kwargs,
)

RUN_CHOICES = ("run", "restore", "attach", "stop_attach")
DOS = ("run", "analyze")


@checked_keywords
async def run_experiment(
    *,
    user_name: str,
    experiment_name: str,
    trainable: Callable[..., Any] | type | None = None,
    param_space: dict[str, Any] | None = None,
    run_with: str = "local",
    run_choice: str | None = None,
    dos: Sequence[str] = ("run", "analyze"),
    cpu_per_trial: float = 1,
    runtime_env: dict[str, Any] | None = None,
    tuner_init_kwargs: dict[str, Any] | None = None,
    tuner_to_df_fn: Callable[[Tuner], pd.DataFrame] | None = None,
    process_df_fn: Callable[..., pd.DataFrame] | None = None,
    process_df_fn_kwargs: dict[str, Any] | None = None,
    rename_mapping: dict[str, str] | None = None,
    matplotlib_rcParams_update: dict[str, Any] | None = None,
    process_sns_fn: Callable[[], Any] | None = None,
    plot_fn: Callable[..., Any] | None = None,
    plot_kwargs: dict[str, Any] | None = None,
    process_g_fn: Callable[[Any], Any] | None = None,
    plot_format: str | None = None,
    plot_path: str | Path | None = None,
    yes: bool = False,
    email_notification_to_address: str | None = None,
) -> dict[str, Any]:
    """Run a Ray Tune sweep and return its results as a DataFrame and a seaborn figure.

    Example (in a notebook; in a script use ``radas.run_experiment_sync`` with the same
    arguments)::

        results = await radas.run_experiment(
            user_name="alice",
            experiment_name="ab-grid",
            trainable=lambda config: {"score": config["a"] + config["b"]},
            param_space={"a": tune.grid_search([1, 2, 3]), "b": tune.grid_search([10, 20])},
            run_choice="run",
            plot_fn=sns.barplot,
            plot_kwargs=dict(x="config/a", y="score", hue="config/b"),
        )
        results["df"], results["fig"], results["tuner"]

    Returns a dict with ``df`` (processed DataFrame, None without "analyze" in ``dos``),
    ``fig`` (matplotlib Figure, None without ``plot_fn``), ``tuner`` (radas.Tuner),
    ``experiment_path``, ``fig_path`` (when ``plot_format`` is set), ``full_name``,
    ``run_with``, ``run_choice``, ``outcome`` (trial counts of this run, or None) and
    ``partial`` (True when the experiment was still running as it was read, e.g. with
    ``dos=["analyze"]``: the df holds what was reported so far, and radas says
    "<name> is still running: partial results, N of M trials finished").
    """
    user_name = validate_user_name(user_name)
    cwd = os.getcwd()
    full_name = full_experiment_name(experiment_name, cwd=cwd)
    dos = _validate_dos(dos)
    # checked whatever dos holds: a wrong value is a mistake even where it is not used
    one_of("run_choice", run_choice, (*RUN_CHOICES, None))
    of_type("yes", yes, bool, "yes=True (start without asking when nothing is stored)")
    backend = get_backend(run_with)
    options = analysis.AnalysisOptions(
        tuner_to_df_fn=tuner_to_df_fn,
        process_df_fn=process_df_fn,
        process_df_fn_kwargs=process_df_fn_kwargs or {},
        rename_mapping=rename_mapping,
        matplotlib_rcParams_update=matplotlib_rcParams_update,
        process_sns_fn=process_sns_fn,
        plot_fn=plot_fn,
        plot_kwargs=plot_kwargs or {},
        process_g_fn=process_g_fn,
        plot_format=plot_format,
        plot_path=plot_path,
    )
    tuner_init_kwargs = validate_tuner_init_kwargs(tuner_init_kwargs)
    # the mail when the experiment ends; a bad address fails now, before anything runs
    notify = email_notification_to_address
    notification = email.Notification(notify) if notify is not None else None
    try:
        with backend.store_scope():  # a cluster's results: read through its own S3 endpoint
            results = await _run_and_analyze(
                user_name=user_name,
                experiment_name=experiment_name,
                full_name=full_name,
                cwd=cwd,
                backend=backend,
                options=options,
                trainable=trainable,
                param_space=param_space,
                run_choice=run_choice,
                dos=dos,
                cpu_per_trial=cpu_per_trial,
                runtime_env=runtime_env,
                tuner_init_kwargs=tuner_init_kwargs,
                yes=yes,
            )
    except Exception as err:
        if notification is not None:
            await asyncio.to_thread(notification.experiment_ended, experiment_name, error=err)
        raise
    if notification is not None:
        await asyncio.to_thread(notification.experiment_ended, experiment_name, results=results)
    return results


async def _run_and_analyze(
    *,
    user_name: str,
    experiment_name: str,
    full_name: str,
    cwd: str,
    backend: Backend,
    options: analysis.AnalysisOptions,
    trainable: Any,
    param_space: Any,
    run_choice: str | None,
    dos: list[str],
    cpu_per_trial: Any,
    runtime_env: Any,
    tuner_init_kwargs: dict[str, Any],
    yes: bool,
) -> dict[str, Any]:
    experiment_path = _store.location(backend.results_root(user_name)) / full_name
    # another (folder, name) mapping onto this full name: refused before anything runs or is
    # read (checked again where the sweep runs, under the experiment's lock); off the loop:
    # the results may be in an object store
    await asyncio.to_thread(check_owner, experiment_path, experiment_name=experiment_name, cwd=cwd)

    def stored_elsewhere() -> str:
        """Where else this name is stored, for a not-found error (looked up only then)."""
        return listing.where_else(
            experiment_name, user_name=user_name, run_with=str(backend.target), cwd=cwd
        )

    outcome = None
    if "run" in dos:
        if trainable is not None:
            _validate_trainable(trainable)
        # secrets leave the config (stored with every trial) for the trials' env only
        runtime_env = _validate_runtime_env(runtime_env)
        param_space, secrets = prepare_secrets(_validate_param_space(param_space), runtime_env)
        spec = SweepSpec(
            user_name=user_name,
            experiment_name=experiment_name,
            full_name=full_name,
            storage_root=backend.results_root(user_name),
            trainable=trainable,
            param_space=param_space,
            run_choice="run",
            cpu_per_trial=validate_cpu_per_trial(cpu_per_trial),
            tuner_init_kwargs=tuner_init_kwargs,
            secrets=secrets,
            cwd=cwd,
        )
        choice = resolve_run_choice(
            run_choice, experiment_name=experiment_name, experiment_path=experiment_path, yes=yes
        )
        if choice in ("run", "restore"):
            _validate_trainable(trainable)
            ship_trainable_by_value(trainable)
        if choice == "restore" and not await asyncio.to_thread(
            tune_state.has_stored_experiment, experiment_path
        ):
            raise ExperimentNotFoundError(
                f"Nothing to restore for experiment {experiment_name!r}: no stored state at "
                f"{experiment_path}. Start it with run_choice='run' (the full name includes the "
                f"working directory you run from).{stored_elsewhere()}"
            )
        if choice == "restore":
            _warn_ignored_param_space(experiment_path, experiment_name, param_space)
            outcome = await asyncio.to_thread(
                _nothing_to_continue, experiment_path, experiment_name
            )
        if outcome is None:
            outcome = await _execute(backend, spec, choice, runtime_env)
        _report_outcome(spec, outcome)
        if outcome.out_of_memory:
            raise TrialsOutOfMemoryError(
                f"{len(outcome.out_of_memory)} trial(s) of {experiment_name!r} still ran out of "
                f"memory with cpu_per_trial={outcome.cpu_per_trial:g}, the most one node can "
                f"give: {', '.join(outcome.out_of_memory)}. Make the trainable use less memory "
                "(smaller batches or models) or run on a cluster with bigger nodes. The other "
                "trials' results are stored: analyze them with dos=['analyze'].",
                trial_ids=outcome.out_of_memory,
                cpu_per_trial=outcome.cpu_per_trial or spec.cpu_per_trial,
            )
        if outcome.interrupted and backend.target.kind == "local":
            raise KeyboardInterrupt(f"{experiment_name} was interrupted; see the message above")
        run_choice = choice
    tuner = await asyncio.to_thread(
        _load_tuner,
        experiment_path,
        experiment_name,
        dos,
        stored_elsewhere,
        job_running=_job_running(backend, user_name, full_name),
    )
    # before anything is read: a run ending meanwhile leaves results called partial, never
    # partial ones called complete (asked off the loop: on a cluster it asks the job server)
    partial = await asyncio.to_thread(lambda: tuner.is_running)
    results = _results(
        tuner,
        str(experiment_path),
        full_name,
        partial,
        str(backend.target),
        run_choice=run_choice,
        outcome=outcome,
    )
    if "analyze" in dos:
        await _analyze(results, options, default_figure_path=figures_dir(user_name) / full_name)
    return results


def run_experiment_sync(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """``run_experiment`` for scripts: same keyword arguments, blocks until done.

    In a notebook (a running event loop) use ``await radas.run_experiment(...)`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_event_loop = False
    else:
        in_event_loop = True
    if not in_event_loop:
        return asyncio.run(run_experiment(*args, **kwargs))
    raise NotSupportedError(
        "run_experiment_sync() was called inside a running event loop (a notebook or async "
        "code): use `results = await radas.run_experiment(...)` there instead."
    )


run_experiment_sync.__signature__ = inspect.signature(run_experiment)  # type: ignore[attr-defined]


def analyze_stored_sync(experiment_path: str, *, user_name: str, **options: Any) -> dict[str, Any]:
    """``dos=["analyze"]`` of the experiment stored at ``experiment_path`` (a path or a URI
    such as ``s3://lab/results/alice/_home_alice_proj_lr``), for ``radas analyze URI``:
    ``options`` are run_experiment's analysis arguments; the figure's default folder is
    ``user_name``'s."""
    options_ = analysis.AnalysisOptions(**options)
    tuner = Tuner(experiment_path)
    full_name = _store.location(tuner.experiment_path).name
    results = _results(tuner, tuner.experiment_path, full_name, tuner.is_running)
    default_figure_path = figures_dir(validate_user_name(user_name)) / results["full_name"]
    asyncio.run(_analyze(results, options_, default_figure_path=default_figure_path))
    return results


def _results(
    tuner: Tuner,
    experiment_path: str,
    full_name: str,
    partial: bool,
    run_with: str | None = None,
    *,
    run_choice: str | None = None,
    outcome: SweepOutcome | None = None,
) -> dict[str, Any]:
    """The dict ``run_experiment`` returns, before the analysis fills in df and figure."""
    return {
        "df": None,
        "fig": None,
        "fig_path": None,
        "tuner": tuner,
        "experiment_path": experiment_path,
        "full_name": full_name,
        "run_with": run_with,
        "run_choice": run_choice,
        "outcome": outcome,
        "partial": partial,
    }


def resolve_run_choice(
    run_choice: str | None, *, experiment_name: str, experiment_path: _store.Location, yes: bool
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


async def _execute(
    backend: Backend, spec: SweepSpec, choice: str, runtime_env: dict[str, Any]
) -> SweepOutcome:
    if choice in ("attach", "stop_attach"):
        outcome = await backend.attach(spec, stop=choice == "stop_attach")
    else:
        spec.run_choice = choice
        outcome = await backend.run(spec, runtime_env=runtime_env)
    return outcome


def _warn_ignored_param_space(
    experiment_path: _store.Location, experiment_name: str, param_space: dict[str, Any]
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


def _nothing_to_continue(
    experiment_path: _store.Location, experiment_name: str
) -> SweepOutcome | None:
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


def _load_tuner(
    experiment_path: _store.Location,
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


def _job_running(backend: Backend, user_name: str, full_name: str) -> Callable[[], bool] | None:
    """On a cluster: whether the experiment's job runs, for the Tuner to ask at each read (a
    run holds the experiment's lock on the cluster, out of this machine's sight when the
    results are in an object store). A cluster that does not answer is not asked again: the
    lock alone tells then."""
    from radas.backends.ray_jobs import RayJobsBackend

    if not isinstance(backend, RayJobsBackend):
        return None
    answers = True

    def job_running() -> bool:
        nonlocal answers
        if answers:
            try:
                return any(job.active for job in backend.experiment_jobs(user_name, full_name))
            except ClusterError:
                answers = False
        return False

    return job_running


async def _analyze(
    results: dict[str, Any], options: analysis.AnalysisOptions, **kwargs: Any
) -> None:
    replot = (
        "The experiment's results are kept at "
        f"{results['experiment_path']}; fix the function or its arguments and re-plot without "
        "re-running: run_experiment(..., dos=['analyze'])."
    )
    try:
        results["df"] = await asyncio.to_thread(analysis.make_dataframe, results["tuner"], options)
        drawn = analysis.plot(results["df"], options, kwargs["default_figure_path"])
    except (analysis.UserFunctionError, InvalidArgumentError) as err:
        stage = "Plotting" if results["df"] is not None else "Building the DataFrame"
        raise AnalysisError(f"{stage} failed: {err}. {replot}", results=results) from err
    if drawn is not None:
        results["fig"], results["plot"], results["fig_path"] = drawn.figure, drawn.plot, drawn.path
        if drawn.path:
            print_info(f"figure saved to {drawn.path}")


def _validate_dos(dos: object) -> list[str]:
    if isinstance(dos, str) or not isinstance(dos, (list, tuple)) or not dos:
        raise InvalidArgumentError(
            f"dos={dos!r} is not valid: use ['run', 'analyze'] (default), ['run'] or ['analyze']."
        )
    for item in dos:
        if item not in DOS:
            raise InvalidArgumentError(
                f"dos contains {item!r}: the allowed steps are 'run' and 'analyze', e.g. "
                "dos=['analyze'] to only analyze stored results."
            )
    return list(dos)


def _validate_trainable(trainable: object) -> Any:
    if trainable is None or not callable(trainable):
        raise InvalidArgumentError(
            f"trainable must be a function taking a config dict (or a ray.tune.Trainable "
            f"class), got {trainable!r}: for example "
            "def trainable(config): return {'score': config['a']}."
        )
    return trainable


def _validate_param_space(param_space: object) -> dict[str, Any]:
    if param_space is None:
        return {}
    if not isinstance(param_space, dict):
        raise InvalidArgumentError(
            f"param_space must be a dict, got {type(param_space).__name__}: for example "
            "param_space={'lr': tune.loguniform(1e-4, 1e-1), 'seed': tune.grid_search([0, 1])}."
        )
    columns: dict[str, str] = {}  # config column -> the key path it came from
    for path, value in _param_space_leaves(param_space):
        shown = "".join(f"[{key!r}]" for key in path)
        if isinstance(value, dict) and set(value) == {"grid_search"} and not value["grid_search"]:
            raise InvalidArgumentError(
                f"param_space{shown} is tune.grid_search([]): a grid over no values makes no "
                "trials. Give at least one value, e.g. tune.grid_search([0.1]), or leave the "
                "key out."
            )
        column = "/".join(str(key) for key in path)
        if column in columns:
            raise InvalidArgumentError(
                f"param_space{shown} and param_space{columns[column]} both become the column "
                f"'config/{column}' (nested keys are joined with '/'): one would hide the "
                "other. Rename one of them without '/'."
            )
        columns[column] = shown
        try:
            copy.deepcopy(value)  # Tune copies the param_space for each trial
        except Exception as err:
            raise InvalidArgumentError(
                f"param_space{shown} = {value!r} cannot be copied for each trial "
                f"({type(err).__name__}: {err}). Pass plain values (numbers, strings, lists, "
                "tune.choice(...)); create locks, connections or open files inside the "
                "trainable instead."
            ) from err
    return param_space


def _param_space_leaves(space: dict[str, Any], path: tuple[Any, ...] = ()) -> Any:
    """(key path, value) of every value of a param_space, nested dicts walked into (a
    ``tune.grid_search`` is a leaf)."""
    for key, value in space.items():
        if isinstance(value, dict) and value and set(value) != {"grid_search"}:
            yield from _param_space_leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _validate_runtime_env(runtime_env: object) -> dict[str, Any]:
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, dict):
        raise InvalidArgumentError(
            f"runtime_env must be a dict (Ray's runtime_env), got {type(runtime_env).__name__}: "
            "for example runtime_env={'pip': ['optuna'], 'env_vars': {'MY_FLAG': '1'}}."
        )
    if "working_dir" in runtime_env:
        raise InvalidArgumentError(
            "runtime_env['working_dir'] is set by radas (the directory you run from); remove "
            "it. To ship other code, use runtime_env['py_modules']."
        )
    return dict(runtime_env)
