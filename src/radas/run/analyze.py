"""Stage 4, analyze: the DataFrame (built off the event loop) and the figure (drawn on the
caller's thread: pyplot keeps global state and GUI backends want the main thread), filled
into the ``ExperimentResult``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from radas.core.console import print_info
from radas.errors import AnalysisError, InvalidArgumentError
from radas.results import analysis
from radas.results.experiment_result import ExperimentResult
from radas.run.live import LiveFigure


async def analyze(
    result: ExperimentResult,
    options: analysis.AnalysisOptions,
    *,
    default_figure_path: Path,
    live: LiveFigure | None = None,
) -> None:
    """Fill in ``result``'s df, and its fig, plot and fig_path when ``options`` plot (and put
    the figure where ``live`` showed it). A user function or argument that fails is an
    AnalysisError holding ``result`` as it got."""
    replot = (
        f"The experiment's results are kept at {result.experiment_path}; fix the function or "
        "its arguments and re-plot without re-running: run_experiment(..., dos=['analyze'])."
    )
    try:
        result.df = await asyncio.to_thread(analysis.make_dataframe, result.tuner, options)
        drawn = analysis.plot(result.df, options, default_figure_path)
    except (analysis.UserFunctionError, InvalidArgumentError) as err:
        stage = "Plotting" if result.df is not None else "Building the DataFrame"
        raise AnalysisError(f"{stage} failed: {err}. {replot}", results=result) from err
    if drawn is not None:
        result.fig, result.plot, result.fig_path = drawn.figure, drawn.plot, drawn.path
        if drawn.path:
            print_info(f"figure saved to {drawn.path}")
        if live is not None:
            live.show_final(drawn.figure)
