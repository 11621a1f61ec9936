"""What keeping each trial's output in its folder costs (``radas_output.log``), side by side.

A print in a trial, timed inside the trial: ``--lines`` prints of an 80-character line, with
radas keeping the output (the trainable as radas runs it) and without (the trainable as the
user wrote it: ``radas.tune.configuration.with_output_kept`` swapped for the identity), ``--pairs``
alternated pairs of one local trial each; the prints go to the worker's stdout as usual.

    python bench/bench_trial_output.py                 # 5000 lines, 3 pairs
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def printer(config):
    line = "x" * 79
    started = time.perf_counter()
    for _ in range(config["lines"]):
        print(line)
    return {"us_per_line": 1e6 * (time.perf_counter() - started) / config["lines"]}


def run_once(kept: bool, lines: int, index: int) -> float:
    import radas
    from radas.tune import configuration, trial

    configuration.with_output_kept = (
        trial.with_output_kept if kept else (lambda trainable: trainable)
    )
    results = radas.run_experiment_sync(
        user_name="bench",
        experiment_name=f"output-{'kept' if kept else 'console'}-{index}",
        trainable=printer,
        param_space={"lines": lines},
        run_choice="run",
        dos=["run", "analyze"],
    )
    return float(results["df"]["us_per_line"].iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radas-bench-output-") as home:
        os.environ["RADAS_HOME"] = home
        os.chdir(home)
        from radas.backends.local import ensure_local_ray

        ensure_local_ray({})  # started before timing
        run_once(False, args.lines, -1)  # warm-up: the first trial of a process starts slower
        plain, kept = [], []
        for index in range(args.pairs):
            plain.append(run_once(False, args.lines, index))
            kept.append(run_once(True, args.lines, index))
    console, kept_ = statistics.median(plain), statistics.median(kept)
    print(
        f"\na print of one 80-character line in a trial (median of {args.pairs} pairs, "
        f"{args.lines} lines each):\n"
        f"  console only              {console:8.1f} us/line\n"
        f"  console + radas_output.log {kept_:7.1f} us/line   (+{kept_ - console:.1f} us/line, "
        f"ratio {kept_ / console:.2f}x)"
    )


if __name__ == "__main__":
    main()
