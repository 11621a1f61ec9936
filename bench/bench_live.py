"""What a live figure costs a local sweep: the same sweep with and without ``live=`` (each
refresh draws the figure and rewrites the report page).

    python bench/bench_live.py                 # 3 rounds, live=10
    python bench/bench_live.py --live 2 --rounds 5 --reports 500

Each run is a process of its own (so one cannot warm up another), the two variants
interleaved and alternating which goes first in a round. The sweep: ``--trials`` trials, one
CPU each, each reporting ``--reports`` results with ``--work-ms`` of busy work before each
(the driver, which also draws the live figure, shares the machine with them). Timed from
before ``run_experiment`` to its result (the DataFrame of every report and the final figure,
in both variants); Ray's start-up is not counted. Prints each run's reports per second, the
live figure's refreshes, and the ratio of the medians (target: live >= 0.95x without).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def busy_reports(config):
    import time

    import radas

    for step in range(config["reports"]):
        end = time.perf_counter() + config["work_s"]
        spin = 0
        while time.perf_counter() < end:
            spin += 1
        radas.report({"loss": 1.0 / (step + 1) + config["i"], "step": step})


def run_variant(live: float, trials: int, reports: int, work_s: float) -> dict[str, float]:
    import logging

    import ray
    import seaborn as sns
    from ray import tune

    import radas
    from radas.backends.local import ensure_local_ray

    drawn = []

    def counted_lineplot(*, ax, **kwargs):
        drawn.append(1)
        return sns.lineplot(ax=ax, **kwargs)

    ensure_local_ray({})  # started before timing, as in bench_local
    started = time.perf_counter()
    results = radas.run_experiment_sync(
        user_name="bench",
        experiment_name="bench-live",
        trainable=busy_reports,
        param_space={
            "i": tune.grid_search(list(range(trials))),
            "reports": reports,
            "work_s": work_s,
        },
        run_choice="run",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        plot_fn=counted_lineplot,
        plot_kwargs=dict(x="step", y="loss", hue="config/i"),
        live=live or False,
    )
    seconds = time.perf_counter() - started
    assert len(results["df"]) == trials * reports, len(results["df"])
    logging.shutdown()
    ray.shutdown()
    return {"seconds": seconds, "refreshes": len(drawn) - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--live", type=float, default=10.0, help="seconds between redraws")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)  # live seconds, 0: off
    args = parser.parse_args()
    if args.child is not None:
        os.environ["RADAS_HOME"] = tempfile.mkdtemp(prefix="radas-bench-live-")
        measured = run_variant(args.child, args.trials, args.reports, args.work_ms / 1000)
        print(json.dumps(measured))
        return

    total = args.trials * args.reports
    print(
        f"{args.trials} trials x {args.reports} reports, {args.work_ms:g} ms of work each; "
        f"live={args.live:g}; {os.cpu_count()} CPUs"
    )
    print(f"{'round':<7}{'variant':<10}{'seconds':>9}{'reports/s':>11}{'refreshes':>11}")
    rates: dict[str, list[float]] = {"without": [], "live": []}
    for round_number in range(1, args.rounds + 1):
        order = ["without", "live"] if round_number % 2 else ["live", "without"]
        for variant in order:
            live = args.live if variant == "live" else 0.0
            command = [sys.executable, __file__, "--child", str(live), "--trials"]
            command += [str(args.trials), "--reports", str(args.reports)]
            command += ["--work-ms", str(args.work_ms)]
            workdir = tempfile.mkdtemp(prefix="radas-bench-live-")
            done = subprocess.run(command, capture_output=True, text=True, cwd=workdir, check=False)
            if done.returncode != 0:
                sys.exit(f"{variant} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            rate = total / measured["seconds"]
            rates[variant].append(rate)
            refreshes = int(measured["refreshes"]) if variant == "live" else "-"
            print(
                f"{round_number:<7}{variant:<10}{measured['seconds']:>9.1f}{rate:>11.1f}"
                f"{refreshes:>11}"
            )
    ratio = statistics.median(rates["live"]) / statistics.median(rates["without"])
    print(f"\nthroughput with live / without (medians): {ratio:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
