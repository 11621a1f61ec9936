"""``radas report EXPERIMENT``: write an experiment's report page (``report_page``).

The experiment is named as ``radas analyze`` names it: its experiment_name with ``--run-with``
(where it ran), ``--dir`` (the folder it was run from) and ``--user``, or the URI of a stored
experiment (``s3://...``). Registered by ``radas.cli.build_parser`` (``add_command``); the
command's parser and handler live here, next to what they run.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from radas.core.spec import RunTarget
    from radas.errors import ExperimentNotFoundError
    from radas.storage.store import Location

EXAMPLES = [
    ("radas report lr-sweep", "report.html in the experiment's folder"),
    ("radas report lr-sweep -o lr.html", "a file of your choice"),
    ("radas report lr-sweep --run-with cluster:dev", "stored on cluster dev"),
    ("radas report s3://lab/results/alice/_home_alice_proj_lr -o lr.html", ""),
]
SUMMARY = "write an experiment's report page: one HTML file, readable offline"
USER_HELP = (
    "whose experiments (default: $RADAS_USER, else user in the radas config, else your login name)"
)


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """``radas report`` on the radas command's sub-commands (what ``add_subparsers`` returns)."""
    lines = ["examples:"]
    for example, what in EXAMPLES:
        lines.append(f"  {example:<46} {what}".rstrip() if what else f"  {example}")
    report = commands.add_parser(
        "report",
        help=SUMMARY,
        description=(
            f"{SUMMARY[0].upper()}{SUMMARY[1:]}.\n\nIts status, a sortable table of the trials, "
            "the saved figures, each trial's learning curve and\nthe errored trials' "
            "tracebacks. Nothing is re-run; a running experiment shows as far as it got."
        ),
        epilog="\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "experiment",
        metavar="EXPERIMENT",
        help="the experiment_name it was run with, or the URI of a stored experiment",
    )
    report.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the page's file (default: report.html in the experiment's folder when this user "
        "can write there, else report-NAME.html in the current folder)",
    )
    report.add_argument(
        "--run-with", default="local", metavar="WHERE", help="'local' (default) or 'cluster:<name>'"
    )
    report.add_argument(
        "--dir", default=".", help="the directory it was run from (default: this one)"
    )
    report.add_argument("--user", metavar="NAME", help=USER_HELP)
    report.set_defaults(handler=run)
    return report


def run(args: argparse.Namespace) -> int:
    """Write the page and print where it went."""
    from radas.core.args import output_file
    from radas.storage import store
    from radas.views.report_page import write_report

    output = args.output
    if output is not None and not store.is_uri(output):
        output = output_file(output, flag="-o", example="report.html")
    if store.is_uri(args.experiment):
        written = write_report(args.experiment, output)
    else:
        written = _report_of_name(args, output)
    print(f"report: {written}")
    return 0


def _report_of_name(args: argparse.Namespace, output: str | None) -> str:
    """The page of the experiment named ``args.experiment``, run from ``--dir`` with
    ``--run-with``: looked up where ``run_experiment(..., dos=["analyze"])`` would look."""
    from radas.backends import get_backend
    from radas.core.args import run_directory
    from radas.core.naming import default_user, full_experiment_name, validate_user_name
    from radas.results import tune_state
    from radas.results.listing import where_else
    from radas.storage import store
    from radas.views.report_page import write_report

    cwd = run_directory(args.dir)
    user = validate_user_name(args.user) if args.user is not None else default_user().name
    full_name = full_experiment_name(args.experiment, cwd=cwd)
    backend = get_backend(args.run_with)
    with backend.store_scope():  # a cluster's results: read through its own S3 endpoint
        path = store.location(backend.results_root(user)) / full_name
        if not tune_state.has_stored_experiment(path):
            elsewhere = where_else(args.experiment, user_name=user, target=backend.target, cwd=cwd)
            raise _not_stored(args.experiment, path, cwd, user, backend.target, elsewhere)
        probe = backend.running_probe(user, full_name)
        return write_report(path, output, job_running=probe)


def _not_stored(
    name: str, path: Location, cwd: str, user: str, target: RunTarget, elsewhere: str
) -> ExperimentNotFoundError:
    from radas.core.naming import listing_hint
    from radas.errors import ExperimentNotFoundError

    return ExperimentNotFoundError(
        f"No stored experiment {name!r} of {user!r} run from {cwd}: radas looked at {path} "
        f"and found nothing there.{elsewhere} {listing_hint(target, user)}; give --dir (the "
        "folder it was run from), --run-with or --user to name another."
    )
