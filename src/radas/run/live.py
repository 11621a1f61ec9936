"""A live figure (``run_experiment(..., live=...)``): while the experiment runs, the figure the
call will return is redrawn from its partial results every ``live`` seconds.

In a notebook (an IPython kernel) it is one display output, updated in place, into which the
final figure goes at the end; in a script it is a PNG file beside where the final figure goes
(``<name>.live.png``), replaced whole at each refresh (written aside, then renamed: a viewer
never reads half a file), and the final figure is written into it at the end.

A refresh reads the experiment as ``dos=["analyze"]`` does (a local run, a cluster's results
root, an object store) with the call's own ``tuner_to_df_fn``, ``process_df_fn``,
``plot_fn`` and ``plot_kwargs``, and draws in a thread of its own, one refresh at a time;
the next starts ``live`` seconds after one ends. On Linux that thread runs at a lower CPU
priority (niceness is per thread there): on a machine the trials keep busy it draws with
the time they leave, and the sweep runs about as fast as without it (bench/bench_live.py).
Nothing is drawn before a trial has reported. A user function that fails on partial data
(a column not there yet) is a ``RadasWarning`` for that refresh, never the run's end.

Each refresh also rewrites the experiment's report page (``radas.views.report_page``: where
``radas report`` puts it, ``report.html`` beside the results when this process can write
there), which reloads itself in a browser as often while the experiment runs; once the call's
figure is saved (or the run failed) it is written a last time, and reloads no more.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import io
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from radas.core.console import collected_warnings, print_info, warn
from radas.errors import ExperimentNotFoundError
from radas.results import analysis, tune_state
from radas.results.experiment_info import read_experiment_info
from radas.results.tuner import BOOKKEEPING_COLUMNS, Tuner
from radas.storage import files
from radas.storage.store import Location
from radas.views import report_page

T = TypeVar("T")
# what Tune fills into the last result of a trial that has not reported yet
_NOT_REPORTED = BOOKKEEPING_COLUMNS | {"config", "trial_id"}
# the drawing thread's niceness (Linux): the trials' processes come first
DRAWING_NICENESS = 15
# matplotlib backends that draw without a window: safe in a worker thread
_WINDOWLESS_BACKENDS = ("agg", "pdf", "ps", "svg", "pgf", "cairo", "template")


def live_figure_path(options: analysis.AnalysisOptions, default_figure_path: Path) -> Path:
    """Where a script's live figure goes: beside ``plot_path`` when given, else beside the
    experiment's default figure (``<figures>/<full name>.live.png``).

    >>> live_figure_path(analysis.AnalysisOptions(plot_path="/tmp/lr.pdf"), Path("/x/y"))
    PosixPath('/tmp/lr.live.png')
    """
    if options.plot_path is not None:
        final = Path(options.plot_path).expanduser()
        return final.with_name(f"{final.stem}.live.png")
    return default_figure_path.with_name(f"{default_figure_path.name}.live.png")


class _QuietTuner(Tuner):
    """A Tuner whose reads do not say "still running: partial results" (the progress line
    says how far the run is; a refresh every few seconds would repeat it)."""

    def _say_if_partial(self, running: bool, trials: list[tune_state.TrialState]) -> None:
        return None


@dataclasses.dataclass
class LiveFigure:
    """The live figure of one ``run_experiment`` call."""

    interval_s: float
    options: analysis.AnalysisOptions
    experiment_path: Location
    file_path: Path
    job_running: Callable[[], bool] | None = None
    in_notebook: bool = dataclasses.field(default_factory=lambda: _in_notebook())
    refreshes: int = 0  # figures drawn while it ran
    report_path: str | None = dataclasses.field(default=None, init=False)  # once written
    _handle: Any = dataclasses.field(default=None, init=False)
    _drawing: asyncio.Future[Any] | None = dataclasses.field(default=None, init=False)
    _drawer: concurrent.futures.ThreadPoolExecutor | None = dataclasses.field(
        default=None, init=False
    )

    def __post_init__(self) -> None:
        # drawn without saving: the final figure alone goes to plot_path / plot_format
        self._draw_options = dataclasses.replace(self.options, plot_format=None, plot_path=None)

    @contextlib.asynccontextmanager
    async def following(self, run_choice: str) -> AsyncIterator[None]:
        """Within the block (the backend running or following the experiment), the figure is
        redrawn every ``interval_s``; when the block ends, a refresh in progress is finished,
        then no more start. With ``run_choice="run"`` the results stored before (moved aside
        when the run starts) are never drawn."""
        stored_before = None
        if run_choice == "run":
            stored_before = await asyncio.to_thread(read_experiment_info, self.experiment_path)
        if not self.in_notebook:
            _windowless_matplotlib()
            self.file_path.parent.mkdir(parents=True, exist_ok=True)
            print_info(f"live figure: {self.file_path}, redrawn every {self.interval_s:g} s")
        self._drawer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="radas-live-figure", initializer=_lower_priority
        )
        task = asyncio.create_task(self._refresh_every_interval(run_choice, stored_before))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self._drawing is not None:  # a thread cannot be cancelled: it ends first
                await asyncio.wait([self._drawing])
            self._drawer.shutdown(wait=False)

    async def write_last_page(self) -> None:
        """Once the call's figure is saved (or the run failed): the report page, if one was
        written while the experiment ran, gets its final state and reloads itself no more."""
        if self.report_path is None:
            return
        problem = await asyncio.to_thread(self._write_page)
        if problem:
            warn(f"report page not written at the end: {problem}", stacklevel=1)

    def show_final(self, figure: Any) -> None:
        """The final figure, where the live one was: into the notebook's display output (and
        not shown again below it) or the script's file."""
        if not self.in_notebook:
            files.write_atomic(self.file_path, _png(figure))
        elif self._handle is not None:  # else nothing was shown live: as without live
            import matplotlib.pyplot as plt
            from IPython.display import Image

            self._handle.update(Image(data=_png(figure), format="png"))
            plt.close(figure)  # else the inline backend shows it a second time

    async def _refresh_every_interval(
        self, run_choice: str, stored_before: dict[str, Any] | None
    ) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            started, png, problem = await self._in_drawer(self._draw, run_choice, stored_before)
            if problem:
                warn(f"live figure not redrawn this time: {problem}", stacklevel=1)
            if png is not None:  # shown at once: the page is slower, and the run may end
                self._show(png)
            if started:  # this run has reported: its page too
                first_page = self.report_path is None
                problem = await self._in_drawer(self._write_page, self._page_refresh_s)
                if problem:
                    warn(f"report page not rewritten this time: {problem}", stacklevel=1)
                if first_page and self.report_path is not None:
                    print_info(
                        f"report page: {self.report_path}, rewritten every "
                        f"{self._page_refresh_s} s while the experiment runs"
                    )

    async def _in_drawer(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in the drawing thread, in the caller's context (as asyncio.to_thread
        would: a cluster's S3 endpoint); when the refresh task is cancelled, it ends first."""
        run = functools.partial(contextvars.copy_context().run, work, *args)
        self._drawing = asyncio.get_running_loop().run_in_executor(self._drawer, run)
        try:
            return await asyncio.shield(self._drawing)
        finally:
            if self._drawing.done():
                self._drawing = None

    @property
    def _page_refresh_s(self) -> int:
        """How often the page reloads itself in a browser: the refresh interval, whole seconds."""
        return max(1, round(self.interval_s))

    def _draw(
        self, run_choice: str, stored_before: dict[str, Any] | None
    ) -> tuple[bool, bytes | None, str]:
        """(whether this run has started and reported; the figure as PNG, or None when there is
        nothing to draw yet; what went wrong drawing it)."""
        try:
            # what a read finds damaged is said by the final read, not at every refresh
            with collected_warnings():
                tuner = self._running_tuner(run_choice, stored_before)
        except Exception as err:  # a refresh never ends the run: said, tried again later
            return False, None, f"{type(err).__name__}: {err}"
        if tuner is None:
            return False, None, ""
        return True, *self._figure_png(tuner)

    def _figure_png(self, tuner: Tuner) -> tuple[bytes | None, str]:
        try:
            with collected_warnings():
                df = analysis.make_dataframe(tuner, self.options)
            drawn = analysis.plot(df, self._draw_options, self.file_path)
            if drawn is None:
                return None, ""
            try:
                return _png(drawn.figure), ""
            finally:
                import matplotlib.pyplot as plt

                plt.close(drawn.figure)
        except Exception as err:  # a refresh never ends the run: said, tried again later
            if isinstance(err, analysis.UserFunctionError):
                return None, str(err)
            return None, f"{type(err).__name__}: {err}"

    def _write_page(self, refresh_s: int | None = None) -> str:
        """Write the report page (where it went the first time); what went wrong, or ""."""
        try:
            with collected_warnings():
                self.report_path = report_page.write_report(
                    self.experiment_path,
                    self.report_path,
                    job_running=self.job_running,
                    refresh_s=refresh_s,
                )
        except Exception as err:  # a refresh never ends the run: said, tried again later
            return f"{type(err).__name__}: {err}"
        return ""

    def _running_tuner(self, run_choice: str, stored_before: dict[str, Any] | None) -> Tuner | None:
        """The experiment, when this run of it has started and a trial has reported."""
        try:
            tuner = _QuietTuner(str(self.experiment_path), job_running=self.job_running)
        except ExperimentNotFoundError:
            return None  # not stored yet
        if not tuner.is_running:
            return None  # not started yet (or ended: the final figure comes)
        if run_choice == "run" and read_experiment_info(self.experiment_path) == stored_before:
            return None  # the earlier results, not yet moved aside
        trials = tune_state.load_trial_states(self.experiment_path, running=True)
        if not any(set(trial.last_result) - _NOT_REPORTED for trial in trials):
            return None  # no trial has reported yet
        return tuner

    def _show(self, png: bytes) -> None:
        self.refreshes += 1
        if self.in_notebook:
            from IPython.display import Image, display

            if self._handle is None:
                self._handle = display(Image(data=png, format="png"), display_id=True)
            else:
                self._handle.update(Image(data=png, format="png"))
        else:
            files.write_atomic(self.file_path, png)


@contextlib.asynccontextmanager
async def following(live: LiveFigure | None, run_choice: str) -> AsyncIterator[None]:
    """``live.following(run_choice)``; nothing without a live figure."""
    if live is None:
        yield
        return
    async with live.following(run_choice):
        yield


def _lower_priority() -> None:
    """The drawing thread yields the CPU to the trials: a higher niceness for this thread
    alone, on Linux (elsewhere it would be the whole process's: left as it is)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DRAWING_NICENESS)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _windowless_matplotlib() -> None:
    """In a script, figures are drawn in a worker thread: with Agg, never a window's backend
    (radas's figures are saved and returned, never shown in a window, in a script)."""
    import matplotlib

    backend = matplotlib.get_backend(auto_select=False)
    if backend is None:
        matplotlib.use("agg")
    elif backend.lower() not in _WINDOWLESS_BACKENDS:
        import matplotlib.pyplot as plt

        plt.switch_backend("agg")


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return getattr(shell, "kernel", None) is not None
