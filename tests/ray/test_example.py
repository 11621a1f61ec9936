"""The two-moons example: a real (small) sweep answers 'does a larger lr learn faster?'."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ray import tune

import radas

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_moons"


@pytest.fixture(scope="module")
def example_modules():
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(EXAMPLE))
    try:
        import run as example_run
        import trainable as example_trainable

        yield example_trainable, example_run
    finally:
        sys.path.remove(str(EXAMPLE))


@pytest.mark.timing
def test_two_moons_larger_learning_rate_reaches_the_target_sooner(example_modules, project):
    example_trainable, example_run = example_modules
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="two-moons-small",
        trainable=example_trainable.train_two_moons,
        param_space={"lr": tune.grid_search([0.01, 1.0]), "seed": 0, "epochs": 20},
        run_choice="run",
        tuner_to_df_fn=lambda tuner: tuner.get_history_dataframe(),
        process_df_fn=example_run.epochs_to_target,
    )
    per_trial = results["df"].set_index("lr")
    assert per_trial.loc[1.0, "epochs_to_target"] <= 10
    assert per_trial.loc[1.0, "final_accuracy"] >= 0.9
    slow = per_trial.loc[0.01, "epochs_to_target"]
    assert slow != slow or slow > per_trial.loc[1.0, "epochs_to_target"]  # NaN: never reached

    history = results["tuner"].get_history_dataframe()
    assert history.groupby("config/lr").size().tolist() == [20, 20]
    fast = history[history["config/lr"] == 1.0]["loss"].tolist()
    assert fast[-1] < 0.6 * fast[0]


def test_summary_table_counts_seeds_reaching_the_target(example_modules):
    import pandas as pd

    _, example_run = example_modules
    history = pd.DataFrame(
        {
            "trial_id": ["a"] * 3 + ["b"] * 3,
            "epoch": [1, 2, 3] * 2,
            "accuracy": [0.5, 0.95, 0.97, 0.5, 0.6, 0.7],
            "config/lr": [0.1] * 3 + [0.1] * 3,
            "config/seed": [0] * 3 + [1] * 3,
        }
    )
    per_trial = example_run.epochs_to_target(history, target=0.9)
    assert per_trial["epochs_to_target"].tolist()[0] == 2
    assert pd.isna(per_trial["epochs_to_target"].tolist()[1])
    summary = example_run.summarize(per_trial)
    assert summary.to_dict("list")["seeds_reaching_target"] == [1]


# What a user must never see in the example's output: a crash-looking report from Ray's
# workers (e.g. "Exception ignored in: <function WeakSet...>" ending in Ray's sigterm_handler's
# SystemExit when Tune retires an actor), Ray's own log records or a worker's prefixed lines.
ALARMING = ("Traceback", "Exception ignored", "SystemExit", "WARNING", "ERROR", "(pid=")


@pytest.mark.slow
def test_the_example_script_prints_only_radas_lines_and_its_answer(tmp_path):
    """The README's first command, as a user runs it (~20 s here, ~1 min under load)."""
    pytest.importorskip("sklearn")
    copy = tmp_path / "two_moons"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("*.png", "__pycache__"))
    done = subprocess.run(
        [sys.executable, "-u", "run.py"], cwd=copy, capture_output=True, text=True, timeout=540
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    alarming = [line for line in output.splitlines() if any(a in line for a in ALARMING)]
    assert not alarming, "\n".join(alarming)
    assert "Answer: learning speed rises with the learning rate" in done.stdout
    assert (copy / "learning_curves.png").stat().st_size > 0
    assert (copy / "epochs_to_target.png").stat().st_size > 0
