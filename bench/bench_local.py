"""Local sweep overhead: raw Ray Tune (defaults), raw Ray Tune hand-tuned, and radas.

Each variant runs a grid of trivial trials in its own process (so one cannot warm up another)
and is timed from before ``Tuner(...)``/``run_experiment`` to having the DataFrame; Ray's
start-up is not counted. Prints seconds, ms per trial and the ratios side by side.

    python bench/bench_local.py            # 100 trials for Ray's defaults, 1000 for the others
    python bench/bench_local.py --quick    # 20 / 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def trivial(config):
    return {"score": config["i"] * 2}


def run_variant(variant: str, trials: int, storage: str) -> float:
    import logging

    import ray
    from ray import tune

    import radas
    from radas.backends.local import ensure_local_ray

    ensure_local_ray({})  # the same in-process Ray for every variant, started before timing
    space = {"i": tune.grid_search(list(range(trials)))}
    started = time.perf_counter()
    if variant == "radas":
        results = radas.run_experiment_sync(
            user_name="bench",
            experiment_name=f"bench-{trials}",
            trainable=trivial,
            param_space=space,
            run_choice="run",
        )
        rows = len(results["df"])
    else:
        tune_config = tune.TuneConfig(reuse_actors=variant == "ray-tuned")
        run_config = tune.RunConfig(storage_path=storage, name=f"{variant}-{trials}")
        rows = len(
            tune.Tuner(trivial, param_space=space, tune_config=tune_config, run_config=run_config)
            .fit()
            .get_dataframe()
        )
    seconds = time.perf_counter() - started
    assert rows == trials, (variant, rows)
    logging.shutdown()
    ray.shutdown()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="radas-bench-")
    if args.variant:
        os.environ["RADAS_HOME"] = home
        print(json.dumps({"seconds": run_variant(args.variant, args.trials, home)}))
        return

    small, large = (20, 200) if args.quick else (100, 1000)
    plan = [("ray-defaults", small), ("ray-tuned", large), ("radas", large)]
    per_trial = {}
    print(f"{'variant':<14}{'trials':>8}{'seconds':>10}{'ms/trial':>10}")
    for variant, trials in plan:
        completed = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--trials", str(trials)],
            capture_output=True,
            text=True,
            cwd=home,
            check=False,
        )
        if completed.returncode != 0:
            sys.exit(f"{variant} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
        seconds = json.loads(completed.stdout.strip().splitlines()[-1])["seconds"]
        per_trial[variant] = seconds / trials
        print(f"{variant:<14}{trials:>8}{seconds:>10.1f}{1000 * seconds / trials:>10.1f}")
    print()
    print(
        f"radas vs Ray defaults:   {per_trial['ray-defaults'] / per_trial['radas']:.1f}x faster "
        "(target >= 20x)"
    )
    print(
        f"radas vs hand-tuned Ray: {per_trial['radas'] / per_trial['ray-tuned']:.2f}x the time "
        "(target <= 1.15x)"
    )


if __name__ == "__main__":
    main()
