"""The one rule for the default user (``radas.core.naming.default_user``): ``RADAS_USER``, else
the ``user`` key at the top of the radas config file, else the login name; a bad value is an
error that names where it came from. Each test has its own RADAS_HOME and RADAS_CONFIG; the
login name comes from ``LOGNAME``, which ``getpass.getuser`` reads first."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import radas
from radas import cli
from radas.core.naming import DefaultUser, default_user, user_option
from radas.errors import ClusterConfigError, InvalidNameError


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty RADAS_HOME and a config file path (not written yet); no RADAS_USER; the
    login name is ``lee``."""
    monkeypatch.setenv("RADAS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RADAS_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("RADAS_USER", raising=False)
    monkeypatch.setenv("LOGNAME", "lee")
    return tmp_path / "config.toml"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_radas_user_then_the_config_key_then_the_login_name(config, monkeypatch):
    assert default_user() == DefaultUser("lee", "login name")
    config.write_text('user = "carol"\n\n[smtp]\nuser = "mail-login"\n')
    assert default_user() == DefaultUser("carol", f"user in {config}")
    monkeypatch.setenv("RADAS_USER", "dave")
    assert default_user() == DefaultUser("dave", "RADAS_USER")
    assert radas.get_current_user_name() == "dave"


def test_a_user_key_inside_a_table_is_not_the_default_user(config):
    config.write_text('[smtp]\nhost = "127.0.0.1"\nuser = "mail-login"\n')
    assert default_user() == DefaultUser("lee", "login name")


def test_a_login_name_radas_does_not_allow_is_made_valid(config, monkeypatch):
    monkeypatch.setenv("LOGNAME", "Jane Doe/ml")
    assert radas.get_current_user_name() == "Jane_Doe_ml"


@pytest.mark.parametrize(
    ("value", "says"),
    [("", "it is empty"), ("Jane Doe", "not a valid"), ("a/b", "not a valid"), ("..", "")],
)
def test_a_bad_radas_user_is_an_error_naming_it(config, monkeypatch, value, says):
    monkeypatch.setenv("RADAS_USER", value)
    with pytest.raises(InvalidNameError) as error:
        radas.get_current_user_name()
    message = str(error.value)
    assert f"comes from RADAS_USER={value!r}" in message and says in message
    assert "unset RADAS_USER" in message and "--user NAME" in message


@pytest.mark.parametrize("line", ['user = ""', 'user = "x/y"', "user = 5", 'user = "."'])
def test_a_bad_user_key_is_an_error_naming_the_file(config, line):
    config.write_text(f"{line}\n")
    with pytest.raises(InvalidNameError) as error:
        default_user()
    message = str(error.value)
    assert f"at the top of the radas config {config}" in message
    assert 'user = "alice" above the first [table]' in message


def test_a_config_that_is_not_toml_says_so(config):
    config.write_text("user = \n")
    with pytest.raises(
        ClusterConfigError, match=re.escape(f"Cannot parse the radas config {config}")
    ):
        default_user()


def test_user_option_is_left_out_only_for_the_default_user(config, monkeypatch):
    assert user_option("lee") == ""
    assert user_option("bob") == " --user bob"
    monkeypatch.setenv("RADAS_USER", "not valid")  # the default cannot be told: always named
    assert user_option("lee") == " --user lee"


def test_ls_says_whose_experiments_it_lists_and_why(config, monkeypatch):
    code, out, _ = run_cli("ls")
    assert code == 0
    assert out.splitlines()[0].startswith("Experiments of 'lee' (login name) stored on this")
    config.write_text('user = "carol"\n')
    assert run_cli("ls")[1].startswith(f"Experiments of 'carol' (user in {config}) stored")
    monkeypatch.setenv("RADAS_USER", "dave")
    first = run_cli("ls")[1].splitlines()[0]
    home = config.parent / "home"
    assert first == (
        f"Experiments of 'dave' (RADAS_USER) stored on this machine "
        f"({home / 'ray-results' / 'dave'}): 0"
    )
    assert run_cli("ls", "--user", "erin")[1].startswith("Experiments of 'erin' (--user) stored")
    code, out, _ = run_cli("ls", "--json")
    assert code == 0 and '"user_name": "dave"' in out and '"user_from": "RADAS_USER"' in out


def test_a_bad_default_user_fails_the_command_but_not_its_help_nor_an_explicit_user(
    config, monkeypatch
):
    monkeypatch.setenv("RADAS_USER", "a b")
    code, _, err = run_cli("ls")
    assert code == 1 and err.startswith(
        "radas: error: The default radas user comes from RADAS_USER"
    )
    assert run_cli("ls", "--user", "ok")[0] == 0
    with pytest.raises(SystemExit) as shown:
        run_cli("ls", "--help")
    assert shown.value.code == 0
    code, _, err = run_cli("ls", "--user", "a/b")
    assert code == 1 and "user_name='a/b' is not valid" in err
