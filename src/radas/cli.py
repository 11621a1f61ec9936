"""The radas command: clusters, experiments and re-plotting from a shell.

Each sub-command's help (radas COMMAND --help) shows examples; the help texts are plain text,
no markup, as argparse prints them as they are. A radas error prints its message and exits with
status 1; a command given without what it needs prints its help and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from radas.errors import RadasError

if TYPE_CHECKING:
    import pandas as pd

    from radas.backends.client import ExperimentsClient

PLOTS = (
    "lineplot",
    "scatterplot",
    "barplot",
    "boxplot",
    "pointplot",
    "heatmap",
    "relplot",
    "catplot",
    "displot",
)

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
# (command, what it does) for each command's help; "" when the command says it all
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "radas": [
        ("radas clusters", "which clusters are online, what is free"),
        ("radas cluster up dev --num-cpus 8", "start a local cluster, registered as dev"),
        ("radas ls", "your experiments stored on this machine"),
        ("radas ls --cluster dev", "your jobs on cluster dev"),
        ("radas logs JOB_ID --cluster dev --follow", "a job's output until it ends"),
        ("radas stop JOB_ID --cluster dev", "stop a job (run_choice='restore' continues it)"),
        ("radas analyze lr-sweep --x config/lr --y loss -o lr.png", ""),
        ("radas watch lr-sweep", "its trials live, until it ends"),
        ("radas report lr-sweep", "the experiment's page, one HTML file readable offline"),
    ],
    "clusters": [("radas clusters", "every configured cluster: online or not, what is free")],
    "cluster": [
        ("radas cluster up dev --num-cpus 8", "a local cluster named dev"),
        ("radas cluster down dev", "stop it (refused while jobs run)"),
    ],
    "cluster up": [
        ("radas cluster up dev", "all CPUs of this machine on one head node"),
        ("radas cluster up dev --num-cpus 4 --workers 2 --worker-cpus 2", ""),
    ],
    "cluster down": [
        ("radas cluster down dev", "refused while jobs run on it"),
        ("radas cluster down dev --force", "stop its jobs gracefully first"),
    ],
    "ls": [
        ("radas ls", "the default user's experiments on this machine"),
        ("radas ls --user alice", "alice's"),
        ("radas ls --cluster dev", "the default user's jobs on cluster dev"),
        ("radas ls --json", "one JSON object, for scripts"),
    ],
    "stop": [("radas stop JOB_ID --cluster dev", "JOB_ID as radas ls --cluster dev shows it")],
    "logs": [
        ("radas logs JOB_ID --cluster dev", "everything the job printed so far"),
        ("radas logs JOB_ID --cluster dev --follow", "stream it until the job ends"),
        ("radas logs --experiment lr-sweep", "what each trial of a local experiment printed"),
        ("radas logs --experiment lr-sweep --run-with cluster:dev --trial 3f2a1_00001", ""),
    ],
    "analyze": [
        ("radas analyze lr-sweep --x config/lr --y loss -o lr.png", ""),
        ("radas analyze lr-sweep --history --x training_iteration --y loss --hue config/lr", ""),
        ("radas analyze lr-sweep --run-with cluster:dev --csv lr.csv", ""),
        ("radas analyze s3://lab/results/alice/_home_alice_proj_lr_sweep --x a --y b", ""),
    ],
}
USER_HELP = (
    "whose experiments (default: $RADAS_USER, else user in the radas config, else your login name)"
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


Commands = argparse._SubParsersAction  # what add_subparsers returns


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
    _add_analyze(commands)
    from radas.views import terminal  # radas watch

    terminal.add_command(commands)
    from radas.views import report_command  # radas report

    report_command.add_command(commands)
    return parser


def _add_command(commands: Commands, name: str, summary: str) -> argparse.ArgumentParser:
    """A sub-command: ``summary`` in the command list and atop its help, its examples below."""
    return commands.add_parser(
        name.rpartition(" ")[2],
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=_examples(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _examples(command: str) -> str:
    """The examples of ``command``'s help, what each does aligned in a column."""
    lines = ["examples:"]
    for example, what in EXAMPLES[command]:
        lines.append(f"  {example:<42} {what}".rstrip() if what else f"  {example}")
    return "\n".join(lines)


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


def _add_analyze(commands: Commands) -> None:
    analyze = _add_command(
        commands, "analyze", "re-plot a stored experiment to a file (nothing is re-run)"
    )
    analyze.add_argument(
        "experiment",
        metavar="EXPERIMENT",
        help="the experiment_name it was run with, or the URI of a stored experiment",
    )
    analyze.add_argument("--user", metavar="NAME", help=USER_HELP)
    analyze.add_argument(
        "--run-with", default="local", metavar="WHERE", help="'local' (default) or 'cluster:<name>'"
    )
    analyze.add_argument(
        "--dir", default=".", help="the directory it was run from (default: this one)"
    )
    analyze.add_argument(
        "--history", action="store_true", help="one row per report, not one per trial"
    )
    analyze.add_argument(
        "--plot",
        choices=PLOTS,
        default="lineplot",
        metavar="PLOT",
        help=f"the seaborn plot: {', '.join(PLOTS)} (default: lineplot)",
    )
    columns = {
        "x": "the column on the x axis (e.g. config/lr)",
        "y": "the column on the y axis (e.g. loss)",
        "hue": "the column that colours the lines or points",
        "col": "the column that splits the figure into panels",
        "style": "the column that sets the line or marker style",
    }
    for option, what in columns.items():
        analyze.add_argument(f"--{option}", metavar="COLUMN", help=what)
    analyze.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the figure's file: .png, .pdf or .svg (default: a file in radas's figures folder)",
    )
    analyze.add_argument("--csv", metavar="FILE", help="also write the DataFrame to this CSV file")
    analyze.set_defaults(handler=_analyze)


def _user(args: argparse.Namespace) -> tuple[str, str]:
    """The user the command acts for, and where the name came from (``--user``, or the one
    rule of ``radas.core.naming.default_user``)."""
    from radas.core.naming import default_user, validate_user_name

    if args.user is not None:
        return validate_user_name(args.user), "--user"
    user = default_user()
    return user.name, user.source


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


@contextlib.contextmanager
def _listing_hint(run_with: str, user: str) -> Iterator[None]:
    """An ExperimentNotFoundError raised inside ends with the radas ls command that lists what
    ``user`` has where it was looked for (with --cluster and --user where needed)."""
    from radas.core.naming import user_option
    from radas.core.spec import parse_run_with
    from radas.errors import ExperimentNotFoundError

    try:
        yield
    except ExperimentNotFoundError as err:
        target = parse_run_with(run_with)  # parsed already before anything was looked up
        option, there = (
            (f" --cluster {target.cluster}", f"on {target}")
            if target.kind == "cluster"
            else ("", "stored on this machine")
        )
        raise ExperimentNotFoundError(
            f"{err} `radas ls{option}{user_option(user)}` lists the experiments of {user!r} "
            f"{there}."
        ) from err


def _analyze(args: argparse.Namespace) -> None:
    import seaborn as sns

    from radas.errors import InvalidArgumentError
    from radas.experiment import analyze_stored_sync, run_experiment_sync
    from radas.storage.store import is_uri

    user, _ = _user(args)
    plot_kwargs = {key: getattr(args, key) for key in ("x", "y", "hue", "col", "style")}
    plot_kwargs = {key: value for key, value in plot_kwargs.items() if value is not None}
    # -o and --csv are relative to where the command runs, not to --dir
    output = os.path.abspath(args.output) if args.output else None
    csv = _csv_target(args.csv) if args.csv else None
    analysis_options = dict(
        tuner_to_df_fn=(lambda tuner: tuner.get_history_dataframe()) if args.history else None,
        plot_fn=getattr(sns, args.plot) if plot_kwargs else None,
        plot_kwargs=plot_kwargs,
        plot_path=output,
        plot_format=None if output else ("png" if plot_kwargs else None),
    )
    if is_uri(args.experiment):  # a stored experiment's URI: read from there, no name
        result = analyze_stored_sync(args.experiment, user_name=user, **analysis_options)
    else:
        if not os.path.isdir(args.dir):
            what = "is not a directory" if os.path.exists(args.dir) else "does not exist"
            raise InvalidArgumentError(
                f"--dir {args.dir} {what}: give the directory the experiment was run from "
                "(its full name includes it), or leave --dir out to use this one."
            )
        os.chdir(args.dir)
        with _listing_hint(args.run_with, user):
            result = run_experiment_sync(
                user_name=user,
                experiment_name=args.experiment,
                run_with=args.run_with,
                dos=["analyze"],
                **analysis_options,
            )
    df = result.df
    assert df is not None  # the analysis made it
    print(df.head(20).to_string())
    partial = "partial: the experiment is still running; " if result.partial else ""
    print(f"({len(df)} rows; {partial}stored at {result.experiment_path})")
    if csv:
        df.to_csv(csv, index=False)
        print(f"DataFrame written to {csv}")
    if result.fig_path:
        print(f"figure: {result.fig_path}")


def _csv_target(csv: str) -> str:
    """``--csv``'s file as an absolute path, refused before anything is read when it cannot
    be written: its folder missing, or a folder in its place."""
    from radas.errors import InvalidArgumentError

    target = os.path.abspath(csv)
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        raise InvalidArgumentError(
            f"--csv {csv}: {target} is a directory; give a file name, e.g. "
            f"--csv {os.path.join(csv, 'results.csv')}."
        )
    if not os.path.isdir(folder):
        raise InvalidArgumentError(
            f"--csv {csv}: the folder {folder} does not exist. Create it first "
            f"(mkdir -p {folder}), or give a path in an existing folder."
        )
    return target


if __name__ == "__main__":
    sys.exit(main())
