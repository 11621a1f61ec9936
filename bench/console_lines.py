"""Console noise: the lines six lifecycle scenarios print, and what kind of lines they are.

Each scenario runs in its own process (stdout and stderr captured together, through a pipe, so
Ray's driver and worker output is counted too): (1) a local run of 4 trials x 3 reports with
analyze, (2) a local run where 2 of 4 trials raise, (3) the same grid as (1) on a cluster,
(4) ``stop_attach`` of a running cluster experiment from a second process, (5) ``restore`` of
it, (6) ``dos=["analyze"]`` of (1). The cluster is a real local one (``start_local_cluster`` on
127.0.0.1, token auth), started here and stopped at the end. Prints one row per scenario:

- lines: every non-empty line printed; radas: lines starting ``[radas]``; trainable: the
  trainable's own prints and the scenario script's last line; other: the rest (Ray's logs,
  banners, tables, tracebacks);
- ray_log: Ray's logging lines (``INFO``/``WARNING`` records, ``(raylet)`` lines, the start-up
  banner), ansi: raw ANSI escape sequences, traceback: lines of Python tracebacks
  (``Traceback (most recent call last):`` and ``File "...", line N``), forbidden: Ray's texts
  that contradict radas (``Tuner.restore``, ``Stop signal received``, ``Failed to fetch
  metrics``).

    python bench/console_lines.py [--keep DIR]   # DIR keeps each scenario's output
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

TRAINABLES = """
import time

import radas


def steady(config):
    for step in range(3):
        radas.report({"loss": config["lr"] / (step + 1), "step": step})
    print("TRAINABLE-PRINT done lr", config["lr"], flush=True)


def flaky(config):
    radas.report({"loss": config["i"]})
    if config["i"] % 2:
        raise ValueError(f"i={config['i']} is odd")
    print("TRAINABLE-PRINT done i", config["i"], flush=True)


def long_running(config):
    for epoch in range(20):
        time.sleep(0.5)
        print(f"TRAINABLE-PRINT epoch {epoch}", flush=True)
        radas.report({"loss": 1 / (epoch + 1), "epoch": epoch})
"""

SCENARIO = """
import sys

from ray import tune

import radas
import trainables

name, cluster = sys.argv[1], sys.argv[2]
tune_config = dict(tune_config=tune.TuneConfig(metric="loss", mode="min"))
grid = {"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4])}
calls = {
    "local_run": dict(experiment_name="grid", trainable=trainables.steady, param_space=grid,
                      run_with="local", run_choice="run"),
    "local_errors": dict(experiment_name="errors", trainable=trainables.flaky,
                         param_space={"i": tune.grid_search([0, 1, 2, 3])}, run_with="local",
                         run_choice="run"),
    "cluster_run": dict(experiment_name="grid", trainable=trainables.steady, param_space=grid,
                        run_with=cluster, run_choice="run"),
    "cluster_long": dict(experiment_name="long", trainable=trainables.long_running,
                         param_space={"i": tune.grid_search([0, 1, 2, 3])}, run_with=cluster,
                         run_choice="run"),
    "cluster_stop_attach": dict(experiment_name="long", trainable=trainables.long_running,
                                run_with=cluster, run_choice="stop_attach"),
    "cluster_restore": dict(experiment_name="long", trainable=trainables.long_running,
                            param_space={"i": tune.grid_search([0, 1, 2, 3])}, run_with=cluster,
                            run_choice="restore"),
    "analyze": dict(experiment_name="grid", trainable=trainables.steady, run_with="local",
                    dos=["analyze"]),
}
results = radas.run_experiment_sync(user_name="bench", tuner_init_kwargs=tune_config,
                                    **calls[name])
print("SCENARIO-DONE", len(results["df"]), flush=True)
"""

FORBIDDEN = ("Tuner.restore", "Stop signal received", "Failed to fetch metrics")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RAY_LOG = re.compile(
    r"\b(INFO|WARNING|WARN)\b.*\.py:\d+|\(raylet\)|Started a local Ray instance|"
    r"DeprecationWarning|FutureWarning|UserWarning|RayDeprecationWarning"
)
TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File ".*", line \d+')
MARKERS = ("TRAINABLE-PRINT", "SCENARIO-DONE")
COLUMNS = ("lines", "radas", "trainable", "other", "ray_log", "ansi", "traceback", "forbidden")


def count(output: str) -> dict[str, int]:
    lines = [line for line in output.splitlines() if line.strip()]
    plain = [ANSI.sub("", line) for line in lines]
    radas_lines = sum(line.lstrip().startswith("[radas]") for line in plain)
    trainable = sum(any(marker in line for marker in MARKERS) for line in plain)
    return {
        "lines": len(lines),
        "radas": radas_lines,
        "trainable": trainable,
        "other": len(lines) - radas_lines - trainable,
        "ray_log": sum(bool(RAY_LOG.search(line)) for line in plain),
        "ansi": len(ANSI.findall(output)),
        "traceback": sum(bool(TRACEBACK.search(line)) for line in plain),
        "forbidden": sum(output.count(text) for text in FORBIDDEN),
    }


def scenario_command(name: str, cluster: str) -> list[str]:
    return [sys.executable, "scenario.py", name, cluster]


def run_scenario(name: str, cluster: str, workdir: Path, keep: Path) -> dict[str, int]:
    completed = subprocess.run(
        scenario_command(name, cluster),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    (keep / f"{name}.txt").write_text(completed.stdout)
    if completed.returncode != 0 or "SCENARIO-DONE" not in completed.stdout:
        sys.exit(f"scenario {name} failed (exit {completed.returncode}); see {keep}/{name}.txt")
    return count(completed.stdout)


def stop_attach_scenario(cluster: str, workdir: Path, keep: Path) -> dict[str, dict[str, int]]:
    """Start the long experiment in one process, stop_attach it from a second once its trials
    report, and wait for the first to end (its follow sees the job stop)."""
    first_log = keep / "cluster_long.txt"
    with first_log.open("w") as sink:
        first = subprocess.Popen(
            scenario_command("cluster_long", cluster),
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 300
        while "TRAINABLE-PRINT epoch" not in first_log.read_text():
            if first.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the long experiment did not start; see {first_log}")
            time.sleep(0.2)
        counts = {
            "cluster_stop_attach": run_scenario("cluster_stop_attach", cluster, workdir, keep)
        }
        first.wait(timeout=300)
    counts["(cluster_long, stopped)"] = count(first_log.read_text())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="a folder for each scenario's output")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="radas-bench-console-"))
    keep = args.keep or home / "outputs"
    keep.mkdir(parents=True, exist_ok=True)
    os.environ["RADAS_HOME"] = str(home)
    os.environ["RADAS_CONFIG"] = str(home / "config.toml")
    os.environ["PYTHONUNBUFFERED"] = "1"
    for name in ("RADAS_VERBOSE", "NO_COLOR"):
        os.environ.pop(name, None)
    workdir = home / "work"
    workdir.mkdir()
    (workdir / "trainables.py").write_text(TRAINABLES)
    (workdir / "scenario.py").write_text(textwrap.dedent(SCENARIO))

    from radas.clusters import start_local_cluster

    cluster_name = "console"
    run_with = f"cluster:{cluster_name}"
    rows: dict[str, dict[str, int]] = {}
    started = time.monotonic()
    for name in ("local_run", "local_errors"):
        rows[name] = run_scenario(name, run_with, workdir, keep)
    cluster = start_local_cluster(cluster_name, num_cpus=2)
    try:
        rows["cluster_run"] = run_scenario("cluster_run", run_with, workdir, keep)
        rows.update(stop_attach_scenario(run_with, workdir, keep))
        rows["cluster_restore"] = run_scenario("cluster_restore", run_with, workdir, keep)
    finally:
        cluster.stop()
    rows["analyze"] = run_scenario("analyze", run_with, workdir, keep)

    order = [
        "local_run",
        "local_errors",
        "cluster_run",
        "cluster_stop_attach",
        "cluster_restore",
        "analyze",
        "(cluster_long, stopped)",
    ]
    width = max(map(len, order))
    print(f"{'scenario':<{width}}  " + "  ".join(f"{c:>9}" for c in COLUMNS))
    for name in order:
        print(f"{name:<{width}}  " + "  ".join(f"{rows[name][c]:>9}" for c in COLUMNS))
    totals = {c: sum(rows[name][c] for name in order[:6]) for c in COLUMNS}
    print(f"{'total (1)-(6)':<{width}}  " + "  ".join(f"{totals[c]:>9}" for c in COLUMNS))
    print(f"outputs in {keep}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
