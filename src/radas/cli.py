"""The ``radas`` command: clusters, experiments and re-plotting from a shell.

    radas clusters                               which clusters are online, what is free
    radas cluster up NAME [--num-cpus N] [--workers K]
    radas cluster down NAME [--force]           refused while jobs run, unless --force
    radas ls [--cluster NAME] [--user U] [--json]  your stored experiments (or a cluster's jobs)
    radas stop JOB_ID --cluster NAME [--user U]
    radas logs JOB_ID --cluster NAME [--user U] [--follow]
    radas logs --experiment NAME [--trial ID] [--run-with W] [--dir D]  what its trials printed
    radas analyze EXPERIMENT --plot lineplot --x A --y B [--hue C] [-o fig.png]

A radas error prints its message and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
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
    from radas.core.naming import get_current_user_name

    parser = argparse.ArgumentParser(prog="radas", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands")
    user = get_current_user_name()
    _add_cluster_commands(commands)
    _add_ls(commands, user)
    _add_job_commands(commands, user)
    _add_analyze(commands, user)
    return parser


def _add_cluster_commands(commands: Commands) -> None:
    """``radas clusters``, ``radas cluster up`` and ``radas cluster down``."""
    clusters = commands.add_parser("clusters", help="availability of the configured clusters")
    clusters.set_defaults(handler=_clusters)

    cluster = commands.add_parser("cluster", help="start or stop a Ray cluster on this machine")
    actions = cluster.add_subparsers(title="actions")
    up = actions.add_parser("up", help="start a local cluster and register it under NAME")
    up.add_argument("name")
    # counts parse as numbers ("2" or "2.0"); start_local_cluster refuses fractions clearly
    up.add_argument(
        "--num-cpus", type=float, default=None, help="CPUs of the head node (default: all)"
    )
    up.add_argument("--num-gpus", type=float, default=0, help="GPUs of the head node")
    up.add_argument("--workers", type=int, default=0, help="extra worker nodes")
    up.add_argument("--worker-cpus", type=float, default=1, help="CPUs of each worker node")
    up.set_defaults(handler=_cluster_up)
    down = actions.add_parser("down", help="stop the local cluster NAME (results are kept)")
    down.add_argument("name")
    down.add_argument(
        "--force",
        action="store_true",
        help="stop running jobs first (Tune saves their state; restore continues them)",
    )
    down.set_defaults(handler=_cluster_down)


def _add_ls(commands: Commands, user: str) -> None:
    ls = commands.add_parser(
        "ls", help="list your stored experiments on this machine (or your jobs on a cluster)"
    )
    ls.add_argument("--cluster", help="list your jobs on this cluster from the config instead")
    ls.add_argument("--user", default=user, help="default: you")
    ls.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    ls.set_defaults(handler=_ls)


def _add_job_commands(commands: Commands, user: str) -> None:
    """``radas stop`` and ``radas logs``."""
    stop = commands.add_parser(
        "stop", help="stop one of your jobs gracefully (restore continues it)"
    )
    stop.add_argument("job_id")
    stop.add_argument("--cluster", required=True, help="cluster name from the config")
    stop.add_argument("--user", default=user)
    stop.set_defaults(handler=_stop)
    logs = commands.add_parser(
        "logs",
        help="print (or --follow) a job's output, or what an experiment's trials printed",
    )
    logs.add_argument("job_id", nargs="?", help="a job id (with --cluster)")
    logs.add_argument("--cluster", help="cluster name from the config (with JOB_ID)")
    logs.add_argument("--user", default=user, help="default: you")
    logs.add_argument(
        "--experiment",
        help="instead of a job: print what each trial of this experiment printed, as kept in "
        "its folder (also a local run's, also after the job's log is gone)",
    )
    logs.add_argument("--trial", help="with --experiment: this trial only")
    logs.add_argument(
        "--run-with", default="local", help="with --experiment: 'local' or 'cluster:<name>'"
    )
    logs.add_argument("--dir", default=".", help="with --experiment: the directory it was run from")
    logs.set_defaults(handler=_logs)
    logs.add_argument(
        "--follow",
        action="store_true",
        help="stream until the job ends, then print its experiment's status; exit status 0 "
        "when the job ended normally (finished or stopped), 1 when it failed or every trial "
        "errored",
    )


def _add_analyze(commands: Commands, user: str) -> None:
    analyze = commands.add_parser(
        "analyze", help="re-plot a stored experiment to a file (nothing is re-run)"
    )
    analyze.add_argument("experiment", help="the experiment_name it was run with")
    analyze.add_argument("--user", default=user)
    analyze.add_argument("--run-with", default="local", help="'local' or 'cluster:<name>'")
    analyze.add_argument("--dir", default=".", help="the directory it was run from")
    analyze.add_argument("--history", action="store_true", help="one row per report")
    analyze.add_argument("--plot", choices=PLOTS, default="lineplot")
    for option in ("x", "y", "hue", "col", "style"):
        analyze.add_argument(f"--{option}")
    analyze.add_argument("-o", "--output", help="figure file (.png, .pdf or .svg)")
    analyze.add_argument("--csv", help="also write the DataFrame to this CSV file")
    analyze.set_defaults(handler=_analyze)


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


def _client(args: argparse.Namespace) -> ExperimentsClient:
    from radas.backends.client import get_client

    return get_client(user_name=args.user, run_with=f"cluster:{args.cluster}")


def _ls(args: argparse.Namespace) -> None:
    from radas.backends.client import list_experiments
    from radas.results.listing import as_records, local_results_dir

    run_with = f"cluster:{args.cluster}" if args.cluster else "local"
    if args.json:
        frame = list_experiments(user_name=args.user, run_with=run_with)
        listing = {"user_name": args.user, "run_with": run_with, "experiments": as_records(frame)}
        print(json.dumps(listing, indent=2))
    elif args.cluster:
        _client(args).display_experiments()
    else:
        frame = list_experiments(user_name=args.user, run_with=run_with)
        where = local_results_dir(args.user)
        print(f"Experiments of {args.user!r} stored on this machine ({where}): {len(frame)}")
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
    client = _client(args)
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
    client = _client(args)
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
    path = store.location(backend.results_root(args.user)) / full_experiment_name(
        args.experiment, cwd=cwd
    )
    output = Tuner(str(path)).get_trial_output(args.trial)
    for trial_id, text in output.items():
        print(f"=== trial {trial_id}")
        print(text, end="" if text.endswith("\n") else "\n")
    if not output:
        print(f"(no trial of {args.experiment} printed anything that radas kept; {path})")
    return 0


def _analyze(args: argparse.Namespace) -> None:
    import seaborn as sns

    from radas.errors import InvalidArgumentError
    from radas.experiment import analyze_stored_sync, run_experiment_sync
    from radas.storage.store import is_uri

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
        result = analyze_stored_sync(args.experiment, user_name=args.user, **analysis_options)
    else:
        if not os.path.isdir(args.dir):
            what = "is not a directory" if os.path.exists(args.dir) else "does not exist"
            raise InvalidArgumentError(
                f"--dir {args.dir} {what}: give the directory the experiment was run from "
                "(its full name includes it), or leave --dir out to use this one."
            )
        os.chdir(args.dir)
        result = run_experiment_sync(
            user_name=args.user,
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
