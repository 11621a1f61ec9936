"""Results on S3 across hosts vs a shared path on one machine: side by side, one run.

Brings up the multi-host test bed (tests/support/hostbed.py: a head and two workers on hosts of
their own, 1 CPU each, results on the bed's S3 server) and a single-machine cluster with 3 CPUs
(radas.clusters.start_local_cluster, results on a local path), then measures:

1. Round trip of a 3-trial trivial experiment, from the call to the DataFrame, alternating
   the two clusters (``--repeats`` times each, a fresh experiment name every time): medians
   and their ratio (target: S3 <= 1.3x the shared path).
2. A result stream of 100 trials x 100 reports, the whole history read back with
   ``get_history_dataframe()``: every row must arrive; throughput ratio (target >= 0.8x).
3. ``get_history_dataframe()`` of a 200,000-row history (2,000 trials x 100 reports, written
   by radas's own history writer) from S3 vs from local disk, each load in a fresh process
   (``--repeats`` times): median ratio (target <= 3x).

Needs root (the bed makes network and mount namespaces).

    python bench/bench_multihost.py               # the sizes above
    python bench/bench_multihost.py --scale 0.1   # streams and history 10x smaller
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))  # bench_scale: the history writer
sys.path.insert(0, str(HERE.parent.parent / "tests"))  # hostbed

USER = "bench"


def trivial(config):
    return {"score": config["i"] * 2}


def stream(config):
    import radas

    for step in range(config["reports"]):
        radas.report({"loss": 1.0 / (step + 1), "step": step, "i": config["i"]})


# --- measurements in the parent (both clusters up) -------------------------------------------


def round_trip(run_with: str, name: str) -> float:
    from ray import tune

    import radas

    started = time.perf_counter()
    results = radas.run_experiment_sync(
        user_name=USER,
        experiment_name=name,
        trainable=trivial,
        param_space={"i": tune.grid_search([0, 1, 2])},
        run_with=run_with,
        run_choice="run",
    )
    seconds = time.perf_counter() - started
    assert sorted(results["df"]["score"]) == [0, 2, 4], results["df"]
    return seconds


def result_stream(run_with: str, trials: int, reports: int) -> dict[str, Any]:
    from ray import tune

    import radas

    started = time.perf_counter()
    results = radas.run_experiment_sync(
        user_name=USER,
        experiment_name=f"stream-{uuid.uuid4().hex[:6]}",
        trainable=stream,
        param_space={"i": tune.grid_search(list(range(trials))), "reports": reports},
        run_with=run_with,
        run_choice="run",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
    )
    seconds = time.perf_counter() - started
    history = results["df"]
    assert len(history) == trials * reports, (len(history), trials * reports)  # every row
    assert history.groupby("i").size().tolist() == [reports] * trials
    return {
        "seconds": seconds,
        "rows": len(history),
        "results_per_s": len(history) / seconds,
        "path": results["experiment_path"],
    }


# --- measurements in child processes ---------------------------------------------------------


def write_history(path: str, trials: int, reports: int) -> dict[str, Any]:
    from bench_scale import write_million

    return write_million(path, trials=trials, reports=reports)


def load_history(path: str) -> dict[str, Any]:
    import radas

    started = time.perf_counter()
    frame = radas.Tuner(path).get_history_dataframe()
    return {"seconds": time.perf_counter() - started, "rows": len(frame)}


def child(name: str, env: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(HERE), "--child", name, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if completed.returncode != 0:
        sys.exit(f"{name} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def upload(bed: Any, folder: Path, prefix: str) -> str:
    """Copy ``folder`` into the bed's bucket under ``prefix``; its s3:// URI."""
    s3 = bed.s3_client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            s3.upload_file(str(path), bed.s3_bucket, key)
    return f"s3://{bed.s3_bucket}/{prefix}"


# --- the driver ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply stream/history sizes")
    parser.add_argument("--repeats", type=int, default=3, help="round trips and loads per way")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, kwargs = args.child[0], json.loads(args.child[1])
        print(json.dumps(globals()[name](**kwargs)))
        return

    home = Path(tempfile.mkdtemp(prefix="radas-bench-multihost-"))
    os.environ["RADAS_HOME"] = str(home / "home")
    os.environ["RADAS_CONFIG"] = str(home / "config.toml")
    os.environ.setdefault("MPLBACKEND", "Agg")
    work = home / "work"
    work.mkdir()
    os.chdir(work)  # the experiments' working directory (hidden from the hosts)

    try:
        measure(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(args: argparse.Namespace, home: Path) -> None:
    from radas.clusters import start_local_cluster
    from support.hostbed import host_bed

    trials, reports = max(3, int(100 * args.scale)), 100
    history_trials = max(10, int(2_000 * args.scale))
    with host_bed() as bed:
        os.environ.update(bed.aws_env)  # the client's S3 credentials
        bed.write_cluster_config(  # the config says where the S3 server is
            os.environ["RADAS_CONFIG"],
            "s3",
            results_root=f"s3://{bed.s3_bucket}/results",
            results_endpoint_url=bed.s3_endpoint_url,
        )
        shared = start_local_cluster("shared", num_cpus=3)
        try:
            print(f"bed up in {bed.started_s:.1f} s; a local 3-CPU cluster beside it")
            ways = {"s3": "cluster:s3", "shared path": "cluster:shared"}
            times: dict[str, list[float]] = {way: [] for way in ways}
            round_trip(ways["s3"], "warm-up")  # both clusters' first job
            round_trip(ways["shared path"], "warm-up")
            for repeat in range(args.repeats):
                for way, run_with in ways.items():
                    times[way].append(round_trip(run_with, f"trip-{repeat}"))
            streams = {
                way: result_stream(run_with, trials, reports) for way, run_with in ways.items()
            }
        finally:
            shared.stop()

        local = home / "history"
        child("write_history", path=str(local), trials=history_trials, reports=100)
        remote = upload(bed, local, f"results/{USER}/history-{uuid.uuid4().hex[:6]}")
        loads: dict[str, list[dict[str, Any]]] = {"s3": [], "local disk": []}
        for _ in range(args.repeats):
            loads["local disk"].append(child("load_history", path=str(local)))
            loads["s3"].append(child("load_history", path=remote))
        rows = history_trials * 100
        assert all(load["rows"] == rows for way in loads.values() for load in way), loads

    print("\n1. Round trip, 3 trivial trials (call -> DataFrame)")
    for way, values in times.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"   {way:<12} median {statistics.median(values):6.1f} s   ({runs})")
    trip = statistics.median(times["s3"]) / statistics.median(times["shared path"])
    print(f"   S3 / shared path: {trip:.2f}x the time (target <= 1.3x)")

    print(f"\n2. Result stream, {trials} trials x {reports} reports, full history read back")
    for way, measured in streams.items():
        print(
            f"   {way:<12} {measured['seconds']:6.1f} s  {measured['rows']:,} rows  "
            f"{measured['results_per_s']:6.0f} results/s"
        )
    flow = streams["s3"]["results_per_s"] / streams["shared path"]["results_per_s"]
    print(f"   S3 / shared path: {flow:.2f}x the throughput (target >= 0.8x)")

    print(f"\n3. get_history_dataframe() of {rows:,} rows")
    medians = {way: statistics.median(d["seconds"] for d in done) for way, done in loads.items()}
    for way, done in loads.items():
        runs = ", ".join(f"{d['seconds']:.2f}" for d in done)
        print(f"   {way:<12} median {medians[way]:6.2f} s   ({runs})")
    print(f"   S3 / local disk: {medians['s3'] / medians['local disk']:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
