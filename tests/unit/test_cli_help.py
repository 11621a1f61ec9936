"""The radas command's help: every argument explained, examples under every command, no RST
markup (argparse prints help texts as they are), ``radas cluster`` alone shows its actions,
``radas --version``. The parser is walked, so a new argument without help fails here."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

import radas
from radas import cli


def commands(
    parser: argparse.ArgumentParser, path: str = "radas"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every sub-command's parser under it, with the command that shows it."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, f"{path} {name}")
    return found


def test_every_argument_of_every_command_has_help():
    missing = []
    for path, parser in commands(cli.build_parser()):
        for action in parser._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path}: {action.option_strings or action.dest}")
            if isinstance(action, argparse._SubParsersAction):
                missing += [
                    f"{path} {choice.dest}" for choice in action._choices_actions if not choice.help
                ]
    assert not missing, missing


def test_help_texts_have_examples_and_no_rst_markup():
    walked = commands(cli.build_parser())
    assert {path for path, _ in walked} == {
        "radas",
        "radas clusters",
        "radas cluster",
        "radas cluster up",
        "radas cluster down",
        "radas ls",
        "radas stop",
        "radas logs",
        "radas analyze",
        "radas report",
        "radas watch",
    }
    for path, parser in walked:
        shown = parser.format_help()
        assert "``" not in shown, path
        assert "\nexamples:\n  radas " in shown, path
        # each example is the command itself (the top-level help shows every command)
        examples = shown.split("\nexamples:\n")[1].split("\n\n")[0].splitlines()
        if path != "radas":
            assert all(line.startswith(f"  {path} ") for line in examples), (path, examples)
        for action in parser._actions:
            assert "``" not in (action.help or ""), (path, action.dest)


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def test_cluster_alone_prints_its_actions_and_exits_2():
    code, shown = run_cli("cluster")
    assert code == 2  # as for `radas` alone: the command is incomplete
    assert shown.startswith("usage: radas cluster [-h] ACTION ...")
    assert "up        start a local cluster" in shown and "down      stop the local" in shown
    code, shown = run_cli()
    assert code == 2 and shown.startswith("usage: radas [-h] [--version] COMMAND ...")


def test_version_prints_the_package_version():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as shown:
        cli.main(["--version"])
    assert shown.value.code == 0
    assert out.getvalue() == f"radas {radas.__version__}\n"
