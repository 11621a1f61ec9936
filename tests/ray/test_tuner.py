"""radas.Tuner: the stored experiment as DataFrames, checked against Ray's own files."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from ray import tune

import radas
from radas.errors import ExperimentNotFoundError
from radas.storage import history_parts as history


def reports_n_times(config):
    for step in range(config["n"]):
        radas.report(
            {
                "value": config["n"] * 100 + step,
                "vector": [step, step + 1],
                "label": f"step-{step}",
                "mixed": step if step % 2 == 0 else "odd",
            }
        )


@pytest.fixture(scope="module")
def tuner(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tuner")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("RADAS_RAY_LOGGERS", "1")  # Ray's own result files, to compare against
        results = radas.run_experiment_sync(
            user_name="tester",
            experiment_name="history",
            trainable=reports_n_times,
            param_space={"n": tune.grid_search([1, 3, 5]), "nested": {"depth": 2}},
            run_choice="run",
            dos=["run"],
        )
    return results["tuner"]


def test_history_has_exactly_one_row_per_report(tuner):
    frame = tuner.get_history_dataframe()
    assert len(frame) == 1 + 3 + 5
    assert frame.groupby("config/n")["training_iteration"].apply(list).to_dict() == {
        1: [1],
        3: [1, 2, 3],
        5: [1, 2, 3, 4, 5],
    }
    assert frame["value"].tolist() == [100, 300, 301, 302, 500, 501, 502, 503, 504]
    assert frame["config/nested/depth"].tolist() == [2] * 9
    assert list(frame.columns[:2]) == ["trial_id", "training_iteration"]


def test_history_keeps_lists_strings_and_mixed_types(tuner):
    frame = tuner.get_history_dataframe()
    five = frame[frame["config/n"] == 5]
    assert [list(v) for v in five["vector"]] == [[s, s + 1] for s in range(5)]
    assert five["label"].tolist() == [f"step-{s}" for s in range(5)]
    assert five["mixed"].tolist() == [0, "odd", 2, "odd", 4]


def test_history_equals_the_one_built_from_rays_result_files(tuner, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tuner.experiment_path, copy)
    shutil.rmtree(copy / history.HISTORY_DIR)
    from_ray = radas.Tuner(copy).get_history_dataframe()
    ours = tuner.get_history_dataframe()
    assert list(ours["trial_id"]) == list(from_ray["trial_id"])
    for column in ["training_iteration", "value", "label", "config/n", "config/nested/depth"]:
        assert ours[column].tolist() == from_ray[column].tolist(), column
    assert [list(v) for v in ours["vector"]] == [list(v) for v in from_ray["vector"]]


def test_brief_views_drop_ray_bookkeeping(tuner):
    full = tuner.get_history_dataframe(brief_columns=False)
    assert {"pid", "hostname", "node_ip", "timestamp", "time_total_s"} <= set(full.columns)
    brief = tuner.get_history_dataframe()
    assert not {"pid", "hostname", "node_ip", "timestamp", "time_total_s", "date"} & set(
        brief.columns
    )
    trials = tuner.get_brief_dataframe()
    assert not {"pid", "hostname", "time_this_iter_s", "done"} & set(trials.columns)
    assert {"trial_id", "training_iteration", "config/n", "value", "status", "error"} <= set(
        trials.columns
    )


def test_dataframe_matches_rays_result_grid(tuner):
    ours = tuner.get_dataframe().set_index("trial_id")
    grid = tuner.get_results()
    assert len(grid) == 3
    rays = grid.get_dataframe().set_index("trial_id")
    assert sorted(ours.index) == sorted(rays.index)
    for column in ["value", "training_iteration", "config/n", "label"]:
        assert ours[column].sort_index().tolist() == rays[column].sort_index().tolist(), column


def test_missing_experiment_is_a_clear_error(tmp_path):
    with pytest.raises(ExperimentNotFoundError, match="No stored experiment"):
        radas.Tuner(tmp_path / "nothing")


def test_rows_to_table_round_trip():
    rows = [{"a": 1, "obj": {1, 2}}, {"a": 2.5, "b": "x", "obj": None}]
    frame = history.table_to_frame(history.rows_to_table(rows))
    assert frame["a"].tolist() == [1.0, 2.5]
    assert frame["b"].tolist() == [None, "x"] or pd.isna(frame["b"][0])
    assert frame["obj"].tolist() == [{1, 2}, None]
    assert np.isclose(frame["a"].sum(), 3.5)


def test_results_keep_the_experiments_metric_and_mode_as_rays_restored_tuner(project):
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="best",
        trainable=best_of,
        param_space={"x": tune.grid_search([1, 3, 2])},
        tuner_init_kwargs={"tune_config": tune.TuneConfig(metric="value", mode="max")},
        run_choice="run",
        dos=["run"],
    )
    ours = radas.Tuner(results["experiment_path"]).get_results().get_best_result()
    rays = tune.Tuner.restore(results["experiment_path"], trainable=best_of)
    assert ours.config == rays.get_results().get_best_result().config == {"x": 3}
    assert ours.metrics["value"] == 30


def best_of(config):
    return {"value": config["x"] * 10}


@pytest.mark.timing
def test_result_files_written_while_trials_ran_are_brought_up_to_date(tuner, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tuner.experiment_path, copy)
    result_files = sorted(copy.glob("*/result.json"))
    behind = result_files[-1]  # the trial of n=5, as if radas wrote it at iteration 1
    behind.write_text(behind.read_text().splitlines()[0] + "\n")
    (behind.parent / "progress.csv").unlink()  # (Ray's own files are never rewritten)
    grid = radas.Tuner(copy).get_results()
    lengths = sorted(len(result.metrics_dataframe) for result in grid)
    assert lengths == [1, 3, 5]
