"""radas's fixes to Ray 2.60's result buffering (radas._ray_patches, fix 2), with real Ray.

Ray's controller calls ``train_buffered`` with its arguments swapped, so it never buffered;
radas schedules its own ``train_buffered``. These tests show that reports now arrive in
batches, that an error after buffered reports loses none of them, and that a reused actor
does not pass one trial's deferred error on to the next trial.
"""

from __future__ import annotations

import pytest
from ray import tune
from ray.tune.execution.tune_controller import TuneController

import radas


def reports_then_maybe_raises(config):
    for step in range(1, config["reports"] + 1):
        radas.report({"step": step, "value": 10 * config["k"] + step})
    if config["raise_after"]:
        raise ValueError(f"trial k={config['k']} fails after {config['reports']} reports")


@pytest.fixture
def batches(monkeypatch):
    """Sizes of the result batches the driver receives (a spy around Tune's own method)."""
    sizes: list[int] = []
    original = TuneController._on_training_result

    def spy(self, trial, result):
        sizes.append(len(result) if isinstance(result, list) else 1)
        return original(self, trial, result)

    monkeypatch.setattr(TuneController, "_on_training_result", spy)
    return sizes


def run(name: str, param_space: dict, **kwargs) -> dict:
    return radas.run_experiment_sync(
        user_name="tester",
        experiment_name=name,
        trainable=reports_then_maybe_raises,
        param_space=param_space,
        run_choice="run",
        **kwargs,
    )


def test_fast_reports_reach_the_driver_in_batches(project, batches):
    results = run("batched", {"k": tune.grid_search([0, 1]), "reports": 60, "raise_after": False})
    history = results["tuner"].get_history_dataframe()
    assert len(history) == 120
    assert sorted(history.groupby("config/k")["step"].apply(list).tolist()) == [
        list(range(1, 61)),
        list(range(1, 61)),
    ]
    assert sum(batches) == 2 * 61  # every report and each trial's final duplicate result
    assert len(batches) < 2 * 61  # ...in fewer actor calls than results
    assert max(batches) > 1


def test_an_error_after_buffered_reports_keeps_every_report(project, batches):
    results = run("errors", {"k": tune.grid_search([0, 1]), "reports": 40, "raise_after": True})
    frame = results["tuner"].get_dataframe().set_index("config/k")
    assert frame["status"].to_dict() == {0: "ERROR", 1: "ERROR"}
    assert "trial k=1 fails after 40 reports" in frame.loc[1, "error"]
    history = results["tuner"].get_history_dataframe()
    assert history.groupby("config/k")["value"].apply(list).to_dict() == {
        0: list(range(1, 41)),
        1: list(range(11, 51)),
    }
    assert max(batches) > 1  # the reports before the error came in a batch


def test_a_reused_actor_does_not_pass_on_a_deferred_error(project):
    # k=0 stops at its 5th report (stop criterion) with its error still deferred on the
    # actor; k=1 runs next on the same reused actor and must not inherit that error.
    results = run(
        "reuse",
        {"k": tune.grid_search([0, 1]), "reports": 5, "raise_after": tune.grid_search([True])},
        tuner_init_kwargs={
            "tune_config": tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
            "run_config": tune.RunConfig(stop={"training_iteration": 5}),
        },
    )
    frame = results["tuner"].get_dataframe().set_index("config/k")
    assert frame["status"].to_dict() == {0: "TERMINATED", 1: "TERMINATED"}
    assert frame["value"].to_dict() == {0: 5, 1: 15}


def fails_once(config):
    flag = config["flag_dir"] / f"ran-{config['k']}"
    first_time = not flag.exists()
    flag.touch()
    radas.report({"value": config["k"]})
    if config["k"] in (2, 5) and first_time:
        raise RuntimeError("fails the first time")


def test_fifo_choice_picks_the_trial_rays_scan_would_pick(project, monkeypatch):
    """At every step of a run and of its restore (errored trials pending again among finished
    ones), radas's FIFO choice equals Ray's own scan over all trials."""
    from ray.tune.schedulers import FIFOScheduler

    from radas import _ray_patches

    _ray_patches.apply()
    ours = FIFOScheduler.choose_trial_to_run
    choices: list[tuple] = []

    def both(self, tune_controller):
        chosen = ours(self, tune_controller)
        choices.append((chosen, ours.ray_version(self, tune_controller)))
        return chosen

    monkeypatch.setattr(FIFOScheduler, "choose_trial_to_run", both)
    kwargs = dict(
        user_name="tester",
        experiment_name="fifo",
        trainable=fails_once,
        param_space={"k": tune.grid_search(list(range(8))), "flag_dir": project},
        tuner_init_kwargs={"tune_config": tune.TuneConfig(max_concurrent_trials=1)},
    )
    first = radas.run_experiment_sync(**kwargs, run_choice="run")
    assert first["outcome"].errored_trials == 2
    restored = radas.run_experiment_sync(**kwargs, run_choice="restore")
    assert restored["df"]["status"].tolist() == ["TERMINATED"] * 8
    picked = [ours_choice for ours_choice, _ in choices if ours_choice is not None]
    assert len(picked) >= 10  # 8 trials, then the 2 errored ones again
    assert all(ours_choice is rays_choice for ours_choice, rays_choice in choices)


def reports_then_pauses(config):
    """One quick report, then a pause that lasts until the driver has that report (at most
    20 s), as a quick evaluation before a long epoch does."""
    import time as clock
    from pathlib import Path

    radas.report({"step": 1})
    marker = Path(config["marker"])
    deadline = clock.monotonic() + 20
    while not marker.exists() and clock.monotonic() < deadline:
        clock.sleep(0.05)
    radas.report({"step": 2, "driver_had_step_1": marker.exists()})


def test_a_quick_report_is_not_held_back_for_a_slow_one(project, monkeypatch):
    # Ray's buffering loop asks for the next report while time is left, and that call blocks
    # until the trainable reports again: the driver got step 1 only with step 2 (20 s later).
    marker = project / "driver-has-step-1"
    original = TuneController._on_training_result

    def spy(self, trial, result):
        for one in result if isinstance(result, list) else [result]:
            if one.get("step") == 1:
                marker.touch()
        return original(self, trial, result)

    monkeypatch.setattr(TuneController, "_on_training_result", spy)
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="pause",
        trainable=reports_then_pauses,
        param_space={"marker": str(marker)},
        run_choice="run",
    )
    assert results["df"]["driver_had_step_1"].tolist() == [True]
