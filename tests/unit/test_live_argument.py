"""``run_experiment(..., live=...)``: the value checked in the plan stage, before anything runs
or is read; where a script's live figure goes. The live figure itself: tests/ray/test_live.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import seaborn as sns

import radas
from radas.errors import InvalidArgumentError
from radas.results.analysis import AnalysisOptions
from radas.run.live import live_figure_path
from radas.run.plan import validate_live
from support.trainables import add, grid_ab


@pytest.mark.parametrize(("live", "seconds"), [(False, None), (True, 10.0), (2, 2.0), (0.5, 0.5)])
def test_live_is_off_every_ten_seconds_or_a_number_of_seconds(live, seconds):
    assert validate_live(live, has_plot_fn=True) == seconds


@pytest.mark.integrity("error")
@pytest.mark.parametrize("live", [0, -1, float("nan"), float("inf"), "10", None, [10]])
def test_any_other_live_is_refused_before_anything_runs(live, project):
    with pytest.raises(InvalidArgumentError, match=r"use live=True .*live=30.*live=False"):
        radas.run_experiment_sync(
            user_name="tester",
            experiment_name="live-bad",
            trainable=add,
            param_space=grid_ab(),
            run_choice="run",
            plot_fn=sns.scatterplot,
            plot_kwargs=dict(x="config/a", y="score"),
            live=live,
        )
    assert not any(project.iterdir())  # nothing ran, nothing was written


@pytest.mark.integrity("error")
def test_live_without_a_plot_fn_says_what_to_add(project):
    with pytest.raises(InvalidArgumentError, match="no plot_fn was given: add plot_fn="):
        radas.run_experiment_sync(
            user_name="tester",
            experiment_name="live-no-plot",
            trainable=add,
            param_space=grid_ab(),
            run_choice="run",
            live=True,
        )


def test_a_scripts_live_figure_goes_beside_the_final_one(tmp_path):
    default = tmp_path / "figures" / "_home_alice_proj_lr"
    assert live_figure_path(AnalysisOptions(), default) == default.with_name(
        "_home_alice_proj_lr.live.png"
    )
    given = AnalysisOptions(plot_path=str(tmp_path / "lr.pdf"))
    assert live_figure_path(given, default) == tmp_path / "lr.live.png"
    assert live_figure_path(AnalysisOptions(plot_path="~/lr.svg"), default) == (
        Path.home() / "lr.live.png"
    )
