"""What writing the history at each report with a state costs (issue 23), side by side.

radas's history recorder used to write its buffered rows every 2 s only; it now also writes
them when a report carries a trial's state (``HistoryRecorder.on_checkpoint``), so that no
stored experiment state names a state newer than the history. This prints, in one run:

1. the driver's cost of one write of the buffer (a flush of 1 row, as at each report with a
   state, and of 16 rows, as the 2 s timer sees with 2 trials at 8 reports/s), on the local
   disk and on S3 (moto's server on 127.0.0.1, ``tests/support/moto_s3.py``: a local stand-in, no
   network latency);
2. a real local sweep, 2 trials x ``--epochs`` epochs of ``--epoch-ms`` with a state saved
   every epoch, run alternately with the old recorder (timer only: "before") and the new one
   ("after"): wall time, how many history parts exist when the fit ends (before the
   compaction merges them), how long loading those parts takes.

    python bench/bench_history_flush.py
    python bench/bench_history_flush.py --epochs 40 --epoch-ms 100 --rounds 2 --no-s3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

TRIAL_ROW = {  # one report as Tune hands it to the callbacks (flattened), a radas state with it
    "epoch": 7,
    "loss": 0.123,
    "timestamp": 1765000000,
    "checkpoint_dir_name": "checkpoint_000006",
    "done": False,
    "training_iteration": 7,
    "trial_id": "a1b2c_00000",
    "date": "2026-12-07_07-30-00",
    "time_this_iter_s": 0.1,
    "time_total_s": 0.7,
    "pid": 1234,
    "hostname": "host",
    "node_ip": "127.0.0.1",
    "config/lr": 0.01,
    "config/marks": "/tmp/marks",
    "time_since_restore": 0.7,
    "iterations_since_restore": 7,
}


def flush_cost_ms(filesystem, experiment_fs_path: str, rows: int, repeat: int) -> float:
    """Median wall time of one HistoryRecorder.flush() of ``rows`` buffered rows."""
    from radas.storage.history_parts import HISTORY_DIR
    from radas.tune.history import HistoryRecorder

    recorder = HistoryRecorder()
    recorder._target = (filesystem, experiment_fs_path)
    filesystem.create_dir(f"{experiment_fs_path}/{HISTORY_DIR}", recursive=True)
    times = []
    for n in range(repeat):
        recorder._rows = [dict(TRIAL_ROW, training_iteration=n * rows + k) for k in range(rows)]
        started = time.perf_counter()
        recorder.flush()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def buffer_cost_ms(repeat: int) -> float:
    """Median time of buffering one report (what every report costs, before and after)."""
    from radas.tune.history import HistoryRecorder

    class Trial:
        trial_id = "a1b2c_00000"

    recorder = HistoryRecorder()
    recorder._target = (None, "unused")
    times = []
    nested = {k: v for k, v in TRIAL_ROW.items() if not k.startswith("config/")}
    nested["config"] = {"lr": 0.01, "marks": "/tmp/marks"}
    for _ in range(repeat):
        started = time.perf_counter()
        recorder.on_trial_result(0, [], Trial(), dict(nested))
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def micro(use_s3: bool, repeat: int) -> None:
    import pyarrow.fs as pafs

    print("1. one write of the history buffer (median of", repeat, "each)")
    print(f"   buffering a report (every report, unchanged):  {buffer_cost_ms(repeat):7.3f} ms")
    with tempfile.TemporaryDirectory() as directory:
        local = pafs.LocalFileSystem()
        for rows in (1, 16):
            cost = flush_cost_ms(local, f"{directory}/e{rows}", rows, repeat)
            print(f"   local disk, flush of {rows:2d} row(s):                {cost:7.3f} ms")
    if not use_s3:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support.moto_s3 import AWS_ENV, moto_s3_server

    with moto_s3_server() as s3:
        host = s3.endpoint_url.removeprefix("http://")
        filesystem = pafs.S3FileSystem(
            endpoint_override=host,
            scheme="http",
            access_key=AWS_ENV["AWS_ACCESS_KEY_ID"],
            secret_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            region=AWS_ENV["AWS_DEFAULT_REGION"],
        )
        for rows in (1, 16):
            cost = flush_cost_ms(filesystem, f"{s3.bucket}/bench-{uuid.uuid4().hex}", rows, repeat)
            print(f"   S3 (moto, 127.0.0.1), flush of {rows:2d} row(s):      {cost:7.3f} ms")


def trainable(config):
    import radas

    state = radas.load_state() or {"epoch": 0}
    for epoch in range(state["epoch"] + 1, config["epochs"] + 1):
        time.sleep(config["epoch_ms"] / 1000)
        radas.report({"epoch": epoch}, state={"epoch": epoch})


def sweep(variant: str, epochs: int, epoch_ms: float) -> dict:
    """One local sweep; ``before``: the recorder writes on its timer only (as radas did)."""
    from ray import tune

    import radas
    from radas.storage import history_parts
    from radas.tune import history

    seen: dict = {}
    compact = history_parts.compact_history
    on_checkpoint = history.HistoryRecorder.on_checkpoint
    flush = history.HistoryRecorder.flush
    seen["flushes"], seen["flush_s"] = 0, 0.0

    def timed_flush(self):  # the driver's time in the recorder's writes
        seen["flushes"] += bool(self._rows)
        started = time.perf_counter()
        try:
            flush(self)
        finally:
            seen["flush_s"] += time.perf_counter() - started

    history.HistoryRecorder.flush = timed_flush

    def counting_compact(experiment_path):
        parts = history_parts.history_parts(experiment_path)
        seen["parts"] = len(parts)
        started = time.perf_counter()
        frame = history_parts.load_stored_history(experiment_path, set())
        seen["load_ms"] = 1000 * (time.perf_counter() - started)
        seen["rows"] = len(frame)
        compact(experiment_path)

    history_parts.compact_history = counting_compact
    if variant == "before":
        history.HistoryRecorder.on_checkpoint = lambda self, *args, **info: None  # timer only
    try:
        started = time.perf_counter()
        radas.run_experiment_sync(
            user_name="bench",
            experiment_name=f"history-flush-{variant}-{uuid.uuid4().hex[:6]}",
            trainable=trainable,
            param_space={
                "epochs": epochs,
                "epoch_ms": epoch_ms,
                "i": tune.grid_search([0, 1]),
            },
            run_choice="run",
        )
        seen["wall_s"] = time.perf_counter() - started
    finally:
        history_parts.compact_history = compact
        history.HistoryRecorder.on_checkpoint = on_checkpoint
        history.HistoryRecorder.flush = flush
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--epoch-ms", type=float, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) measurement")
    args = parser.parse_args()

    import os

    os.environ.setdefault("RADAS_HOME", tempfile.mkdtemp(prefix="radas-bench-home-"))
    micro(not args.no_s3, args.repeat)

    print(f"\n2. local sweep, 2 trials x {args.epochs} epochs of {args.epoch_ms:g} ms, a state")
    print("   every epoch (alternating; the first sweep of the process also starts Ray)")
    sweep("after", 3, 0)  # warm-up: Ray starts
    print(
        f"   {'variant':8} {'wall s':>7} {'writes':>7} {'write ms/report':>16} "
        f"{'parts':>6} {'rows':>5} {'load ms':>8}"
    )
    reports = 2 * args.epochs
    for _ in range(args.rounds):
        for variant in ("before", "after"):
            seen = sweep(variant, args.epochs, args.epoch_ms)
            print(
                f"   {variant:8} {seen['wall_s']:7.2f} {seen['flushes']:7d} "
                f"{1000 * seen['flush_s'] / reports:16.3f} {seen['parts']:6d} {seen['rows']:5d} "
                f"{seen['load_ms']:8.1f}"
            )
    print(
        "   (writes: parts written during the fit; write ms/report: the driver's time in "
        "them per report, every report carrying a state; parts: how many the compaction at "
        "the end merges)"
    )


if __name__ == "__main__":
    main()
