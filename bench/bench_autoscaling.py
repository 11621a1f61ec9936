"""radas on a cluster that scales from zero, against the same Tune sweep submitted with
`ray job submit`, side by side on one bed (tests/support/autoscaling_bed.py: Ray's real autoscaler,
a 0-CPU head, one worker type of 2 CPUs, min 0, max 2).

Each round starts from zero workers (the autoscaler removes idle ones after 15 s) and runs a
4-trial grid, 1 CPU and ``SECONDS`` s per trial, first with radas
(``run_experiment_sync(run_with="cluster:auto")``), then as a plain Tune script through
``ray job submit --working-dir``. Printed per run and as medians: seconds from the call to the
first trial running, and the whole sweep's wall time, with radas / ray job submit ratios.

    .venv/bin/python bench/bench_autoscaling.py [ROUNDS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HOME = Path(tempfile.mkdtemp(prefix="radas-bench-"))
os.environ["RADAS_HOME"] = str(HOME)
os.environ["RADAS_CONFIG"] = str(HOME / "config.toml")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.autoscaling_bed import NodeType, start_autoscaling_bed  # noqa: E402

SECONDS = 5.0
TRIALS = 4

TUNE_SCRIPT = (
    textwrap.dedent(
        """
    import sys, time
    from pathlib import Path
    from ray import tune

    marks, storage = Path(sys.argv[1]), sys.argv[2]

    def trainable(config):
        (marks / f"start-{config['i']}-{time.time()!r}").touch()
        time.sleep(config["seconds"])
        return {"score": config["i"]}

    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"i": tune.grid_search(list(range(TRIALS))), "seconds": SECONDS},
        run_config=tune.RunConfig(storage_path=storage, name=marks.name),
    ).fit()
    """
    )
    .replace("TRIALS", str(TRIALS))
    .replace("SECONDS", repr(SECONDS))
)


def trainable(config):
    (config["marks"] / f"start-{config['i']}-{time.time()!r}").touch()
    time.sleep(config["seconds"])
    return {"score": config["i"]}


def first_start(marks: Path) -> float:
    return min(float(mark.name.split("-", 2)[2]) for mark in marks.glob("start-*"))


def run_radas(bed, marks: Path) -> tuple[float, float]:
    from ray import tune

    import radas

    started = time.time()
    results = radas.run_experiment_sync(
        user_name="bench",
        experiment_name=marks.name,
        trainable=trainable,
        param_space={
            "i": tune.grid_search(list(range(TRIALS))),
            "seconds": SECONDS,
            "marks": marks,
        },
        run_with="cluster:auto",
        cpu_per_trial=1,
        run_choice="run",
        dos=["run"],
    )
    ended = time.time()
    assert results["outcome"].finished_trials == TRIALS, results["outcome"]
    return first_start(marks) - started, ended - started


def run_ray_job_submit(bed, marks: Path, workdir: Path) -> tuple[float, float]:
    (workdir / "sweep.py").write_text(TUNE_SCRIPT)
    env = {**os.environ, **bed.ray_env()}
    command = [
        str(Path(sys.executable).parent / "ray"),
        "job",
        "submit",
        f"--address={bed.address}",
        f"--working-dir={workdir}",
        "--",
        "python",
        "sweep.py",
        str(marks),
        str(bed.root / "ray-results" / "plain"),
    ]
    started = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    ended = time.time()
    if done.returncode != 0 or len(list(marks.glob("start-*"))) != TRIALS:
        raise RuntimeError(f"ray job submit failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return first_start(marks) - started, ended - started


def main(rounds: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="rbb-", dir="/tmp"))
    bed = start_autoscaling_bed(
        "auto", root, {"cpu2": NodeType({"CPU": 2}, max_workers=2)}, idle_timeout_minutes=0.25
    )
    project = Path(tempfile.mkdtemp(prefix="radas-bench-project-"))
    os.chdir(project)  # the radas job ships its working directory: an empty one here
    measured: dict[str, list[tuple[float, float]]] = {"radas": [], "ray job submit": []}
    try:
        print(f"bed proved itself: a plain job scaled it from zero in {bed.prove():.1f} s")
        for round_ in range(rounds):
            for name in measured:
                bed.wait_scaled_to(0)
                marks = root / f"marks-{name.replace(' ', '-')}-{round_}"
                marks.mkdir()
                workdir = root / f"work-{round_}"
                workdir.mkdir(exist_ok=True)
                if name == "radas":
                    first, wall = run_radas(bed, marks)
                else:
                    first, wall = run_ray_job_submit(bed, marks, workdir)
                measured[name].append((first, wall))
                print(
                    f"round {round_ + 1} {name:>15}: first trial after {first:5.1f} s, "
                    f"sweep {wall:5.1f} s",
                    flush=True,
                )
    finally:
        bed.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(project, ignore_errors=True)
        shutil.rmtree(HOME, ignore_errors=True)
    radas_first = statistics.median(r[0] for r in measured["radas"])
    plain_first = statistics.median(r[0] for r in measured["ray job submit"])
    radas_wall = statistics.median(r[1] for r in measured["radas"])
    plain_wall = statistics.median(r[1] for r in measured["ray job submit"])
    print(
        f"\nmedians over {rounds} round(s), each from zero workers, {TRIALS} trials of "
        f"{SECONDS:g} s:"
    )
    print(
        f"  first trial running: radas {radas_first:.1f} s, ray job submit {plain_first:.1f} s"
        f" (ratio {radas_first / plain_first:.2f})"
    )
    print(
        f"  whole sweep:         radas {radas_wall:.1f} s, ray job submit {plain_wall:.1f} s"
        f" (ratio {radas_wall / plain_wall:.2f})"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
