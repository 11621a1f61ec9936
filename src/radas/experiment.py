"""``run_experiment``: plan -> execute -> load -> analyze (the stages: ``radas.run``).

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
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from radas.core.args import checked_keywords
from radas.core.naming import validate_user_name
from radas.errors import NotSupportedError
from radas.results.analysis import AnalysisOptions
from radas.results.experiment_info import check_owner
from radas.results.experiment_result import ExperimentResult
from radas.results.tuner import Tuner
from radas.run.analyze import analyze
from radas.run.execute import execute
from radas.run.live import LiveFigure, live_figure_path
from radas.run.load import load
from radas.run.plan import Plan, make_plan
from radas.storage import store
from radas.storage.dirs import figures_dir


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
    live: bool | float = False,
    yes: bool = False,
    email_notification_to_address: str | None = None,
) -> ExperimentResult:
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

    ``run_with``: "local" or "cluster:<name>"; ``run_choice``: "run", "restore", "attach",
    "stop_attach" (None: asked on a terminal); ``dos``: ["run", "analyze"], ["run"] or
    ["analyze"]; ``live``: True (every 10 s) or seconds: while the experiment runs, the
    figure is redrawn from its partial results, in place in a notebook, else into a PNG file
    whose path is printed. Every argument: skills/radas/REFERENCE.md.

    Returns an ``ExperimentResult``, also read as a dict: ``df`` (processed DataFrame, None
    without "analyze" in ``dos``), ``fig`` (matplotlib Figure) and ``plot`` (what
    ``plot_fn`` returned; both None without ``plot_fn``), ``fig_path`` (when saved),
    ``tuner`` (radas.Tuner), ``experiment_path``, ``full_name``, ``run_with``,
    ``run_choice``, ``outcome`` (trial counts of this run, or None) and ``partial`` (True
    when the experiment was still running as it was read, e.g. with ``dos=["analyze"]``: the
    df holds what was reported so far, and radas says "<name> is still running: partial
    results, N of M trials finished").
    """
    plan = make_plan(**locals())  # locals(), first thing: exactly the arguments
    try:
        with plan.backend.store_scope():  # a cluster's results: read through its own S3 endpoint
            result = await _stages(plan)
    except Exception as err:
        if plan.notification is not None:
            ended = plan.notification.experiment_ended
            await asyncio.to_thread(ended, plan.experiment_name, error=err)
        raise
    if plan.notification is not None:
        ended = plan.notification.experiment_ended
        await asyncio.to_thread(ended, plan.experiment_name, results=result)
    return result


async def _stages(plan: Plan) -> ExperimentResult:
    """execute (with "run" in dos) -> load -> analyze (with "analyze" in dos)."""
    experiment_path = plan.experiment_location()
    # another (folder, name) mapping onto this full name: refused before anything runs or is
    # read (checked again where the sweep runs, under the experiment's lock); off the loop:
    # the results may be in an object store
    await asyncio.to_thread(
        check_owner, experiment_path, experiment_name=plan.experiment_name, cwd=plan.cwd
    )
    run_choice, outcome = plan.run_choice, None
    default_figure_path = figures_dir(plan.user_name) / plan.full_name
    live = None
    if plan.live_s is not None and "run" in plan.dos:
        live = LiveFigure(
            interval_s=plan.live_s,
            options=plan.options,
            experiment_path=experiment_path,
            file_path=live_figure_path(plan.options, default_figure_path),
            job_running=plan.backend.running_probe(plan.user_name, plan.full_name),
        )
    try:
        if "run" in plan.dos:
            spec, runtime_env = plan.sweep()
            run_choice, outcome = await execute(plan, spec, runtime_env, experiment_path, live=live)
        result = await load(plan, experiment_path, run_choice, outcome)
        if "analyze" in plan.dos:
            await analyze(result, plan.options, default_figure_path=default_figure_path, live=live)
    finally:
        if live is not None:
            await live.write_last_page()
    return result


def run_experiment_sync(*args: Any, **kwargs: Any) -> ExperimentResult:
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


def analyze_stored_sync(
    experiment_path: str, *, user_name: str, **options: Any
) -> ExperimentResult:
    """``dos=["analyze"]`` of the experiment stored at ``experiment_path`` (a path or a URI
    such as ``s3://lab/results/alice/_home_alice_proj_lr``), for ``radas analyze URI``:
    ``options`` are run_experiment's analysis arguments; the figure's default folder is
    ``user_name``'s."""
    analysis_options = AnalysisOptions(**options)
    tuner = Tuner(experiment_path)
    full_name = store.location(tuner.experiment_path).name
    result = ExperimentResult(
        experiment_path=tuner.experiment_path,
        full_name=full_name,
        tuner=tuner,
        partial=tuner.is_running,
    )
    default_figure_path = figures_dir(validate_user_name(user_name)) / full_name
    asyncio.run(analyze(result, analysis_options, default_figure_path=default_figure_path))
    return result
