"""Bring the multi-host test bed (tests/support/hostbed.py) up by hand; Ctrl-C tears it down.

    sudo .venv/bin/python scripts/host-bed.py [--workers 2] [--cluster-name bed]
    sudo .venv/bin/python scripts/host-bed.py --cleanup   # what a bed killed hard left behind

It needs root (network and mount namespaces) and the ``dev`` extra (boto3 and moto's S3
server for the bed, s3fs for the client's results): ``pip install -e ".[dev]"``. The venv may
live anywhere, under /tmp too; every host sees it read-only.

While it runs, it prints the head's address, the S3 endpoint, each host's IP and how to open
a shell on a host, and the client's exports as one block to paste into the shell radas runs
in (as root too: the token file is root's). With ``--cluster-name NAME`` it registers the bed
as cluster NAME in the radas config (``$RADAS_CONFIG``, else ``~/.config/radas/config.toml``):
results in ``s3://radas-bed/results`` and artifacts in ``s3://radas-bed/radas`` on the bed's
S3 server, which every host and the client reach (each host's own folders are private to
it). The entry is removed again when the bed is torn down.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import shlex
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

INSTALL = 'pip install -e ".[dev]"'
try:
    from support.hostbed import NETWORK, HostBed, HostBedError, cleanup_leftovers, host_bed
except ModuleNotFoundError as err:  # not the venv's Python
    sys.exit(
        f"host bed: no module {err.name!r} in {sys.executable}: run it with the Python of "
        f"radas's venv with the dev extra ({INSTALL} in {REPO}): sudo .venv/bin/python {__file__}"
    )

RESULTS_PREFIX = "results"
# what the bed and its client import beyond radas's own dependencies: the dev extra has them
# (boto3, moto[server] with flask and flask_cors, s3fs)
DEV_MODULES = ("radas", "boto3", "moto", "flask", "flask_cors", "s3fs")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="worker hosts (default 2)")
    parser.add_argument("--num-cpus", type=float, default=1, help="CPUs per node (default 1)")
    parser.add_argument(
        "--cluster-name",
        metavar="NAME",
        help="register the bed as radas cluster NAME (run_with='cluster:NAME') while it runs",
    )
    parser.add_argument("--cleanup", action="store_true", help="remove a dead bed's leftovers")
    args = parser.parse_args()
    if args.cleanup:
        removed = cleanup_leftovers()
        print("\n".join(removed) if removed else "nothing of a host bed was left")
        return 0
    problem = missing_dev_extra() or (args.cluster_name and name_taken(args.cluster_name))
    if problem:
        print(f"host bed: {problem}", file=sys.stderr)
        return 1
    # SIGTERM and a closed terminal tear down like Ctrl-C (the bed's context manager cleans
    # up); SIGINT too when started with it ignored (`... &` in a script, nohup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        with host_bed(args.workers, num_cpus=args.num_cpus) as bed:
            print(f"host bed up in {bed.started_s:.1f} s")
            print(f"  job server:  {bed.address}  (token file {bed.token_file})")
            print(f"  S3 endpoint: {bed.s3_endpoint_url}  bucket {bed.s3_bucket}")
            for host in bed.hosts:
                shell = f"nsenter -t {host.keeper_pid} -m -n --wd=/tmp sh"
                print(f"  {host.name:8} {host.ip:14} shell: {shell}")
            try:
                if args.cluster_name:
                    register(bed, args.cluster_name)
                print_exports(bed, args.cluster_name)
                print("Ctrl-C tears it down.", flush=True)
                signal.pause()
            finally:
                if args.cluster_name:
                    unregister(bed, args.cluster_name)
    except KeyboardInterrupt:
        print("host bed torn down")
    except HostBedError as err:
        print(f"host bed failed: {err}", file=sys.stderr)
        return 1
    return 0


def missing_dev_extra() -> str | None:
    """What the bed lacks of the dev extra, with the command that installs it; None if
    nothing."""
    missing = [module for module in DEV_MODULES if not _importable(module)]
    if not missing:
        return None
    pip = f"{shlex.quote(sys.executable)} -m pip install -e {shlex.quote(f'{REPO}[dev]')}"
    return f"it needs the dev extra (no {', '.join(missing)}): {INSTALL} in {REPO}, i.e. {pip}"


def name_taken(name: str) -> str | None:
    """Why ``name`` cannot be the bed's cluster: a cluster of that name that is not a bed
    (a bed's entry a hard-killed bed left is replaced)."""
    from radas.clusters.config import get_cluster
    from radas.core.config import config_path
    from radas.errors import RadasError

    try:
        address = get_cluster(name).address
    except RadasError:
        return None  # not there (or unreadable: registering says why)
    host = urlsplit(address).hostname or ""
    try:
        if ipaddress.ip_address(host) in NETWORK:
            return None
    except ValueError:
        pass
    return (
        f"a cluster named {name!r} is already in {config_path()} (address {address}); "
        "give the bed another --cluster-name"
    )


def register(bed: HostBed, name: str) -> None:
    """The bed as cluster ``name``: results and artifacts in its bucket, on its endpoint."""
    from radas.core.config import config_path

    results_root = f"s3://{bed.s3_bucket}/{RESULTS_PREFIX}"
    bed.write_cluster_config(
        config_path(),
        name,
        results_root=results_root,
        results_endpoint_url=bed.s3_endpoint_url,
    )
    print(f"  registered as run_with='cluster:{name}' in {config_path()}")
    print(f"  results in {results_root}, artifacts in s3://{bed.s3_bucket}/radas (on its S3)")


def unregister(bed: HostBed, name: str) -> None:
    """Remove the entry ``register`` made, unless someone has replaced it since."""
    from radas.clusters.config import get_cluster, unregister_cluster
    from radas.errors import RadasError

    try:
        if get_cluster(name).address == bed.address:
            unregister_cluster(name)
    except RadasError as err:
        print(f"host bed: cluster {name!r} left in the radas config: {err}", file=sys.stderr)


def print_exports(bed: HostBed, name: str | None) -> None:
    """What the client's shell needs, as one block to paste."""
    from radas.core.config import config_path

    exports: dict[str, Any] = {"AWS_ENDPOINT_URL": bed.s3_endpoint_url, **bed.aws_env}
    if name:
        exports["RADAS_CONFIG"] = config_path()
    print("\nIn the shell radas runs in (as root), paste:\n")
    for key, value in exports.items():
        print(f"export {key}={shlex.quote(str(value))}")
    if name:
        print(f"\nthen run_with='cluster:{name}' in run_experiment, and: radas ls --cluster {name}")
    print()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
