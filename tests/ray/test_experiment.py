"""run_experiment end to end on local Ray: values, errors, resources, restore of errored trials."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from ray import tune

import radas
from support.trainables import add, grid_ab


def run(**kwargs):
    kwargs.setdefault("user_name", "tester")
    kwargs.setdefault("run_choice", "run")
    return radas.run_experiment_sync(**kwargs)


def test_grid_returns_one_row_per_trial_with_its_score(project):
    results = run(experiment_name="grid", trainable=add, param_space=grid_ab())
    df = results["df"]
    assert len(df) == 6
    assert sorted(zip(df["config/a"], df["config/b"], strict=False)) == [
        (a, b) for a in (1, 2, 3) for b in (10, 20)
    ]
    assert (df["score"] == df["config/a"] + df["config/b"]).all()
    assert set(df["status"]) == {"TERMINATED"}
    assert results["fig"] is None and results["fig_path"] is None
    assert results["outcome"].finished_trials == 6
    expected = Path(os.environ["RADAS_HOME"]) / "ray-results" / "tester" / results["full_name"]
    assert results["experiment_path"] == str(expected)
    assert results["full_name"] == str(project).replace("/", "_").replace("-", "_") + "_grid"


@pytest.mark.slow  # four sweeps: 30 s under load
def test_every_way_of_reporting(project):
    from ray.air import session

    def with_tune_report(config):
        for step in range(3):
            tune.report({"value": step * config["k"]})

    def with_legacy_session_report(config):
        for step in range(3):
            session.report({"value": step * config["k"]})

    def with_radas_report(config):
        for step in range(3):
            radas.report({"value": step * config["k"]})

    def returning_a_dict(config):
        return {"value": 2 * config["k"]}

    for trainable, reports in [
        (with_tune_report, 3),
        (with_legacy_session_report, 3),
        (with_radas_report, 3),
        (returning_a_dict, 1),
    ]:
        results = run(
            experiment_name=trainable.__name__,
            trainable=trainable,
            param_space={"k": tune.grid_search([1, 5])},
            tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        )
        history = results["df"]
        assert len(history) == 2 * reports, trainable.__name__
        expected = [2 * k for k in (1, 5)]
        assert history.groupby("config/k")["value"].last().tolist() == expected


@pytest.mark.slow  # 28 s under load; the decisions: test_flow's restore tests
def test_errored_trials_are_kept_and_restore_reruns_only_them(project):
    runs_dir = project / "runs"
    runs_dir.mkdir()

    def flaky(config):
        (runs_dir / f"{config['a']}-{uuid.uuid4().hex}").touch()
        if config["a"] == 2 and not (project / "fixed").exists():
            raise ValueError(f"boom a={config['a']}")
        return {"score": config["a"] + config["b"]}

    first = run(experiment_name="flaky", trainable=flaky, param_space=grid_ab())
    df = first["df"]
    errored = df[df["status"] == "ERROR"]
    assert sorted(errored["config/a"]) == [2, 2]
    assert errored["error"].str.contains("ValueError: boom a=2").all()
    assert df[df["status"] == "TERMINATED"]["error"].isna().all()
    assert first["outcome"].errored_trials == 2

    (project / "fixed").touch()
    second = run(
        experiment_name="flaky", trainable=flaky, param_space=grid_ab(), run_choice="restore"
    )
    assert set(second["df"]["status"]) == {"TERMINATED"}
    assert (second["df"]["score"] == second["df"]["config/a"] + second["df"]["config/b"]).all()
    assert second["outcome"].already_done == 4
    runs_per_a = {a: len(list(runs_dir.glob(f"{a}-*"))) for a in (1, 2, 3)}
    assert runs_per_a == {1: 2, 2: 4, 3: 2}  # only the two errored trials ran again


def test_run_moves_earlier_results_aside(project, capsys):
    first = run(experiment_name="twice", trainable=add, param_space={"a": 1, "b": 2})
    run(experiment_name="twice", trainable=add, param_space={"a": 5, "b": 5})
    out = capsys.readouterr().out
    assert "earlier results moved to" in out
    archive = Path(first["experiment_path"]).parent / ".archive" / first["full_name"]
    (moved,) = archive.iterdir()
    assert radas.Tuner(moved).get_dataframe()["score"].tolist() == [3]
    assert radas.Tuner(first["experiment_path"]).get_dataframe()["score"].tolist() == [10]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="cpu_per_trial=2 needs 2 CPUs")
@pytest.mark.slow
def test_runtime_env_and_cpu_per_trial_reach_the_trial(project):
    def inspect_trial(config):
        import ray

        return {
            "flag": os.environ.get("RADAS_TEST_FLAG"),
            "cpus": ray.get_runtime_context().get_assigned_resources().get("CPU"),
        }

    results = run(
        experiment_name="env",
        trainable=inspect_trial,
        param_space={"i": tune.grid_search([0, 1])},
        runtime_env={"env_vars": {"RADAS_TEST_FLAG": "on"}},
        cpu_per_trial=2,
    )
    assert results["df"]["flag"].tolist() == ["on", "on"]
    assert results["df"]["cpus"].tolist() == [2.0, 2.0]


class Quadratic(tune.Trainable):
    def setup(self, config):
        self.x = config["x"]

    def step(self):
        self.x = self.x / 2
        return {"x": self.x, "done": self.iteration >= 2}


@pytest.mark.slow  # an actor per trial: 27 s under load
def test_class_trainable(project):
    results = run(
        experiment_name="cls",
        trainable=Quadratic,
        param_space={"x": tune.grid_search([8.0, 16.0])},
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )
    history = results["df"]
    assert history.groupby("config/x")["x"].apply(list).to_dict() == {
        8.0: [4.0, 2.0, 1.0],
        16.0: [8.0, 4.0, 2.0],
    }


@pytest.mark.slow
def test_dos_run_only_returns_the_tuner(project):
    results = run(
        experiment_name="runonly", trainable=add, param_space={"a": 1, "b": 1}, dos=["run"]
    )
    assert results["df"] is None and results["fig"] is None
    assert results["tuner"].get_dataframe()["score"].tolist() == [2]
    assert len(results["tuner"].get_results()) == 1


def test_trials_know_their_experiment(project):
    def who_am_i(config):
        info = radas.tune.trial.current_experiment()
        return {"name": info["experiment_name"], "user": info["user_name"], "tid": info["trial_id"]}

    results = run(experiment_name="whoami", trainable=who_am_i, param_space={"a": 1})
    row = results["df"].iloc[0]
    assert (row["name"], row["user"], row["tid"]) == ("whoami", "tester", row["trial_id"])
    assert radas.tune.trial.current_experiment() is None  # not inside a trial
