"""What ``run_experiment`` decides (names, run choices, dos, analysis hooks, errors), tested in
milliseconds: the backend is ``FakeBackend`` (tests/support/fake_backend.py), which runs nothing on
Ray. That the real backends execute what they are handed is tested elsewhere (test_experiment,
test_restore, test_clusters, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import seaborn as sns
from ray import tune

import radas
from radas import backends
from radas.core.naming import full_experiment_name
from radas.core.spec import RunTarget, parse_run_with
from radas.errors import (
    AnalysisError,
    ExperimentNotFoundError,
    NameCollisionError,
    RadasWarning,
    RunChoiceRequiredError,
    TrialsOutOfMemoryError,
    UnknownClusterError,
)
from support.fake_backend import FakeBackend
from support.trainables import add, grid_ab


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A FakeBackend standing in for run_with="local" (``fake.on(run_with)`` for another):
    ``radas.backends.get_backend`` patched to give the fakes, and the real backend elsewhere."""
    fakes: dict[RunTarget, FakeBackend] = {}
    real_get_backend = backends.get_backend

    def get_backend(run_with: str | RunTarget):
        target = run_with if isinstance(run_with, RunTarget) else parse_run_with(run_with)
        return fakes[target] if target in fakes else real_get_backend(target)

    monkeypatch.setattr(backends, "get_backend", get_backend)

    class Registry:
        def on(self, run_with: str, **kwargs) -> FakeBackend:
            backend = FakeBackend(parse_run_with(run_with), tmp_path / "results", **kwargs)
            fakes[backend.target] = backend
            return backend

    registry = Registry()
    registry.local = registry.on("local")
    return registry


def run(**kwargs):
    kwargs.setdefault("user_name", "tester")
    kwargs.setdefault("experiment_name", "flow")
    kwargs.setdefault("run_choice", "run")
    return radas.run_experiment_sync(**kwargs)


def test_the_fake_stands_in_only_where_registered(fake):
    assert backends.get_backend("local") is fake.local
    with pytest.raises(UnknownClusterError):  # not registered: the real lookup
        backends.get_backend("cluster:elsewhere")


def test_names_and_paths_come_from_the_user_the_folder_and_the_experiment_name(fake, project):
    results = run(experiment_name="grid", trainable=add, param_space=grid_ab(), cpu_per_trial=2)
    full_name = full_experiment_name("grid", cwd=str(project))
    assert results["full_name"] == full_name
    assert full_name == str(project).replace("/", "_").replace("-", "_") + "_grid"
    expected = Path(fake.local.results_root("tester")) / full_name
    assert results["experiment_path"] == str(expected)
    assert (results["run_with"], results["run_choice"]) == ("local", "run")
    (call,) = fake.local.calls
    assert (call.method, call.run_choice) == ("run", "run")
    spec = call.spec
    assert (spec.user_name, spec.experiment_name, spec.full_name) == ("tester", "grid", full_name)
    assert (spec.storage_root, spec.cwd) == (fake.local.results_root("tester"), str(project))
    assert spec.cpu_per_trial == 2
    # what the fake ran is read back as a real run is
    df = results["df"]
    assert sorted(zip(df["config/a"], df["config/b"], strict=True)) == [
        (a, b) for a in (1, 2, 3) for b in (10, 20)
    ]
    assert (df["score"] == df["config/a"] + df["config/b"]).all()
    assert set(df["status"]) == {"TERMINATED"} and set(df["cpu_per_trial"]) == {2}
    assert results["outcome"].finished_trials == 6 and results["partial"] is False
    assert results["fig"] is None and results["fig_path"] is None


def test_run_with_names_the_backend(fake, project):
    cluster = fake.on("cluster:lab")
    results = run(trainable=add, param_space={"a": 1, "b": 2}, run_with="cluster:lab")
    assert results["run_with"] == "cluster:lab" and cluster.target == RunTarget("cluster", "lab")
    assert [call.method for call in cluster.calls] == ["run"] and fake.local.calls == []
    assert results["experiment_path"].startswith(cluster.results_root("tester"))


def test_the_same_full_name_from_another_folder_and_name_is_refused_before_running(fake, project):
    (project / "b").mkdir()
    os.chdir(project / "b")
    run(experiment_name="c", trainable=add, param_space={"a": 1, "b": 2})
    os.chdir(project)
    assert full_experiment_name("b_c", cwd=str(project)) == full_experiment_name(
        "c", cwd=str(project / "b")
    )
    with pytest.raises(NameCollisionError, match="experiment_name='b_c-2'"):
        run(experiment_name="b_c", trainable=add, param_space={"a": 1, "b": 2})
    assert len(fake.local.calls) == 1


def test_restore_continues_and_keeps_what_finished(fake, project):
    fixed = project / "fixed"

    def flaky(config):
        if config["a"] == 2 and not fixed.exists():
            raise ValueError(f"boom a={config['a']}")
        return add(config)

    first = run(trainable=flaky, param_space=grid_ab())
    df = first["df"]
    assert sorted(df[df["status"] == "ERROR"]["config/a"]) == [2, 2]
    assert df[df["status"] == "ERROR"]["error"].str.contains("ValueError: boom a=2").all()
    assert df[df["status"] == "TERMINATED"]["error"].isna().all()
    assert first["outcome"].errored_trials == 2
    fixed.touch()
    second = run(trainable=flaky, param_space=grid_ab(), run_choice="restore")
    assert [call.run_choice for call in fake.local.calls] == ["run", "restore"]
    assert second["run_choice"] == "restore" and second["outcome"].already_done == 4
    assert set(second["df"]["status"]) == {"TERMINATED"}


def test_restore_with_nothing_stored_runs_nothing(fake, project):
    with pytest.raises(ExperimentNotFoundError, match="run_choice='run'"):
        run(trainable=add, param_space=grid_ab(), run_choice="restore")
    assert fake.local.calls == []


def test_restore_says_which_values_of_a_changed_param_space_it_ignores(fake, project):
    space = {"a": tune.grid_search([1, 2]), "b": 10}
    run(trainable=add, param_space=space)
    with pytest.warns(RadasWarning, match="ignored: .*b"):
        run(trainable=add, param_space={**space, "b": 99}, run_choice="restore")
    assert [call.run_choice for call in fake.local.calls] == ["run", "restore"]


def test_run_again_moves_the_earlier_results_aside(fake, project, capsys):
    first = run(trainable=add, param_space={"a": 1, "b": 2})
    second = run(trainable=add, param_space={"a": 5, "b": 5})
    assert "earlier results moved to" in capsys.readouterr().out
    assert second["outcome"].archived_to is not None
    assert radas.Tuner(second["outcome"].archived_to).get_dataframe()["score"].tolist() == [3]
    assert radas.Tuner(first["experiment_path"]).get_dataframe()["score"].tolist() == [10]


@pytest.mark.parametrize(("choice", "stop"), [("attach", False), ("stop_attach", True)])
def test_attach_and_stop_attach_follow_without_running(fake, project, choice, stop):
    cluster = fake.on("cluster:lab")
    run(trainable=add, param_space={"a": 1, "b": 2}, run_with="cluster:lab")
    results = run(trainable=None, run_with="cluster:lab", run_choice=choice)
    assert [(call.method, call.stop) for call in cluster.calls] == [("run", None), ("attach", stop)]
    assert results["run_choice"] == choice and results["df"]["score"].tolist() == [3]


def test_without_run_choice_and_terminal_nothing_runs(fake, project, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(RunChoiceRequiredError, match="nothing is stored under that name yet"):
        run(trainable=add, param_space=grid_ab(), run_choice=None)
    run(trainable=add, param_space=grid_ab())
    with pytest.raises(RunChoiceRequiredError, match=r"6 of 6 trials done"):
        run(trainable=add, param_space=grid_ab(), run_choice=None)
    assert len(fake.local.calls) == 1


def test_yes_runs_a_new_experiment_without_asking(fake, project, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    results = run(trainable=add, param_space={"a": 1, "b": 2}, run_choice=None, yes=True)
    assert results["run_choice"] == "run" and fake.local.calls[0].run_choice == "run"


def test_on_a_terminal_the_stored_experiment_asks_which_choice(fake, project, monkeypatch):
    run(trainable=add, param_space={"a": 1, "b": 2})
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter(["nonsense", "restore"])
    prompts = []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or next(answers))
    results = run(trainable=add, param_space={"a": 1, "b": 2}, run_choice=None)
    assert results["run_choice"] == "restore" and len(prompts) == 2
    assert "1 of 1 trials done" in prompts[0]
    monkeypatch.setattr("builtins.input", lambda prompt: "q")
    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        run(trainable=add, param_space={"a": 1, "b": 2}, run_choice=None)
    assert [call.run_choice for call in fake.local.calls] == ["run", "restore"]


def test_dos_run_only_returns_the_tuner_without_analysis(fake, project):
    results = run(trainable=add, param_space={"a": 1, "b": 1}, dos=["run"], plot_fn=sns.barplot)
    assert results["df"] is None and results["fig"] is None
    assert results["tuner"].get_dataframe()["score"].tolist() == [2]


def test_dos_analyze_only_reads_and_runs_nothing(fake, project):
    with pytest.raises(ExperimentNotFoundError, match="No stored results"):
        run(dos=["analyze"], run_choice=None)
    run(trainable=add, param_space=grid_ab(), dos=["run"])
    results = run(dos=["analyze"], run_choice=None)
    assert len(fake.local.calls) == 1 and len(results["df"]) == 6
    assert results["run_choice"] is None and results["outcome"] is None


def test_analysis_hooks_are_called_in_order_with_their_arguments(fake, project):
    seen = []

    def to_df(tuner):
        seen.append(("tuner_to_df_fn", type(tuner).__name__))
        return tuner.get_history_dataframe()

    def process(df, *, factor):
        seen.append(("process_df_fn", factor))
        return df.assign(scaled=df["score"] * factor)

    def process_g(plotted):
        seen.append(("process_g_fn", type(plotted).__name__))

    results = run(
        trainable=add,
        param_space=grid_ab(),
        tuner_to_df_fn=to_df,
        process_df_fn=process,
        process_df_fn_kwargs={"factor": 10},
        rename_mapping={"scaled": "score x 10"},
        process_sns_fn=lambda: seen.append(("process_sns_fn", None)),
        plot_fn=sns.barplot,
        plot_kwargs=dict(x="config/a", y="score x 10"),
        process_g_fn=process_g,
        plot_format="svg",
    )
    assert [name for name, _ in seen] == [
        "tuner_to_df_fn",
        "process_df_fn",
        "process_sns_fn",
        "process_g_fn",
    ]
    assert seen[0][1] == "Tuner" and seen[1][1] == 10 and seen[3][1] == "Axes"
    df = results["df"]
    assert (df["score x 10"] == 10 * (df["config/a"] + df["config/b"])).all()
    assert Path(results["fig_path"]).suffix == ".svg" and Path(results["fig_path"]).stat().st_size
    plt.close("all")


def test_the_typed_result_reads_as_the_dict_it_was(fake, project):
    results = run(
        trainable=add,
        param_space=grid_ab(),
        plot_fn=sns.barplot,
        plot_kwargs=dict(x="config/a", y="score"),
    )
    assert isinstance(results, radas.ExperimentResult)
    keys = ["df", "fig", "plot", "fig_path", "tuner", "experiment_path", "full_name"]
    keys += ["run_with", "run_choice", "outcome", "partial"]
    assert list(results) == keys and list(dict(results)) == keys and len(results) == 11
    assert results["df"] is results.df and results.get("tuner") is results.tuner
    assert results["plot"] is results.plot is not None and results.fig is not None
    assert (results.run_with, results.target) == ("local", RunTarget("local"))
    assert {**results, "fig_path": "x"}["fig_path"] == "x" and results.get("nope") is None
    with pytest.raises(KeyError):
        results["target"]  # the parsed run target is an attribute; the dict view keeps run_with
    assert "plot" in run(trainable=add, param_space=grid_ab())  # None without plot_fn
    plt.close("all")


# Moved from test_experiment.py (it tests what run_experiment decides, not what Ray runs).
def test_plot_failure_keeps_results_and_analyze_replots(fake, project):
    executions = project / "executions"
    executions.mkdir()
    counter = iter(range(1000))

    def counted(config):
        (executions / str(next(counter))).touch()
        return add(config)

    def broken_plot(data, **kwargs):
        raise RuntimeError("no such column")

    with pytest.raises(AnalysisError) as info:
        run(
            experiment_name="plotfail",
            trainable=counted,
            param_space=grid_ab(),
            plot_fn=broken_plot,
        )
    message = str(info.value)
    assert "Plotting failed" in message and "no such column" in message
    assert "dos=['analyze']" in message
    assert len(info.value.results["df"]) == 6
    stored = info.value.results["experiment_path"]

    replot = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="plotfail",
        trainable=counted,
        dos=["analyze"],
        plot_fn=sns.barplot,
        plot_kwargs=dict(x="config/a", y="score"),
        plot_format="png",
    )
    assert replot["experiment_path"] == stored
    assert replot["df"]["score"].tolist() == info.value.results["df"]["score"].tolist()
    assert Path(replot["fig_path"]).stat().st_size > 1000
    assert len(list(executions.iterdir())) == 6  # analyze ran nothing
    plt.close("all")


def test_a_failing_dataframe_hook_is_an_analysis_error_with_the_results(fake, project):
    with pytest.raises(AnalysisError, match="Building the DataFrame failed") as info:
        run(trainable=add, param_space={"a": 1, "b": 2}, tuner_to_df_fn=lambda tuner: 1 / 0)
    assert info.value.results["df"] is None
    assert info.value.results["tuner"].get_dataframe()["score"].tolist() == [3]


def test_errored_trials_are_reported_and_shown(fake, project, capsys):
    def half_broken(config):
        if config["a"] == 1:
            raise ValueError("bad a")
        return add(config)

    results = run(trainable=half_broken, param_space=grid_ab())
    out = "".join(capsys.readouterr())  # the warning on stderr
    assert "2 trial(s) errored" in out and "run_choice='restore' re-runs only them" in out
    assert results["outcome"].errored_trials == 2
    errored = results["df"][results["df"]["status"] == "ERROR"]
    assert set(errored["error"]) == {"ValueError: bad a"}


def test_trials_still_out_of_memory_are_an_error_naming_them(fake, project):
    def hungry(config):
        if config["a"] == 3:
            raise MemoryError
        return add(config)

    with pytest.raises(TrialsOutOfMemoryError, match="cpu_per_trial=2") as info:
        run(trainable=hungry, param_space=grid_ab(), cpu_per_trial=2)
    assert len(info.value.trial_ids) == 2 and "dos=['analyze']" in str(info.value)
    assert set(run(dos=["analyze"], run_choice=None)["df"]["status"]) == {"TERMINATED", "ERROR"}


def test_an_interrupted_local_run_raises_keyboard_interrupt(fake, project, capsys):
    fake.on("local", stop_after=2)
    with pytest.raises(KeyboardInterrupt, match="flow was interrupted"):
        run(trainable=add, param_space=grid_ab())
    assert "interrupted with 4 trial(s) unfinished" in capsys.readouterr().err


def test_an_interrupted_cluster_job_is_analyzed_as_it_stands(fake, project):
    fake.on("cluster:lab", stop_after=2)
    results = run(trainable=add, param_space=grid_ab(), run_with="cluster:lab")
    assert results["outcome"].interrupted and results["outcome"].finished_trials == 2
    assert sorted(results["df"]["status"]) == ["PENDING"] * 4 + ["TERMINATED"] * 2


def test_secrets_leave_the_param_space_for_the_trials_environment(fake, project):
    run(
        trainable=add,
        param_space={"a": 1, "b": 2, "wandb": {"api_key": "s3cret-value"}},
        runtime_env={"env_vars": {"X": "1"}},
    )
    (call,) = fake.local.calls
    assert "s3cret-value" not in repr(call.spec.param_space)
    assert "s3cret-value" in call.secrets.values()
    assert call.runtime_env == {"env_vars": {"X": "1"}}
