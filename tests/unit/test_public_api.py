"""The public API: one flat namespace with a sorted, honest __all__."""

from __future__ import annotations

import inspect

import radas
from radas.experiment import run_experiment


def test_all_is_sorted_and_complete():
    assert radas.__all__ == sorted(radas.__all__)
    for name in radas.__all__:
        assert hasattr(radas, name), name
    public = {
        name
        for name, value in vars(radas).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(radas.__all__)


def test_run_experiment_is_keyword_only_with_the_seed_names():
    params = inspect.signature(run_experiment).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    seed_names = {
        "user_name",
        "experiment_name",
        "trainable",
        "param_space",
        "run_with",
        "run_choice",
        "dos",
        "cpu_per_trial",
        "runtime_env",
        "tuner_init_kwargs",
        "tuner_to_df_fn",
        "process_df_fn",
        "process_df_fn_kwargs",
        "rename_mapping",
        "matplotlib_rcParams_update",
        "process_sns_fn",
        "plot_fn",
        "plot_kwargs",
        "process_g_fn",
        "plot_format",
        "yes",
        "email_notification_to_address",
    }
    assert seed_names <= set(params)
    assert inspect.signature(radas.run_experiment_sync).parameters.keys() == params.keys()


def test_errors_form_one_tree():
    for name in radas.__all__:
        value = getattr(radas, name)
        if (
            inspect.isclass(value)
            and issubclass(value, Exception)
            and not issubclass(value, Warning)
        ):
            assert issubclass(value, radas.RadasError), name
