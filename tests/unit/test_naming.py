from __future__ import annotations

import pytest

from radas.core.naming import full_experiment_name, validate_user_name
from radas.errors import InvalidNameError


def test_full_name_is_cwd_and_name_with_non_alphanumerics_replaced():
    assert full_experiment_name("my-exp", cwd="/home/u/proj") == "_home_u_proj_my_exp"
    assert full_experiment_name("lr sweep/v2.1", cwd="/a") == "_a_lr_sweep_v2_1"
    assert full_experiment_name("x", cwd="/home/ü") == "_home___x"


def test_full_name_defaults_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = "".join(c if c.isascii() and c.isalnum() else "_" for c in f"{tmp_path}/e")
    assert full_experiment_name("e") == expected


@pytest.mark.parametrize("name", ["alice", "a.b-c_d", "A1", "x" * 64])
def test_valid_user_names(name):
    assert validate_user_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "..", "a b", "x" * 65, "é"])
def test_invalid_user_names(name):
    with pytest.raises(InvalidNameError):
        validate_user_name(name)
