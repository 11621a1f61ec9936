"""``radas report EXPERIMENT``: write an experiment's report page (``report_page``).

The experiment is named and found as ``radas watch`` finds it (``experiment_args``,
``watched.find_experiment``): its experiment_name with ``--run-with``, ``--dir`` and ``--user``,
or the path or URI of a stored experiment (``s3://...``). Registered by
``radas.cli.build_parser`` (``add_command``); the command's parser and handler live here,
next to what they run.
"""

from __future__ import annotations

import argparse

from radas.views.experiment_args import add_experiment_arguments, user_of

EXAMPLES = [
    ("radas report lr-sweep", "report.html in the experiment's folder"),
    ("radas report lr-sweep -o lr.html", "a file of your choice"),
    ("radas report lr-sweep --run-with cluster:dev", "stored on cluster dev"),
    ("radas report s3://lab/results/alice/_home_alice_proj_lr -o lr.html", ""),
]
SUMMARY = "write an experiment's report page: one HTML file, readable offline"


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
    add_experiment_arguments(report)
    report.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the page's file (default: report.html in the experiment's folder when this user "
        "can write there, else report-NAME.html in the current folder)",
    )
    report.set_defaults(handler=run)
    return report


def run(args: argparse.Namespace) -> int:
    """Write the page and print where it went."""
    from radas.core.args import output_file
    from radas.storage import store
    from radas.views.report_page import write_report
    from radas.views.watched import find_experiment

    output = args.output
    if output is not None and not store.is_uri(output):
        output = output_file(output, flag="-o", example="report.html")
    user, _ = user_of(args)
    watched = find_experiment(
        args.experiment, run_with=args.run_with, directory=args.dir, user=user
    )
    with watched.reading():  # a cluster's results: read through its own S3 endpoint
        written = write_report(watched.path, output, job_running=watched.job_running)
    print(f"report: {written}")
    return 0
