"""Search algorithms and schedulers pass through tuner_init_kwargs."""

from __future__ import annotations

from ray import tune
from ray.tune.schedulers import ASHAScheduler

import radas

MAX_T = 20


def iterative(config):
    for step in range(1, MAX_T + 1):
        radas.report({"loss": config["quality"] + 1.0 / step})


def test_asha_stops_some_trials_early(project):
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="asha",
        trainable=iterative,
        param_space={"quality": tune.uniform(0.0, 10.0)},
        run_choice="run",
        tuner_init_kwargs=dict(
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                num_samples=20,
                scheduler=ASHAScheduler(max_t=MAX_T, grace_period=2, reduction_factor=3),
            )
        ),
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )
    history = results["df"]
    iterations = history.groupby("trial_id")["training_iteration"].max()
    assert len(iterations) == 20
    assert (iterations < MAX_T).sum() >= 5, iterations.tolist()
    assert (iterations == MAX_T).sum() >= 1
    # ASHA keeps the better trials: the ones that ran to the end have the lowest quality.
    quality = history.groupby("trial_id")["config/quality"].first()
    assert quality[iterations == MAX_T].min() <= quality[iterations < MAX_T].median()


def quadratic(config):
    return {"loss": (config["x"] - 2) ** 2 + (config["y"] - 3) ** 2}


def test_optuna_finds_the_minimum(project):
    from ray.tune.search.optuna import OptunaSearch

    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="optuna",
        trainable=quadratic,
        param_space={"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10)},
        run_choice="run",
        tuner_init_kwargs=dict(
            tune_config=tune.TuneConfig(
                search_alg=OptunaSearch(seed=0), metric="loss", mode="min", num_samples=50
            )
        ),
    )
    df = results["df"]
    assert len(df) == 50
    assert df["loss"].min() < 1
    best = results["tuner"].get_results().get_best_result(metric="loss", mode="min")
    assert best.metrics["loss"] == df["loss"].min()
    recomputed = (df["config/x"] - 2) ** 2 + (df["config/y"] - 3) ** 2
    assert (abs(recomputed - df["loss"]) < 1e-9).all()
