"""Bad input to run_experiment: a RadasError that says what to do, and nothing written."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import radas
from radas.errors import (
    ExperimentNotFoundError,
    InvalidArgumentError,
    InvalidNameError,
    RadasError,
    RunChoiceRequiredError,
    UnknownArgumentError,
)
from support.trainables import add, grid_ab


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*")) if root.exists() else set()


def call(**overrides):
    kwargs = dict(
        user_name="alice",
        experiment_name="bad-input",
        trainable=add,
        param_space=grid_ab(),
        run_choice="run",
    )
    kwargs.update(overrides)
    return radas.run_experiment_sync(**kwargs)


@pytest.fixture(autouse=True)
def nothing_written(radas_home: Path, project: Path):
    # Only alice's folders and the project: trials of earlier tests' experiments may still
    # be finishing their own directories elsewhere under RADAS_HOME.
    watched = [radas_home / "ray-results" / "alice", radas_home / "figures" / "alice", project]
    before = [files_under(path) for path in watched]
    yield
    assert [files_under(path) for path in watched] == before


@pytest.mark.parametrize("user_name", ["", "a/b", "..", ".", "bob smith", "x" * 65, None, 3])
def test_bad_user_name(user_name):
    with pytest.raises(InvalidNameError, match="user_name") as info:
        call(user_name=user_name)
    assert "user_name='alice'" in str(info.value) or "dots" in str(info.value)


@pytest.mark.parametrize("experiment_name", ["", "   ", None])
def test_bad_experiment_name(experiment_name):
    with pytest.raises(InvalidNameError, match="experiment_name"):
        call(experiment_name=experiment_name)


def test_experiment_name_too_long():
    with pytest.raises(InvalidNameError, match="shorter experiment_name"):
        call(experiment_name="x" * 300)


@pytest.mark.parametrize("trainable", [None, 42, "trainable.py"])
def test_trainable_not_callable(trainable):
    with pytest.raises(InvalidArgumentError, match="trainable must be a function"):
        call(trainable=trainable)


@pytest.mark.parametrize("param_space", [[1, 2], "a=1", 5])
def test_param_space_not_a_dict(param_space):
    with pytest.raises(InvalidArgumentError, match="param_space must be a dict"):
        call(param_space=param_space)


def test_unknown_run_choice():
    with pytest.raises(InvalidArgumentError, match="run_choice='resume'") as info:
        call(run_choice="resume")
    for choice in ("run", "restore", "attach", "stop_attach"):
        assert repr(choice) in str(info.value)


@pytest.mark.parametrize("dos", [["train"], "run", [], ["run", "plot"]])
def test_bad_dos(dos):
    with pytest.raises(InvalidArgumentError, match="dos"):
        call(dos=dos)


@pytest.mark.parametrize("run_with", ["cluster", "cluster:", "remote:gpu", "Local", "cluster:a b"])
def test_bad_run_with(run_with):
    with pytest.raises(InvalidArgumentError, match="cluster:<name>"):
        call(run_with=run_with)


def test_misspelled_keyword_lists_valid_names():
    with pytest.raises(UnknownArgumentError) as info:
        call(plot_kwarg={"x": "a"})
    message = str(info.value)
    assert "'plot_kwarg' (did you mean 'plot_kwargs'?)" in message
    assert "Valid keywords:" in message and "tuner_init_kwargs" in message
    assert isinstance(info.value, TypeError) and isinstance(info.value, RadasError)


def test_positional_arguments_refused():
    with pytest.raises(UnknownArgumentError, match="keyword arguments only"):
        radas.run_experiment_sync("alice", "exp")


def test_restore_with_nothing_stored():
    with pytest.raises(ExperimentNotFoundError, match="run_choice='run'"):
        call(run_choice="restore")


def test_analyze_with_nothing_stored():
    with pytest.raises(ExperimentNotFoundError, match="No stored results"):
        call(dos=["analyze"], run_choice=None, param_space=None)


def test_run_choice_required_without_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(RunChoiceRequiredError) as info:
        call(run_choice=None)
    for choice in ("'run'", "'restore'", "'attach'", "'stop_attach'"):
        assert choice in str(info.value)


def test_attach_on_local_is_explained():
    with pytest.raises(radas.NotSupportedError, match="restore"):
        call(run_choice="attach")


@pytest.mark.parametrize(
    ("tuner_init_kwargs", "match"),
    [
        ("tune_config", "must be a dict"),
        ({"param_space": {}}, "pass param_space=... to run_experiment"),
        ({"search_alg": None}, "unknown key 'search_alg'"),
        ({"tune_config": {"num_sample": 3}}, "Valid keys"),
        ({"tune_config": 3}, "TuneConfig"),
    ],
)
def test_bad_tuner_init_kwargs(tuner_init_kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(tuner_init_kwargs=tuner_init_kwargs)


@pytest.mark.parametrize("field", ["name", "storage_path"])
def test_radas_owns_run_config_name_and_storage(field):
    from ray import tune

    with pytest.raises(InvalidArgumentError, match=f"RunConfig\\({field}=...\\) is set by radas"):
        call(tuner_init_kwargs={"run_config": tune.RunConfig(**{field: "/tmp/elsewhere"})})


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"cpu_per_trial": 0}, "cpu_per_trial"),
        ({"cpu_per_trial": "2"}, "cpu_per_trial"),
        ({"runtime_env": {"working_dir": "."}}, "working_dir"),
        ({"runtime_env": ["pip"]}, "runtime_env must be a dict"),
        ({"plot_fn": "lineplot"}, "plot_fn must be callable"),
        ({"plot_kwargs": [("x", "a")]}, "plot_kwargs must be a dict"),
        ({"plot_format": "jpeg"}, "plot_format='jpeg'"),
        ({"plot_path": "fig.bmp"}, "suffix"),
        # issue 23: each of these was a raw error of Ray, matplotlib or copy, or went unnoticed
        ({"cpu_per_trial": 1e-9}, r"below 0\.0001, the smallest share"),
        ({"matplotlib_rcParams_update": {"bogus.key": 1}}, "'bogus.key' is not a matplotlib"),
        ({"matplotlib_rcParams_update": {"font.sise": 1}}, "did you mean 'font.size'"),
        ({"matplotlib_rcParams_update": {"font.size": "huge"}}, r"\['font.size'\] = 'huge'"),
        ({"param_space": {"f": threading.Lock()}}, r"param_space\['f'\] = .* cannot be copied"),
        ({"param_space": {"lr": {"grid_search": []}}}, r"tune.grid_search\(\[\]\)"),
        ({"param_space": {"a": {"b": {"grid_search": []}}}}, r"param_space\['a'\]\['b'\]"),
        (
            {"param_space": {"a/b": 1, "a": {"b": 2}}},
            r"param_space\['a'\]\['b'\] and param_space\['a/b'\] both become the column "
            "'config/a/b'",
        ),
        ({"yes": "no"}, "yes must be bool, got str"),
        ({"dos": ["analyze"], "run_choice": "bogus"}, "run_choice='bogus' is not valid"),
    ],
)
def test_other_bad_arguments(overrides, match):
    with pytest.raises(InvalidArgumentError, match=match):
        call(**overrides)
