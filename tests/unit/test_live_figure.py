"""The live figure's loop through ``run_experiment``, in milliseconds: a FakeBackend
(tests/support/fake_backend.py) stores the trials, then holds the experiment's lock (a run
in progress, as radas's readers see it) until the test's condition holds. In a script the
figure is a PNG file replaced whole at each refresh; a plot function failing on partial data
is a warning per refresh. With real Ray, a cluster job and a notebook: tests/ray/test_live*.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import seaborn as sns

import radas
from radas import backends
from radas.core.poll import async_wait_until
from radas.core.spec import SweepOutcome, SweepSpec, parse_run_with
from radas.errors import RadasWarning
from radas.storage.locks import experiment_lock
from support.fake_backend import FakeBackend
from support.trainables import add, grid_ab

PNG_START = b"\x89PNG\r\n\x1a\n"


class RunningFake(FakeBackend):
    """Stores the trials as FakeBackend does, then runs on (holding the experiment's lock)
    until ``until()`` holds."""

    def __init__(self, root: Path, until: Callable[[], bool]) -> None:
        super().__init__(parse_run_with("local"), root)
        self.until = until

    async def run(self, spec: SweepSpec, *, runtime_env: dict[str, Any]) -> SweepOutcome:
        outcome = await super().run(spec, runtime_env=runtime_env)
        with experiment_lock(spec.storage_root, spec.full_name, spec.experiment_name):
            await async_wait_until(self.until, 60, what="the test's condition", max_delay_s=0.02)
        return outcome


@pytest.fixture
def running_fake(tmp_path, monkeypatch):
    """``running_fake(until)``: the local backend is a RunningFake that ends once ``until()``."""

    def install(until: Callable[[], bool]) -> RunningFake:
        fake = RunningFake(tmp_path / "results", until)
        monkeypatch.setattr(backends, "get_backend", lambda target: fake)
        return fake

    return install


def run(**kwargs):
    kwargs.setdefault("plot_fn", sns.scatterplot)
    return radas.run_experiment_sync(
        user_name="tester",
        experiment_name="live",
        trainable=add,
        param_space=grid_ab(),
        run_choice="run",
        plot_kwargs=dict(x="config/a", y="score"),
        **kwargs,
    )


def test_a_scripts_live_figure_is_redrawn_into_one_png(running_fake, project, capsys):
    live_png = project / "ab.live.png"
    versions: set[int] = set()

    def redrawn_twice() -> bool:
        try:
            versions.add(os.stat(live_png).st_mtime_ns)
        except FileNotFoundError:
            return False
        return len(versions) >= 2

    running_fake(redrawn_twice)
    results = run(plot_path=project / "ab.png", live=0.01)
    assert f"[radas] live figure: {live_png}, redrawn every 0.01 s" in capsys.readouterr().out
    assert live_png.read_bytes().startswith(PNG_START)  # the final figure, written last
    assert results["fig_path"] == str(project / "ab.png")  # the final figure as without live
    assert sorted(p.name for p in project.iterdir() if p.is_file()) == ["ab.live.png", "ab.png"]


def test_the_report_page_is_rewritten_while_it_runs_then_reloads_no_more(
    running_fake, project, capsys
):
    pages: list[str] = []

    def page_rewritten_while_running() -> bool:
        found = list((project / "results").rglob("report.html"))
        if found and "still running" in (page := found[0].read_text()):
            pages.append(page)
        return len(set(pages)) >= 2  # two writes differ: each says when it was written

    running_fake(page_rewritten_while_running)
    results = run(live=1, plot_format="png")
    [page_file] = (project / "results").rglob("report.html")
    assert page_file.parent == Path(results["experiment_path"])  # beside the results
    out = capsys.readouterr().out
    assert f"[radas] report page: {page_file}, rewritten every 1 s while the" in out
    assert all('<meta http-equiv="refresh" content="1">' in page for page in pages)
    last = page_file.read_text()
    assert 'http-equiv="refresh"' not in last and "still running" not in last
    assert "TERMINATED" in last or "FINISHED" in last
    # the call's final figure (radas's figures folder), saved before the last page was
    assert f"<code>{results['fig_path']}</code>" in last


@pytest.mark.integrity("survive")
def test_a_report_page_that_cannot_be_written_is_a_warning_not_the_runs_end(
    running_fake, project, monkeypatch
):
    from radas.views import report_page

    def unwritable(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with pytest.warns(RadasWarning) as record:

        def warned_twice() -> bool:
            said = [str(w.message) for w in record if "report page" in str(w.message)]
            return len(said) >= 2

        # the page's file alone: the live figure is still written
        monkeypatch.setattr(report_page, "_files", SimpleNamespace(write_atomic=unwritable))
        running_fake(warned_twice)
        results = run(live=0.01)
    said = {str(w.message) for w in record if "report page" in str(w.message)}
    assert len(said) == 1, said
    [message] = said
    assert message.startswith("report page not rewritten this time: StorageError: Cannot write")
    assert "(No space left on device)" in message
    assert results["df"]["score"].notna().all()


@pytest.mark.integrity("survive")
def test_a_plot_fn_failing_while_it_runs_is_a_warning_each_time(running_fake, project):
    state = {"ended": False}

    def plot_when_ended(**kwargs):
        if not state["ended"]:
            raise KeyError("accuracy")
        return sns.scatterplot(**kwargs)

    with pytest.warns(RadasWarning) as record:

        def warned_twice() -> bool:
            if sum("live figure" in str(warning.message) for warning in record) < 2:
                return False
            state["ended"] = True
            return True

        running_fake(warned_twice)
        results = run(plot_fn=plot_when_ended, live=0.01)
    said = {str(warning.message) for warning in record}
    assert said == {"live figure not redrawn this time: plot_fn raised KeyError: 'accuracy'"}
    assert results["fig"] is not None  # the final figure, as without live


def test_live_with_only_analyze_draws_once_as_before(running_fake, project, capsys):
    running_fake(lambda: True)
    run(plot_path=project / "ab.png")  # stored, then read again with live set
    results = run(plot_path=project / "again.png", dos=["analyze"], live=True)
    assert results["fig"] is not None and "live figure" not in capsys.readouterr().out
    assert not (project / "again.live.png").exists()
