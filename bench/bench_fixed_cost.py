"""radas's fixed cost against the same sweep written by hand with Ray Tune, whole processes.

Part 1, fixed cost: a 4-trial trivial grid, each variant in a fresh Python process, timed by
the parent from the process's start to its exit (imports, Ray's start, the sweep, the
DataFrame, shutdown); the child also reports when its imports were done and when it had the
DataFrame in hand. Variants run alternated in pairs (hand, radas, hand, radas, ...) so a
change in the machine's load hits both; medians of N pairs and the ratio are printed.

- ``hand``: ``ray.init()`` + ``tune.Tuner(trainable, tune_config=TuneConfig(reuse_actors=True))
  .fit().get_dataframe()``, as a user writes it (Ray's defaults: the dashboard too, where
  ray[default] is installed).
- ``radas``: ``run_experiment_sync(..., run_choice="run")`` with its defaults (dos=["run",
  "analyze"], no plot_fn: no figure), ``results["df"]``.
- ``hand-lean``: ``ray.init(include_dashboard=False)``, as radas starts Ray (no dashboard).
- ``radas-run`` (``--all``): ``dos=["run"]`` (no DataFrame built; the Tuner is in hand).
- ``radas@LABEL`` (``--radas-src LABEL=PATH``): radas from another source tree, e.g. the
  commit before a change, in the same rounds.

Part 2, short sweeps: K one-second trials at S slots (1 CPU per trial), timed from the first
line after the imports (Ray's start included) to the DataFrame in hand, then a second sweep in
the same process; the ideal is K / S seconds. Raw Tune (``hand-lean``) starts Ray with
``ray.init(num_cpus=S)``; radas starts its own local Ray, sized to the machine, when S is the
machine's CPU count (else it is given the same ``ray.init(num_cpus=S)`` first, the way a user
caps it, and runs on that Ray). Medians of ``--short-rounds``, variants alternated.

    .venv/bin/python bench/bench_fixed_cost.py [--pairs 5] [--trials 24] [--slots 2] [--all]
        [--radas-src before=/path/to/radas-before/src]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

STARTED = time.perf_counter()
SOURCES: dict[str, str] = {}  # label -> a radas source tree to compare (``--radas-src``)


def trivial(config):
    return {"score": config["i"] * 2}


def one_second(config):
    time.sleep(1.0)
    return {"score": config["i"]}


def child(variant: str, trials: int, slots: int, sweeps: int) -> dict[str, float]:
    """One variant in this (fresh) process; returns its timestamps (s since the start)."""
    import ray
    from ray import tune

    if variant.startswith("radas"):
        import radas
    imported = time.perf_counter()
    trainable = trivial if trials <= 4 else one_second
    space = {"i": tune.grid_search(list(range(trials)))}
    marks = {"imported": imported - STARTED}
    short = trials > 4
    began = time.perf_counter()  # the first sweep's time includes Ray's start, for every variant
    if short and (variant.startswith("hand") or slots != os.cpu_count()):
        # radas sizes its own Ray to the machine; other slot counts: the user's Ray, as here
        ray.init(num_cpus=slots, include_dashboard=False, _node_ip_address="127.0.0.1")
    for sweep in range(sweeps):
        if sweep:
            began = time.perf_counter()
        if variant.startswith("radas"):
            results = radas.run_experiment_sync(
                user_name="bench",
                experiment_name=f"fixed-{trials}",
                trainable=trainable,
                param_space=space,
                run_choice="run",
                dos=["run"] if variant == "radas-run" else ["run", "analyze"],
            )
            df = results["df"] if variant == "radas" else None
            rows = trials if df is None else len(df)
        else:
            if not ray.is_initialized():
                if variant == "hand-lean":
                    ray.init(include_dashboard=False)
                else:
                    ray.init()
            df = (
                tune.Tuner(
                    trainable,
                    param_space=space,
                    tune_config=tune.TuneConfig(reuse_actors=True),
                    run_config=tune.RunConfig(
                        storage_path=os.environ["RADAS_HOME"], name=f"hand-{sweep}"
                    ),
                )
                .fit()
                .get_dataframe()
            )
            rows = len(df)
        assert rows == trials, (variant, rows)
        marks[f"sweep{sweep}"] = time.perf_counter() - began
    marks["df"] = time.perf_counter() - STARTED
    return marks


def run_child(variant: str, trials: int, slots: int, sweeps: int) -> dict[str, float]:
    """One child process; radas from ``--radas-src`` for ``radas@<label>`` variants."""
    home = tempfile.mkdtemp(prefix="radas-bench-")
    env = {**os.environ, "RADAS_HOME": home}
    variant, _, label = variant.partition("@")
    if label:
        env["PYTHONPATH"] = SOURCES[label]
    began = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    arguments = ["--child", variant, "--trials", str(trials), "--slots", str(slots)]
    completed = subprocess.run(
        [sys.executable, __file__, *arguments, "--sweeps", str(sweeps)],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the process and the Ray processes it reaped (its workers, raylet, GCS):
    # less sensitive than wall time to what else runs on the machine
    cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    if completed.returncode != 0:
        sys.exit(f"{variant} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    marks = json.loads(completed.stdout.strip().splitlines()[-1])
    return {**marks, "wall": wall, "cpu": cpu}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def fixed_cost(pairs: int, variants: list[str]) -> None:
    print(f"Fixed cost: 4 trivial trials, whole process, {pairs} rounds of {variants}; {load()}")
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    for round_ in range(pairs):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for variant in order:
            runs[variant].append(run_child(variant, 4, 0, 1))
        line = "  ".join(f"{v} {runs[v][-1]['wall']:.2f}" for v in variants)
        print(f"  round {round_ + 1}: {line} s")
    print(
        f"{'variant':<15}{'process s':>10}{'to df s':>9}{'imports s':>10}{'sweep s':>9}{'CPU s':>8}"
    )
    medians = {}
    for variant in variants:
        column = {k: statistics.median(r[k] for r in runs[variant]) for k in runs[variant][0]}
        medians[variant] = column
        print(
            f"{variant:<15}{column['wall']:>10.2f}{column['df']:>9.2f}"
            f"{column['imported']:>10.2f}{column['sweep0']:>9.2f}{column['cpu']:>8.2f}"
        )
    hand = medians["hand"]
    for variant in variants:
        if variant != "hand":
            print(
                f"{variant} / hand: process {medians[variant]['wall'] / hand['wall']:.2f}, "
                f"CPU {medians[variant]['cpu'] / hand['cpu']:.2f}"
            )
    print(f"(after: {load()})")


def short_sweeps(trials: int, slots: int, rounds: int, radas_variants: list[str]) -> None:
    ideal = trials / slots
    print(
        f"\nShort sweeps: {trials} one-second trials at {slots} slots, ideal {ideal:.1f} s, "
        f"timed from the first line after the imports (Ray's start included) to the DataFrame; "
        f"then a second sweep in the same process; median of {rounds}; {load()}"
    )
    variants = ["hand-lean", *radas_variants]
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    for round_ in range(rounds):
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            runs[variant].append(run_child(variant, trials, slots, 2))
    for variant in variants:
        first = statistics.median(r["sweep0"] for r in runs[variant])
        second = statistics.median(r["sweep1"] for r in runs[variant])
        print(
            f"  {variant:<14} first sweep {first:5.1f} s ({ideal / first:.2f} of ideal), "
            f"second in the same process {second:5.1f} s ({ideal / second:.2f} of ideal)"
        )
    print(f"(after: {load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--all", action="store_true", help="also radas-run (dos=['run'])")
    parser.add_argument("--skip-short", action="store_true")
    parser.add_argument("--short-rounds", type=int, default=3)
    parser.add_argument(
        "--radas-src",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also radas from another source tree (e.g. before=/tmp/radas-before/src)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sweeps", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.trials, args.slots, args.sweeps)))
        return
    for pair in args.radas_src:
        label, _, path = pair.partition("=")
        SOURCES[label] = path
    others = [f"radas@{label}" for label in SOURCES]
    variants = ["hand", "hand-lean", "radas", *others]
    if args.all:
        variants += ["radas-run", *(f"radas-run@{label}" for label in SOURCES)]
    fixed_cost(args.pairs, variants)
    if not args.skip_short:
        short_sweeps(args.trials, args.slots, args.short_rounds, ["radas", *others])


if __name__ == "__main__":
    main()
