"""How the commands that show one stored experiment name it (``radas analyze``, ``watch``,
``report``): EXPERIMENT, its experiment_name (or where it is stored), with ``--run-with``
(where it ran), ``--dir`` (the folder it was run from) and ``--user`` (whose), as
``run_experiment(..., dos=["analyze"])`` finds it."""

from __future__ import annotations

import argparse

USER_HELP = (
    "whose experiments (default: $RADAS_USER, else user in the radas config, else your login name)"
)


def add_experiment_arguments(
    parser: argparse.ArgumentParser, *, stored: str = "the path or URI of a stored experiment"
) -> None:
    """EXPERIMENT, ``--user``, ``--run-with`` and ``--dir`` on ``parser``; ``stored``: how
    else EXPERIMENT may name it."""
    parser.add_argument(
        "experiment",
        metavar="EXPERIMENT",
        help=f"the experiment_name it was run with, or {stored}",
    )
    parser.add_argument("--user", metavar="NAME", help=USER_HELP)
    parser.add_argument(
        "--run-with", default="local", metavar="WHERE", help="'local' (default) or 'cluster:<name>'"
    )
    parser.add_argument(
        "--dir", default=".", help="the directory it was run from (default: this one)"
    )


def user_of(args: argparse.Namespace) -> tuple[str, str]:
    """The user a command acts for, and where the name came from (``--user``, or the one
    rule of ``radas.core.naming.default_user``)."""
    from radas.core.naming import default_user, validate_user_name

    if args.user is not None:
        return validate_user_name(args.user), "--user"
    user = default_user()
    return user.name, user.source
