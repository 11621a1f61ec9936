"""The radas command: clusters, experiments and re-plotting from a shell.

Each sub-command's help (radas COMMAND --help) shows examples; the help texts are plain text,
no markup, as argparse prints them as they are. A radas error prints its message and exits with
status 1; a command given without what it needs prints its help and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from radas.cli.common import Commands
from radas.cli.common import add_command as _add_command
from radas.cli.common import examples as _examples
from radas.cli.common import listing_hint as _listing_hint
from radas.errors import RadasError
from radas.views.experiment_args import USER_HELP
from radas.views.experiment_args import user_of as _user

if TYPE_CHECKING:
    import pandas as pd

    from radas.backends.client import ExperimentsClient

DESCRIPTION = (
    "radas runs Ray Tune sweeps by name, locally or as Ray Jobs on named clusters.\n"
    "This command lists, follows, stops and re-plots them, and starts local clusters."
)
USER_RULE = (
    'whose experiments: --user NAME, else $RADAS_USER, else user = "NAME" at the top of the\n'
    "radas config ($RADAS_CONFIG, else ~/.config/radas/config.toml), else your login name.\n"
    "radas logs JOB_ID and radas stop JOB_ID act for the user who submitted the job, read from\n"
    "the job itself.\n\n"
    "A radas error prints its message and exits with status 1."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except RadasError as err:
        print(f"radas: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    import radas

    parser = argparse.ArgumentParser(
        prog="radas",
        description=DESCRIPTION,
        epilog=f"{_examples('radas')}\n\n{USER_RULE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"radas {radas.__version__}",
        help="print the version of radas and exit",
    )
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", help="radas COMMAND --help: its arguments, examples"
    )
    _add_cluster_commands(commands)
    _add_ls(commands)
    _add_job_commands(commands)
    from radas.cli import analyze  # radas analyze

    analyze.add_command(commands)
    from radas.views import terminal  # radas watch

    terminal.add_command(commands)
    from radas.views import report_command  # radas report

    report_command.add_command(commands)
    return parser


def _show_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A handler for a command given without its action: print the command's own help (its
    actions, with examples), exit status 2 as for radas alone: the command is incomplete."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _add_cluster_commands(commands: Commands) -> None:
    """radas clusters, radas cluster up and radas cluster down."""
    clusters = _add_command(commands, "clusters", "availability of the configured clusters")
    clusters.set_defaults(handler=_clusters)

    cluster = _add_command(commands, "cluster", "start or stop a Ray cluster on this machine")
    cluster.set_defaults(handler=_show_help(cluster))
    actions = cluster.add_subparsers(
        title="actions", metavar="ACTION", help="radas cluster ACTION --help: its arguments"
    )
    up = _add_command(actions, "cluster up", "start a local cluster and register it under NAME")
    up.add_argument("name", metavar="NAME", help="the cluster's name, for run_with='cluster:NAME'")
    # counts parse as numbers ("2" or "2.0"); start_local_cluster refuses fractions clearly
    up.add_argument(
        "--num-cpus", type=float, metavar="N", help="CPUs of the head node (default: all)"
    )
    up.add_argument(
        "--num-gpus", type=float, default=0, metavar="N", help="GPUs of the head node (default: 0)"
    )
    up.add_argument(
        "--workers", type=int, default=0, metavar="K", help="extra worker nodes (default: 0)"
    )
    up.add_argument(
        "--worker-cpus",
        type=float,
        default=1,
        metavar="N",
        help="CPUs of each worker node (default: 1)",
    )
    up.set_defaults(handler=_cluster_up)
    down = _add_command(
        actions, "cluster down", "stop the local cluster NAME (its results are kept)"
    )
    down.add_argument("name", metavar="NAME", help="the name it was started with")
    down.add_argument(
        "--force",
        action="store_true",
        help="stop running jobs first (Tune saves their state; restore continues them)",
    )
    down.set_defaults(handler=_cluster_down)


def _add_ls(commands: Commands) -> None:
    ls = _add_command(
        commands,
        "ls",
        "list the stored experiments on this machine (or the jobs on a cluster) of one user",
    )
    ls.add_argument(
        "--cluster", metavar="NAME", help="list the user's jobs on this cluster from the config"
    )
    ls.add_argument("--user", metavar="NAME", help=USER_HELP)
    ls.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    ls.set_defaults(handler=_ls)


def _add_job_commands(commands: Commands) -> None:
    """radas stop and radas logs."""
    job_user_help = (
        "act only on a job of this user (default: the user who submitted the job, read from "
        "the job)"
    )
    stop = _add_command(
        commands, "stop", "stop a radas job gracefully (run_choice='restore' continues it)"
    )
    stop.add_argument("job_id", metavar="JOB_ID", help="the job's id, as radas ls --cluster shows")
    stop.add_argument(
        "--cluster", required=True, metavar="NAME", help="the job's cluster, by its config name"
    )
    stop.add_argument("--user", metavar="NAME", help=job_user_help)
    stop.set_defaults(handler=_stop)
    logs = _add_command(
        commands,
        "logs",
        "print (or --follow) a job's output, or what an experiment's trials printed",
    )
    logs.add_argument("job_id", metavar="JOB_ID", nargs="?", help="a job's id (with --cluster)")
    logs.add_argument(
        "--cluster", metavar="NAME", help="the job's cluster, by its config name (with JOB_ID)"
    )
    logs.add_argument(
        "--user",
        metavar="NAME",
        help="with JOB_ID: " + job_user_help + "; with --experiment: " + USER_HELP,
    )
    logs.add_argument(
        "--experiment",
        metavar="NAME",
        help="instead of a job: print what each trial of this experiment printed, as kept in "
        "its folder (also a local run's, also after the job's log is gone)",
    )
    logs.add_argument(
        "--trial", metavar="TRIAL_ID", help="with --experiment: this trial only (its trial id)"
    )
    logs.add_argument(
        "--run-with",
        default="local",
        metavar="WHERE",
        help="with --experiment: 'local' or 'cluster:<name>'",
    )
    logs.add_argument(
        "--dir",
        default=".",
        help="with --experiment: the directory it was run from (default: this one)",
    )
    logs.set_defaults(handler=_logs)
    logs.add_argument(
        "--follow",
        action="store_true",
        help="stream until the job ends, then print its experiment's status; exit status 0 "
        "when the job ended normally (finished or stopped), 1 when it failed or every trial "
        "errored",
    )


def _clusters(args: argparse.Namespace) -> None:
    from radas.clusters import get_cluster_availability

    print(get_cluster_availability())


def _cluster_up(args: argparse.Namespace) -> None:
    from radas.clusters import start_local_cluster

    start_local_cluster(
        args.name,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        worker_nodes=args.workers,
        worker_cpus=args.worker_cpus,
    )


def _cluster_down(args: argparse.Namespace) -> int:
    from radas.clusters import stop_local_cluster

    if not stop_local_cluster(args.name, force=args.force):
        print(f"local cluster {args.name!r} is not running")
        return 1
    return 0


def _job_client(args: argparse.Namespace) -> ExperimentsClient:
    """The client for ``radas logs/stop JOB_ID``: of --user when given (the job must be
    theirs), else of the user who submitted the job, read from the job's metadata."""
    from radas.backends.client import client_of_job, get_client

    run_with = f"cluster:{args.cluster}"
    if args.user is not None:
        return get_client(user_name=args.user, run_with=run_with)
    return client_of_job(args.job_id, run_with=run_with)


def _ls(args: argparse.Namespace) -> None:
    from radas.backends.client import get_client, list_experiments
    from radas.results.listing import as_records, local_results_dir

    user, user_from = _user(args)
    run_with = f"cluster:{args.cluster}" if args.cluster else "local"
    if args.json:
        frame = list_experiments(user_name=user, run_with=run_with)
        listing = {
            "user_name": user,
            "user_from": user_from,
            "run_with": run_with,
            "experiments": as_records(frame),
        }
        print(json.dumps(listing, indent=2))
    elif args.cluster:
        client = get_client(user_name=user, run_with=run_with)
        print(client.experiments_text(user_from=user_from, shell=True))
    else:
        frame = list_experiments(user_name=user, run_with=run_with)
        where = local_results_dir(user)
        print(
            f"Experiments of {user!r} ({user_from}) stored on this machine ({where}): {len(frame)}"
        )
        if len(frame):
            print(_experiments_table(frame))
        for row in frame[frame["problem"] != ""].itertuples():
            print(f"problem of {row.path}: {row.problem}")


def _experiments_table(frame: pd.DataFrame) -> str:
    """The local listing as aligned text columns, the path last."""
    import pandas as pd

    rows = [("experiment", "folder", "status", "fin/err/total", "last update")]
    paths = ["path"]
    for row in frame.itertuples():
        numbers = (row.finished, row.errored, row.total)
        counts = "/".join("-" if pd.isna(value) else str(value) for value in numbers)
        updated = (
            row.last_update.strftime("%Y-%m-%d %H:%M:%S") if pd.notna(row.last_update) else "-"
        )
        folder = "-" if pd.isna(row.cwd) else row.cwd
        rows.append((row.experiment, folder, row.status, counts, updated))
        paths.append(row.path)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(f"{value:<{width}}" for value, width in zip(row, widths, strict=True))
        + f"  {path}"
        for row, path in zip(rows, paths, strict=True)
    )


def _stop(args: argparse.Namespace) -> None:
    client = _job_client(args)
    client.stop_job_by_id(args.job_id)
    status, _ = client.experiment_outcome(args.job_id)
    print(f"job {args.job_id}: {status}")


def _logs(args: argparse.Namespace) -> int:
    from radas.errors import InvalidArgumentError

    if args.experiment is not None:
        if args.job_id is not None:
            raise InvalidArgumentError(
                "radas logs takes a JOB_ID (with --cluster) or --experiment NAME, not both."
            )
        return _trial_output(args)
    if args.job_id is None or args.cluster is None:
        raise InvalidArgumentError(
            "radas logs needs JOB_ID and --cluster NAME (a job's output), or --experiment "
            "NAME (what its trials printed)."
        )
    client = _job_client(args)
    if not args.follow:
        print(client.get_job_logs(args.job_id), end="")
        return 0
    job_status = client.follow_job_sync(args.job_id)
    status, counts = client.experiment_outcome(args.job_id)
    print(f"job {args.job_id}: {status}")
    every_trial_errored = counts is not None and 0 < counts.errored == counts.total
    return 0 if job_status in ("SUCCEEDED", "STOPPED") and not every_trial_errored else 1


def _trial_output(args: argparse.Namespace) -> int:
    from radas.backends import get_backend
    from radas.core.naming import full_experiment_name
    from radas.results.tuner import Tuner
    from radas.storage import store

    cwd = os.path.abspath(args.dir)
    backend = get_backend(args.run_with)
    user, _ = _user(args)
    path = store.location(backend.results_root(user)) / full_experiment_name(
        args.experiment, cwd=cwd
    )
    with _listing_hint(args.run_with, user):
        output = Tuner(str(path)).get_trial_output(args.trial)
    for trial_id, text in output.items():
        print(f"=== trial {trial_id}")
        print(text, end="" if text.endswith("\n") else "\n")
    if not output:
        print(f"(no trial of {args.experiment} printed anything that radas kept; {path})")
    return 0
