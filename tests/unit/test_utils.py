"""SPEC §7 utilities on real values (plus their docstring examples)."""

from __future__ import annotations

import doctest
import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import radas
from radas import utils
from radas.errors import InvalidArgumentError, RadasWarning


def test_docstring_examples_hold():
    failures, tried = doctest.testmod(utils, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 7 and failures == 0


def test_set_seed_makes_random_and_numpy_repeatable():
    radas.set_seed(123)
    first = (random.random(), np.random.rand(3).tolist())
    radas.set_seed(123)
    assert (random.random(), np.random.rand(3).tolist()) == first
    radas.set_seed(124)
    assert random.random() != first[0]
    with pytest.raises(InvalidArgumentError):
        radas.set_seed(-1)


def test_set_seed_leaves_the_environment_alone(monkeypatch):
    # PYTHONHASHSEED only acts when a Python process starts: setting it here seeded nothing
    # in this process and leaked into every subprocess and Ray worker started afterwards.
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    before = dict(os.environ)
    radas.set_seed(5)
    assert dict(os.environ) == before


def test_config_seed_uses_the_seed_key_or_a_stable_hash():
    assert radas.config_seed({"seed": 42, "lr": 0.1}) == 42
    a = radas.config_seed({"lr": 0.1, "width": 8})
    b = radas.config_seed({"width": 8, "lr": 0.1})
    c = radas.config_seed({"lr": 0.2, "width": 8})
    assert a == b != c
    assert radas.config_seed({"s": 5}, key="s") == 5


def test_get_current_user_name(monkeypatch):
    # the whole rule (RADAS_USER, the config's user key, the login name): test_default_user.py
    monkeypatch.setenv("RADAS_USER", "jane.doe-ml")
    assert radas.get_current_user_name() == "jane.doe-ml"
    monkeypatch.delenv("RADAS_USER")
    name = radas.get_current_user_name()
    assert name == radas.core.naming.validate_user_name(name)


def test_print_helpers(capsys):
    radas.print_info("hello", 3)
    radas.print_warning("careful")
    radas.print_error("broken")
    captured = capsys.readouterr()
    assert captured.out == "[radas] hello 3\n"
    assert captured.err == "[radas] warning: careful\n[radas] error: broken\n"


def test_radas_warnings_obey_the_filters_and_show_as_radas_lines(capsys):
    from radas.core.console import collected_warnings, warn

    with pytest.raises(RadasWarning, match="refused"):  # the suite's filter: error
        warn("refused")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RadasWarning)
        warn("ignored")  # filtered out: no line either
    assert capsys.readouterr().err == ""
    with pytest.warns(RadasWarning, match="^recorded$"):
        warn("recorded")  # recorded, and printed
    assert capsys.readouterr().err == "[radas] warning: recorded\n"
    with collected_warnings() as collected:
        warn("for the caller")
    assert collected == ["for the caller"] and capsys.readouterr().err == ""


THREADS_WARNING = """
import sys, threading, warnings
from radas.core.console import warn
from radas.errors import RadasWarning

display = (warnings.showwarning, warnings._showwarnmsg_impl)
sys.setswitchinterval(1e-6)  # threads switch often, as under load
warnings.simplefilter("ignore", RadasWarning)
threads = [threading.Thread(target=lambda: [warn("busy") for _ in range(3000)]) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print((warnings.showwarning, warnings._showwarnmsg_impl) == display)
"""


@pytest.mark.timing
def test_radas_warnings_from_many_threads_leave_the_warnings_machinery_as_it_was():
    # A local sweep runs in a thread of its own and warns from there. In a fresh interpreter:
    # pytest's own recording of warnings hides the race this is about.
    done = subprocess.run(
        [sys.executable, "-c", THREADS_WARNING], capture_output=True, text=True, check=True
    )
    assert done.stdout == "True\n", done.stderr


def test_a_radas_warning_names_the_callers_line():
    from radas.core.console import warn

    def library_function():
        warn("look here", stacklevel=2)

    with pytest.warns(RadasWarning) as warned:
        calling_line = sys._getframe().f_lineno + 1
        library_function()
    assert (warned[0].filename, warned[0].lineno) == (__file__, calling_line)


def test_explode_several_list_columns_with_position():
    df = pd.DataFrame(
        {
            "trial": ["a", "b"],
            "loss": [[3.0, 2.0, 1.0], [5.0, 4.0]],
            "acc": [[0.1, 0.2, 0.3], [0.5, 0.6]],
        }
    )
    out = utils.explode(df, ["loss", "acc"], index_name="epoch")
    assert out["trial"].tolist() == ["a", "a", "a", "b", "b"]
    assert out["epoch"].tolist() == [0, 1, 2, 0, 1]
    assert out["loss"].tolist() == [3.0, 2.0, 1.0, 5.0, 4.0]
    assert out["acc"].dtype.kind == "f"
    with pytest.raises(InvalidArgumentError, match="not in the DataFrame"):
        utils.explode(df, "nope")


def test_explode_tensor_three_dims_and_torch_like_objects():
    class FakeTensor:  # torch is not installed here; anything with .detach() is treated alike
        def __init__(self, array):
            self.array = array

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.array

    cube = np.arange(8).reshape(2, 2, 2)
    df = pd.DataFrame({"id": [7], "t": [FakeTensor(cube)]})
    out = utils.explode_tensor(df, "t")
    assert list(out.columns) == ["id", "t_dim0", "t_dim1", "t_dim2", "t"]
    assert len(out) == 8
    for _, row in out.iterrows():
        assert row["t"] == cube[row["t_dim0"], row["t_dim1"], row["t_dim2"]]
    with pytest.raises(InvalidArgumentError, match="dim_names"):
        utils.explode_tensor(df, "t", dim_names=["only-one"])


def test_explode_dict_of_tensors():
    df = pd.DataFrame(
        {"lr": [0.1, 0.2], "m": [{"acc": np.array([0.5, 0.6])}, {"acc": np.array([0.7, 0.9])}]}
    )
    out = utils.explode_dict_of_tensors(df, "m", dim_names=["epoch"])
    assert out.to_dict("list") == {
        "lr": [0.1, 0.1, 0.2, 0.2],
        "epoch": [0, 1, 0, 1],
        "acc": [0.5, 0.6, 0.7, 0.9],
    }


def test_reduce_by_config_cols_keeps_iterations():
    df = pd.DataFrame(
        {
            "config/lr": [0.1, 0.1, 0.1, 0.1, 0.2, 0.2],
            "config/seed": [0, 0, 1, 1, 0, 0],
            "training_iteration": [1, 2, 1, 2, 1, 2],
            "loss": [4.0, 2.0, 6.0, 4.0, 1.0, 0.5],
            "trial_id": ["a", "a", "b", "b", "c", "c"],
        }
    )
    over_seeds = utils.reduce_by_reduced_col(df, "config/seed")
    assert over_seeds.to_dict("list") == {
        "config/lr": [0.1, 0.1, 0.2, 0.2],
        "training_iteration": [1, 2, 1, 2],
        "loss": [5.0, 3.0, 1.0, 0.5],
    }
    by_lr = utils.reduce_by_config_cols(df, ["config/lr"], agg="max", keep=())
    # without keep=, training_iteration is just another numeric column and is aggregated too
    assert by_lr.to_dict("list") == {
        "config/lr": [0.1, 0.2],
        "training_iteration": [2, 2],
        "loss": [6.0, 1.0],
    }
