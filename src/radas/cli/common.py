"""What the radas command's parts share: the examples in each command's help, a command's
parser, and the radas ls hint a not-found error ends with (the user a command acts for:
``radas.views.experiment_args.user_of``)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

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


Commands = argparse._SubParsersAction  # what add_subparsers returns


def add_command(commands: Commands, name: str, summary: str) -> argparse.ArgumentParser:
    """A sub-command: ``summary`` in the command list and atop its help, its examples below."""
    return commands.add_parser(
        name.rpartition(" ")[2],
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=examples(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def examples(command: str) -> str:
    """The examples of ``command``'s help, what each does aligned in a column."""
    lines = ["examples:"]
    for example, what in EXAMPLES[command]:
        lines.append(f"  {example:<42} {what}".rstrip() if what else f"  {example}")
    return "\n".join(lines)


@contextlib.contextmanager
def listing_hint(run_with: str, user: str) -> Iterator[None]:
    """An ExperimentNotFoundError raised inside ends with the radas ls command that lists what
    ``user`` has where it was looked for (with --cluster and --user where needed)."""
    from radas.core import naming
    from radas.core.spec import parse_run_with
    from radas.errors import ExperimentNotFoundError

    try:
        yield
    except ExperimentNotFoundError as err:
        target = parse_run_with(run_with)  # parsed already before anything was looked up
        raise ExperimentNotFoundError(f"{err} {naming.listing_hint(target, user)}.") from err
