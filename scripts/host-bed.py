"""Bring the multi-host test bed (tests/support/hostbed.py) up by hand; Ctrl-C tears it down.

    sudo .venv/bin/python scripts/host-bed.py [--workers 2] [--cluster-name bed]
    sudo .venv/bin/python scripts/host-bed.py --cleanup   # what a bed killed hard left behind

While it runs, it prints the head's address, the client's token file, the S3 endpoint, each
host's IP and how to open a shell on a host, and registers the bed as a radas cluster in the
radas config (``$RADAS_CONFIG``, else ``~/.config/radas/config.toml``) when given
``--cluster-name``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.hostbed import HostBedError, cleanup_leftovers, host_bed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker hosts (default 2)")
    parser.add_argument("--num-cpus", type=float, default=1, help="CPUs per node (default 1)")
    parser.add_argument("--cluster-name", help="register the bed as this radas cluster")
    parser.add_argument("--cleanup", action="store_true", help="remove a dead bed's leftovers")
    args = parser.parse_args()
    if args.cleanup:
        removed = cleanup_leftovers()
        print("\n".join(removed) if removed else "nothing of a host bed was left")
        return 0
    # SIGTERM tears down like Ctrl-C (the bed's context manager runs its cleanup)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with host_bed(args.workers, num_cpus=args.num_cpus) as bed:
            print(f"host bed up in {bed.started_s:.1f} s")
            print(f"  job server:  {bed.address}  (token file {bed.token_file})")
            print(f"  S3 endpoint: {bed.s3_endpoint_url}  bucket {bed.s3_bucket}, ", end="")
            print(" ".join(f"{key}={value}" for key, value in bed.aws_env.items()))
            for host in bed.hosts:
                shell = f"nsenter -t {host.keeper_pid} -m -n --wd=/tmp sh"
                print(f"  {host.name:8} {host.ip:14} shell: {shell}")
            if args.cluster_name:
                from radas.clusters.config import config_path

                bed.write_cluster_config(config_path(), args.cluster_name)
                print(f"  registered as run_with='cluster:{args.cluster_name}' in {config_path()}")
            print("Ctrl-C tears it down.", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        print("host bed torn down")
    except HostBedError as err:
        print(f"host bed failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
