"""Cluster round trip: `ray job submit` of a hand-written Tune script vs radas, same cluster.

Starts a local cluster (radas's helper: ray start on 127.0.0.1 with token auth), then times a
3-trial trivial experiment from the call to having its results, alternating the two ways
(`--repeats` times each), and prints the medians and their ratio.

    python bench/bench_cluster.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TUNE_SCRIPT = """
from ray import tune

def trivial(config):
    return {"score": config["i"] * 2}

grid = tune.Tuner(
    trivial,
    param_space={"i": tune.grid_search([0, 1, 2])},
    tune_config=tune.TuneConfig(reuse_actors=True),
    run_config=tune.RunConfig(storage_path=STORAGE, name="cli", verbose=0),
).fit()
print(grid.get_dataframe()[["config/i", "score"]])
"""


def trivial(config):
    return {"score": config["i"] * 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="radas-bench-cluster-"))
    os.environ["RADAS_HOME"] = str(home)
    os.environ["RADAS_CONFIG"] = str(home / "config.toml")

    from ray import tune

    import radas
    from radas.clusters import start_local_cluster

    cluster = start_local_cluster("bench", num_cpus=2)
    workdir = home / "work"
    workdir.mkdir()
    storage = home / "cli-results"
    (workdir / "tune_script.py").write_text(f"STORAGE = {str(storage)!r}\n" + TUNE_SCRIPT)
    os.chdir(workdir)
    cli_env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(cluster.token_file),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    times: dict[str, list[float]] = {"ray job submit": [], "radas": []}
    try:
        for _ in range(args.repeats):
            started = time.perf_counter()
            completed = subprocess.run(
                [
                    *ray_cli,
                    "job",
                    "submit",
                    "--address",
                    cluster.address,
                    "--working-dir",
                    ".",
                    "--",
                    "python",
                    "tune_script.py",
                ],
                env=cli_env,
                capture_output=True,
                text=True,
                check=False,
            )
            times["ray job submit"].append(time.perf_counter() - started)
            if completed.returncode != 0:
                sys.exit(f"ray job submit failed:\n{completed.stdout}\n{completed.stderr}")

            started = time.perf_counter()
            results = radas.run_experiment_sync(
                user_name="bench",
                experiment_name="radas",
                trainable=trivial,
                param_space={"i": tune.grid_search([0, 1, 2])},
                run_with="cluster:bench",
                run_choice="run",
            )
            times["radas"].append(time.perf_counter() - started)
            assert sorted(results["df"]["score"]) == [0, 2, 4]
    finally:
        cluster.stop()
    print(f"\n{'way':<16}{'median s':>10}   runs")
    for way, values in times.items():
        print(
            f"{way:<16}{statistics.median(values):>10.1f}   {', '.join(f'{v:.1f}' for v in values)}"
        )
    ratio = statistics.median(times["radas"]) / statistics.median(times["ray job submit"])
    print(f"\nradas / ray job submit: {ratio:.2f}x the time (target <= 0.8x)")


if __name__ == "__main__":
    main()
