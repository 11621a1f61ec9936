"""Performance at scale: big grids, result streams, history loading. Side by side, one run.

Each measurement runs in its own process (so one cannot warm up or slow down another):

1. Large grids: ten 1,000-trial grids through radas, one 10,000-trial grid through radas, and
   the same 10,000 trials through raw Ray Tune hand-tuned (reuse_actors=True, verbose=0).
2. Result streams: 200 trials x 100 reports, raw Ray Tune with its default loggers vs radas
   (whose history keeps every report for get_history_dataframe()).
3. History loading: a stored experiment of 2,000 trials x 100 reports, read back as one frame
   by radas vs from Ray's per-trial results (ResultGrid / Result.metrics_dataframe); and a
   1,000,000-row history: seconds and peak memory against the frame's own size.

    python bench/bench_scale.py               # the sizes above (about half an hour here)
    python bench/bench_scale.py --scale 0.2   # everything 5x smaller, for a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def trivial(config):
    return {"score": config["i"] * 2}


def stream(config):
    from ray import tune

    for step in range(config["reports"]):
        tune.report({"loss": 1.0 / (step + 1), "step": step, "i": config["i"]})


# --- the measurements (each runs in a child process) -------------------------------------


def radas_grids(trials: int, repeats: int) -> dict:
    from ray import tune

    import radas
    from radas.backends.local import ensure_local_ray

    ensure_local_ray({})
    started = time.perf_counter()
    rows = 0
    for repeat in range(repeats):
        results = radas.run_experiment_sync(
            user_name="bench",
            experiment_name=f"grid-{trials}-{repeat}",
            trainable=trivial,
            param_space={"i": tune.grid_search(list(range(trials)))},
            run_choice="run",
        )
        rows += len(results["df"])
    assert rows == trials * repeats
    return {"seconds": time.perf_counter() - started}


def raw_grid(trials: int, storage: str) -> dict:
    from ray import tune

    from radas.backends.local import ensure_local_ray

    ensure_local_ray({})
    started = time.perf_counter()
    grid = tune.Tuner(
        trivial,
        param_space={"i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name=f"raw-{trials}", verbose=0),
    ).fit()
    assert len(grid.get_dataframe()) == trials
    return {"seconds": time.perf_counter() - started}


def streams(way: str, trials: int, reports: int, storage: str) -> dict:
    from ray import tune

    import radas
    from radas.backends.local import ensure_local_ray

    ensure_local_ray({})
    space = {"i": tune.grid_search(list(range(trials))), "reports": reports}
    started = time.perf_counter()
    if way == "radas":
        results = radas.run_experiment_sync(
            user_name="bench",
            experiment_name="stream",
            trainable=stream,
            param_space=space,
            run_choice="run",
            tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        )
        rows = len(results["df"])
    else:
        grid = tune.Tuner(
            stream,
            param_space=space,
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, name="stream", verbose=0),
        ).fit()
        rows = sum(len(result.metrics_dataframe) for result in grid)
    seconds = time.perf_counter() - started
    assert rows == trials * reports, rows
    return {"seconds": seconds, "results_per_s": rows / seconds}


def make_stored_history(trials: int, reports: int) -> dict:
    """A real stored experiment with both radas's history and Ray's own result files."""
    from ray import tune

    import radas
    from radas.backends.local import ensure_local_ray

    os.environ["RADAS_RAY_LOGGERS"] = "1"
    ensure_local_ray({})
    results = radas.run_experiment_sync(
        user_name="bench",
        experiment_name="stored",
        trainable=stream,
        dos=["run"],
        param_space={"i": tune.grid_search(list(range(trials))), "reports": reports},
        run_choice="run",
    )
    return {"path": results["experiment_path"]}


def load_stored(way: str, path: str) -> dict:
    import pandas as pd
    from ray.tune import ExperimentAnalysis, ResultGrid

    import radas

    started = time.perf_counter()
    if way == "radas":
        frame = radas.Tuner(path).get_history_dataframe(brief_columns=False)
    else:
        grid = ResultGrid(ExperimentAnalysis(path))
        frame = pd.concat([result.metrics_dataframe for result in grid], ignore_index=True)
    return {"seconds": time.perf_counter() - started, "rows": len(frame)}


def load_million(path: str) -> dict:
    import psutil

    import radas

    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    started = time.perf_counter()
    import threading

    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    frame = radas.Tuner(path).get_history_dataframe(brief_columns=False)
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    peak = max(peak, process.memory_info().rss)
    size = int(frame.memory_usage(deep=True).sum())
    return {
        "seconds": seconds,
        "rows": len(frame),
        "frame_bytes": size,
        "peak_extra_bytes": peak - before,
    }


def write_million(path: str, trials: int, reports: int) -> dict:
    """A 1,000,000-row history written by radas's own writer code (rows as Tune reports them,
    with Ray's bookkeeping fields) and compacted as at the end of a fit, plus a minimal
    experiment state so radas.Tuner opens it."""
    import pyarrow.parquet as pq

    from radas.storage.history_parts import HISTORY_DIR, compact_history, rows_to_table

    directory = Path(path) / HISTORY_DIR
    directory.mkdir(parents=True)
    writer = "0bec0bec"  # part names as HistoryRecorder writes them (history.PART_NAME)
    now = time.time()
    trial_ids = [f"abcde_{t:05d}" for t in range(trials)]
    states = []
    batch = []
    for step in range(1, reports + 1):
        for t, trial_id in enumerate(trial_ids):
            batch.append(
                {
                    "loss": 1.0 / step,
                    "step": step - 1,
                    "i": t,
                    "timestamp": int(now),
                    "checkpoint_dir_name": None,
                    "done": False,
                    "training_iteration": step,
                    "trial_id": trial_id,
                    "date": "2026-11-28_12-00-00",
                    "time_this_iter_s": 0.001,
                    "time_total_s": 0.001 * step,
                    "pid": 1234,
                    "hostname": "bench",
                    "node_ip": "127.0.0.1",
                    "time_since_restore": 0.001 * step,
                    "iterations_since_restore": step,
                    "config/i": t,
                    "config/reports": reports,
                }
            )
        if len(batch) >= 50_000:
            pq.write_table(
                rows_to_table(batch),
                directory / f"{time.time_ns():020d}-{writer}-{step:06d}.parquet",
            )
            batch = []
    if batch:
        pq.write_table(
            rows_to_table(batch),
            directory / f"{time.time_ns():020d}-{writer}-{reports + 1:06d}.parquet",
        )
    for trial_id in trial_ids:
        states.append(
            [
                json.dumps(
                    {
                        "trial_id": trial_id,
                        "status": "TERMINATED",
                        "config": {},
                        "relative_logdir": trial_id,
                    }
                ),
                json.dumps({}),
            ]
        )
    (Path(path) / "experiment_state-2026-11-28_12-00-00.json").write_text(
        json.dumps({"trial_data": states})
    )
    compact_history(path)  # what radas's driver does when a fit ends
    return {"path": path}


# --- the driver ---------------------------------------------------------------------------


def child(name: str, **kwargs) -> dict:
    completed = subprocess.run(
        [sys.executable, str(HERE), "--child", name, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    if completed.returncode != 0:
        sys.exit(f"{name} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size")
    parser.add_argument("--only", choices=["grids", "streams", "history"], action="append")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, kwargs = args.child[0], json.loads(args.child[1])
        print(json.dumps(globals()[name](**kwargs)))
        return

    home = tempfile.mkdtemp(prefix="radas-bench-scale-")
    os.environ["RADAS_HOME"] = home
    os.chdir(home)
    parts = set(args.only or ["grids", "streams", "history"])
    s = args.scale
    big, small = int(10_000 * s), int(1_000 * s)
    if "grids" in parts:
        ten = child("radas_grids", trials=small, repeats=10)["seconds"]
        one = child("radas_grids", trials=big, repeats=1)["seconds"]
        raw = child("raw_grid", trials=big, storage=home)["seconds"]
        print("\n1. Large grids (trivial trials)")
        print(
            f"   radas, 10 x {small:,} trials : {ten:8.1f} s  "
            f"({1000 * ten / (10 * small):.1f} ms/trial)"
        )
        print(f"   radas, 1 x {big:,} trials  : {one:8.1f} s  ({1000 * one / big:.1f} ms/trial)")
        print(f"   raw Tune tuned, {big:,}     : {raw:8.1f} s  ({1000 * raw / big:.1f} ms/trial)")
        print(f"   one big grid / ten small ones: {one / ten:.2f}x  (target <= 2x)")
        print(f"   radas / raw Tune, {big:,} trials: {one / raw:.2f}x the time")
    if "streams" in parts:
        trials, reports = max(2, int(200 * s)), 100
        raw = child("streams", way="raw", trials=trials, reports=reports, storage=home)
        ours = child("streams", way="radas", trials=trials, reports=reports, storage=home)
        print(f"\n2. Result streams ({trials} trials x {reports} reports)")
        print(
            f"   raw Tune, default loggers : {raw['seconds']:7.1f} s  "
            f"{raw['results_per_s']:8.0f} results/s"
        )
        print(
            f"   radas (full history kept) : {ours['seconds']:7.1f} s  "
            f"{ours['results_per_s']:8.0f} results/s"
        )
        print(
            f"   throughput: {ours['results_per_s'] / raw['results_per_s']:.2f}x  (target >= 1.8x)"
        )
    if "history" in parts:
        trials, reports = max(2, int(2_000 * s)), 100
        path = child("make_stored_history", trials=trials, reports=reports)["path"]
        ray_load = child("load_stored", way="ray", path=path)
        our_load = child("load_stored", way="radas", path=path)
        assert ray_load["rows"] == our_load["rows"] == trials * reports
        print(
            f"\n3. History loading ({trials:,} trials x {reports} reports = "
            f"{trials * reports:,} rows)"
        )
        print(f"   Ray ResultGrid + metrics_dataframe : {ray_load['seconds']:6.2f} s")
        print(f"   radas get_history_dataframe()      : {our_load['seconds']:6.2f} s")
        print(f"   speed-up: {ray_load['seconds'] / our_load['seconds']:.1f}x  (target >= 5x)")
        million = Path(home) / "million"
        child("write_million", path=str(million), trials=int(10_000 * s), reports=100)
        loaded = child("load_million", path=str(million))
        print(
            f"   {loaded['rows']:,} rows: {loaded['seconds']:.2f} s (target <= 3 s); peak extra "
            f"memory {loaded['peak_extra_bytes'] / 2**20:.0f} MiB = "
            f"{loaded['peak_extra_bytes'] / loaded['frame_bytes']:.2f}x the frame's "
            f"{loaded['frame_bytes'] / 2**20:.0f} MiB (target <= 2x)"
        )


if __name__ == "__main__":
    main()
