"""Analysis of one stored experiment in many ways (dos=['analyze']: nothing re-runs)."""

from __future__ import annotations

import uuid
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from ray import tune

import radas
from radas.results import analysis


def curve(config):
    for step in range(1, 4):
        radas.report({"score": config["a"] * 10 + config["b"] + step, "step": step})


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Run the a x b grid once; tests analyze it from the same working directory."""
    workdir = tmp_path_factory.mktemp("analysis")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        results = radas.run_experiment_sync(
            user_name="analyst",
            experiment_name="ab",
            trainable=curve,
            param_space={"a": tune.grid_search([1, 2, 3]), "b": tune.grid_search([10, 20])},
            run_choice="run",
            dos=["run"],
        )
    return workdir, results


@pytest.fixture
def analyze(stored, monkeypatch):
    workdir, _ = stored
    monkeypatch.chdir(workdir)

    def call(**kwargs):
        return radas.run_experiment_sync(
            user_name="analyst", experiment_name="ab", trainable=curve, dos=["analyze"], **kwargs
        )

    return call


def test_default_df_is_the_brief_dataframe(analyze):
    df = analyze()["df"]
    assert len(df) == 6
    assert (df["score"] == df["config/a"] * 10 + df["config/b"] + 3).all()
    assert {"trial_id", "training_iteration", "step", "config/a", "config/b"} <= set(df.columns)
    assert not {"pid", "hostname", "node_ip", "timestamp", "date", "time_total_s"} & set(df.columns)


def test_heatmap_with_callable_data(analyze):
    results = analyze(
        plot_fn=sns.heatmap,
        plot_kwargs=dict(
            data=lambda df: df.pivot(index="config/a", columns="config/b", values="score"),
            annot=True,
        ),
        plot_format="png",
    )
    ax = results["plot"]
    drawn = np.asarray(ax.collections[0].get_array()).reshape(3, 2)
    assert drawn.tolist() == [[23, 33], [33, 43], [43, 53]]  # a*10 + b + 3
    assert Path(results["fig_path"]).stat().st_size > 5_000
    assert results["fig"] is ax.figure


def test_relplot_figure_level_on_history(analyze):
    results = analyze(
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        plot_fn=sns.relplot,
        plot_kwargs=dict(
            x="training_iteration", y="score", hue="config/a", col="config/b", kind="line"
        ),
        plot_format="pdf",
    )
    grid = results["plot"]
    assert isinstance(grid, sns.FacetGrid)
    assert results["fig"] is grid.figure
    assert len(grid.axes.flat) == 2
    assert sum(len(ax.lines) >= 3 for ax in grid.axes.flat) == 2
    assert Path(results["fig_path"]).read_bytes().startswith(b"%PDF")


def test_lineplot_to_svg_with_explicit_path(analyze, tmp_path):
    target = tmp_path / "figs" / "scores.svg"
    target.parent.mkdir()  # radas does not create folders outside its own (test_integrity_inputs)
    results = analyze(
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        plot_fn=sns.lineplot,
        plot_kwargs=dict(x="step", y="score", hue="config/a", estimator=np.median),
        plot_path=target,
    )
    assert results["fig_path"] == str(target)
    assert "<svg" in target.read_text()
    ax = results["plot"]
    assert len(ax.lines) >= 3
    # estimator=np.median was passed through, not called on the DataFrame:
    medians = sorted(max(line.get_ydata()) for line in ax.lines if len(line.get_ydata()) == 3)
    assert medians == [28.0, 38.0, 48.0]  # median over b in {10, 20} of a*10 + b + 3


def test_process_df_rename_rcparams_sns_and_g_functions(analyze):
    calls = []

    def keep_a_at_least(df, minimum):
        return df[df["config/a"] >= minimum]

    def theme():
        calls.append("sns")
        sns.set_theme(style="whitegrid")

    def finish(ax):
        calls.append(type(ax).__name__)
        ax.set_title("scores")

    results = analyze(
        process_df_fn=keep_a_at_least,
        process_df_fn_kwargs={"minimum": 2},
        rename_mapping={"config/a": "a", "config/b": "b"},
        matplotlib_rcParams_update={"figure.figsize": (3.0, 2.0)},
        process_sns_fn=theme,
        plot_fn=sns.barplot,
        plot_kwargs=dict(x="a", y="score", hue="b"),
        process_g_fn=finish,
    )
    assert sorted(results["df"]["a"].unique()) == [2, 3]
    assert calls == ["sns", "Axes"]
    assert results["plot"].get_title() == "scores"
    assert tuple(results["fig"].get_size_inches()) == (3.0, 2.0)
    assert matplotlib.rcParams["figure.figsize"] != [3.0, 2.0]  # not leaked globally


@pytest.mark.parametrize(
    ("plot_fn", "kwargs", "grid_type"),
    [
        (sns.catplot, dict(x="config/a", y="score", kind="bar"), sns.FacetGrid),
        (sns.jointplot, dict(x="config/a", y="score"), sns.JointGrid),
        (sns.pairplot, dict(vars=["config/a", "config/b", "score"]), sns.PairGrid),
        (
            sns.clustermap,
            dict(data=lambda df: df.pivot(index="config/a", columns="config/b", values="score")),
            sns.matrix.ClusterGrid,
        ),
        (sns.displot, dict(x="score"), sns.FacetGrid),
    ],
)
def test_figure_level_functions(analyze, plot_fn, kwargs, grid_type):
    results = analyze(plot_fn=plot_fn, plot_kwargs=kwargs, plot_format="png")
    assert isinstance(results["plot"], grid_type)
    assert results["fig"] is results["plot"].figure
    assert Path(results["fig_path"]).stat().st_size > 5_000


def test_analyze_runs_nothing_and_returns_the_stored_rows(stored, analyze):
    _, ran = stored
    again = analyze()
    assert again["experiment_path"] == ran["experiment_path"]
    assert again["outcome"] is None
    assert sorted(again["df"]["trial_id"]) == sorted(ran["tuner"].get_dataframe()["trial_id"])


def test_tuner_to_df_fn_must_return_a_dataframe(analyze):
    with pytest.raises(radas.AnalysisError, match="must return a pandas DataFrame"):
        analyze(tuner_to_df_fn=lambda tuner: [1, 2])


def test_resolve_plot_kwargs_calls_functions_only():
    df = pd.DataFrame({"a": [1, 2]})
    cmap = matplotlib.colormaps["viridis"]
    resolved = analysis.resolve_plot_kwargs(
        df, {"data": lambda d: d * 2, "estimator": np.mean, "cmap": cmap, "x": "a"}
    )
    assert resolved["data"]["a"].tolist() == [2, 4]
    assert resolved["estimator"] is np.mean and resolved["cmap"] is cmap and resolved["x"] == "a"


def test_unique_experiment_name_per_test_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = radas.core.naming.full_experiment_name(f"x-{uuid.uuid4().hex[:4]}")
    assert name.startswith(str(tmp_path).replace("/", "_").replace("-", "_"))
