"""Save and load a 1 GiB NumPy array with radas.cloud_artifact and with plain np.save/np.load.

    python bench/bench_artifacts.py [--gib 1.0] [--repeats 3] [--dir /path/on/the/disk/to/test]
                                    [--root s3://bucket/prefix --endpoint-url http://host:9000]

Three variants: ``np.save``/``np.load`` in a plain Python process; the same in a process that
has imported radas (what a trainable or a radas script is: importing Ray, pandas and pyarrow
alone makes large NumPy I/O slower on some machines); and ``rda.save_cloud_artifact`` /
``rda.load_cloud_artifact``. The radas / numpy ratio compares the last two (the same process
state, so it shows what radas's own code costs); the plain process is shown for reference.

Three operations, each variant in turn, each measurement in a fresh child process:

- ``save (new)``: save under a name that does not exist yet;
- ``save (overwrite)``: save over the previous version. radas writes a temporary file and renames
  it over the old version (atomic: readers see the old or the new array); ``np.save``
  truncates the old file first (a reader or a crash in between sees a torn file);
- ``load``.

Peak memory is the child's ``ru_maxrss`` above its baseline (Python + imports), as a multiple of
the array's size: the array itself counts, for save and for load. Throughput is the array's
size over the wall time of the call; CPU seconds (user + system) are shown too. Every
measurement starts after ``os.sync()``, so the writeback of earlier ones does not land on it.
The best of ``--repeats`` is shown, with radas / numpy ratios (targets: throughput >= 0.8x,
peak memory <= 1.5x the array). ``--root`` sends the radas variant to another store (e.g. S3).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
import numpy as np

spec = json.loads(sys.argv[1])
n = int(spec["gib"] * 2**30) // 8
def kib():  # Linux: KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
if spec["variant"] != "plain":
    import radas.cloud_artifact as rda
    rda.init(user_name="bench", root=spec["root"], endpoint_url=spec["endpoint_url"])
baseline = kib()
if spec["op"] == "save":
    array = np.arange(n, dtype=np.float64)
    start, cpu_start = time.perf_counter(), cpu()
    if spec["variant"] != "radas":
        np.save(os.path.join(spec["dir"], spec["name"]), array)
    else:
        rda.save_cloud_artifact(spec["name"], array)
else:
    start, cpu_start = time.perf_counter(), cpu()
    if spec["variant"] != "radas":
        array = np.load(os.path.join(spec["dir"], spec["name"]))
    else:
        array = rda.load_cloud_artifact(spec["name"])
seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
assert array.shape == (n,) and array[-1] == n - 1
peak_bytes = (kib() - baseline) * 1024
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_bytes": peak_bytes,
                  "bytes": array.nbytes}))
"""

OPERATIONS = ("save (new)", "save (overwrite)", "load")
VARIANTS = ("plain", "numpy", "radas")


def measure(variant: str, op: str, name: str, args: argparse.Namespace, directory: Path) -> dict:
    spec = {
        "variant": variant,
        "op": op,
        "name": name,
        "gib": args.gib,
        "dir": str(directory / variant),
        "root": args.root or str(directory / "radas"),
        "endpoint_url": args.endpoint_url,
    }
    os.sync()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{variant} {op} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="array size in GiB (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--root", default=None, help="radas artifact root (default: --dir)")
    parser.add_argument("--endpoint-url", default=None, help="for an S3-compatible --root")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="radas-bench-", dir=args.dir) as tmp:
        directory = Path(tmp)
        (directory / "plain").mkdir()
        (directory / "numpy").mkdir()
        for variant in VARIANTS:  # the version that "save (overwrite)" replaces
            measure(variant, "save", "same.npy", args, directory)
        best: dict[tuple[str, str], dict] = {}
        for repeat in range(args.repeats):
            order = VARIANTS if repeat % 2 == 0 else VARIANTS[::-1]
            for label, op, name in (
                ("save (new)", "save", f"new-{repeat}.npy"),
                ("save (overwrite)", "save", "same.npy"),
                ("load", "load", "same.npy"),
            ):
                for variant in order:
                    result = measure(variant, op, name, args, directory)
                    key = (variant, label)
                    if key not in best or result["seconds"] < best[key]["seconds"]:
                        best[key] = result
            for new in directory.rglob(f"new-{repeat}.npy"):
                new.unlink()

        nbytes = best[("numpy", "load")]["bytes"]
        print(
            f"{nbytes / 2**30:.2f} GiB float64 array, best of {args.repeats}; numpy in "
            f"{directory}/{{plain,numpy}}, radas in {args.root or directory / 'radas'} "
            f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)"
        )
        header = (
            f"{'operation':<17} {'variant':<29} {'MB/s':>7} {'seconds':>8} {'CPU s':>6} "
            f"{'peak mem':>9}"
        )
        print(header)
        print("-" * len(header))
        for label in OPERATIONS:
            verb = "load" if label == "load" else "save"
            for variant, call in (
                ("plain", f"np.{verb} (plain process)"),
                ("numpy", f"np.{verb} (radas imported)"),
                ("radas", f"rda.{verb}_cloud_artifact"),
            ):
                result = best[(variant, label)]
                print(
                    f"{label:<17} {call:<29} {nbytes / 1e6 / result['seconds']:>7.0f} "
                    f"{result['seconds']:>8.2f} {result['cpu_seconds']:>6.2f} "
                    f"{result['peak_bytes'] / nbytes:>8.2f}x"
                )
            radas = best[("radas", label)]
            for variant, name in (
                ("numpy", "radas / np (radas imported)"),
                ("plain", "radas / np (plain)"),
            ):
                numpy = best[(variant, label)]
                print(
                    f"{label:<17} {name:<29} {numpy['seconds'] / radas['seconds']:>6.2f}x "
                    f"{'':>8} {'':>6} {radas['peak_bytes'] / max(numpy['peak_bytes'], 1):>8.2f}x"
                )


if __name__ == "__main__":
    main()
