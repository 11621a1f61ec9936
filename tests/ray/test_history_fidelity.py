"""radas's own history and Ray's own per-trial results hold the same rows and values,
also after a restore re-ran trials and for trials that errored."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from ray import tune

import radas
from radas.results import tune_state


def flaky_curve(config):
    flag = config["flag_dir"] / f"ran-{config['k']}"
    attempt = 2 if flag.exists() else 1
    flag.touch()
    for step in range(1, 6):
        if config["k"] == 1 and step == 3 and attempt == 1:
            raise RuntimeError("fails at step 3 the first time")
        if config["k"] == 2 and step == 4:
            raise RuntimeError("always fails at step 4")
        radas.report({"value": 100 * attempt + 10 * config["k"] + step, "k": config["k"]})


def rays_rows(experiment_path: str) -> pd.DataFrame:
    """Every row Ray's own JSON logger wrote, newest report of each iteration kept."""
    rows = []
    for trial in tune_state.load_trial_states(experiment_path):
        for result in tune_state.read_trial_result_file(
            Path(experiment_path) / trial.trial_dir_name
        ):
            rows.append(
                {
                    "trial_id": trial.trial_id,
                    "training_iteration": result["training_iteration"],
                    "value": result["value"],
                    "config/k": result["config"]["k"],
                }
            )
    frame = pd.DataFrame(rows).drop_duplicates(["trial_id", "training_iteration"], keep="last")
    return frame.sort_values(["trial_id", "training_iteration"]).reset_index(drop=True)


@pytest.fixture
def restored_experiment(project, monkeypatch):
    monkeypatch.setenv("RADAS_RAY_LOGGERS", "1")  # Ray's own loggers too, to compare with
    kwargs = dict(
        user_name="tester",
        experiment_name="fidelity",
        trainable=flaky_curve,
        param_space={"k": tune.grid_search([0, 1, 2]), "flag_dir": project},
    )
    first = radas.run_experiment_sync(**kwargs, run_choice="run")
    assert first["outcome"].errored_trials == 2
    second = radas.run_experiment_sync(**kwargs, run_choice="restore")
    return second


def test_history_matches_rays_rows_after_restore_and_errors(restored_experiment):
    tuner = restored_experiment["tuner"]
    ours = tuner.get_history_dataframe()[["trial_id", "training_iteration", "value", "config/k"]]
    theirs = rays_rows(tuner.experiment_path)
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs, check_dtype=False)
    by_k = ours.groupby("config/k")
    assert by_k["training_iteration"].max().tolist() == [5, 5, 3]  # k=2 errors at step 4
    # k=1 failed at step 3 the first time and was re-run on restore: the newest rows win
    assert ours[ours["config/k"] == 1]["value"].tolist() == [211, 212, 213, 214, 215]
    status = tuner.get_dataframe().set_index("config/k")["status"].to_dict()
    assert status == {0: "TERMINATED", 1: "TERMINATED", 2: "ERROR"}


def test_ray_result_grid_works_without_rays_loggers(project):
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="grid-from-history",
        trainable=flaky_curve,
        param_space={"k": tune.grid_search([0, 3]), "flag_dir": project},
        run_choice="run",
    )
    tuner = results["tuner"]
    path = Path(tuner.experiment_path)
    trial_dirs = [path / t.trial_dir_name for t in tune_state.load_trial_states(path)]
    assert len(trial_dirs) == 2
    assert not any((d / "result.json").exists() for d in trial_dirs)  # Ray's loggers were off
    grid = tuner.get_results()  # writes result.json from radas's history on first use
    history = tuner.get_history_dataframe()
    for result in grid:
        trial_id = result.metrics["trial_id"]
        ray_frame = result.metrics_dataframe
        ours = history[history["trial_id"] == trial_id]
        assert ray_frame["training_iteration"].tolist() == ours["training_iteration"].tolist()
        assert ray_frame["value"].tolist() == ours["value"].tolist()
        assert ray_frame["config/k"].tolist() == ours["config/k"].tolist()
    best = grid.get_best_result(metric="value", mode="max")
    assert best.metrics["value"] == history["value"].max()
