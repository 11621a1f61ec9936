"""radas's boundary with Ray's internals (radas.ray_compat), with real Ray.

Result buffering (fix 2): Ray's controller calls ``train_buffered`` with its arguments
swapped, so it never buffered; radas schedules its own ``train_buffered``. These tests show
that reports now arrive in batches, that an error after buffered reports loses none of them,
and that a reused actor does not pass one trial's deferred error on to the next trial.
The FIFO choice (fix 3) picks what Ray's scan picks. A Ray that does not match what the
fixes were written for gets one warning and no fix; a plain ``tune.Tuner`` after radas runs
on Ray's code.
"""

from __future__ import annotations

import dataclasses
import sys

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


@pytest.mark.timing
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


@pytest.mark.timing
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


@pytest.mark.timing
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


@pytest.mark.slow
def test_fifo_choice_picks_the_trial_rays_scan_would_pick(project, monkeypatch):
    """At every step of a run and of its restore (errored trials pending again among finished
    ones), radas's FIFO choice equals Ray's own scan over all trials."""
    from ray.tune.schedulers import FIFOScheduler

    from radas.ray_compat.fifo import RadasFIFOScheduler

    ours = RadasFIFOScheduler.choose_trial_to_run
    choices: list[tuple] = []

    def both(self, tune_controller):
        chosen = ours(self, tune_controller)
        choices.append((chosen, FIFOScheduler.choose_trial_to_run(self, tune_controller)))
        return chosen

    monkeypatch.setattr(RadasFIFOScheduler, "choose_trial_to_run", both)
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


@pytest.mark.timing
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


# --- the boundary: checked targets, all fixes or none, Ray's code outside radas's sweeps -------


def test_a_target_that_is_missing_or_changed_is_named():
    from radas.ray_compat.targets import TARGETS, Target

    assert [target.problem() for target in TARGETS] == [None] * len(TARGETS)
    missing = Target("ray.tune.tune", "no_such_function", ("x",))
    assert missing.problem() == "ray.tune.tune.no_such_function is missing"
    changed = Target("ray.tune.experiment.trial", "Trial.handle_error", ("self", "error"))
    assert changed.problem() == (
        "ray.tune.experiment.trial.Trial.handle_error takes (self, exc), not (self, error)"
    )
    # JSONDecoder.decode(self, s, _w=...): radas could call it as (self, s) (Ray adds such
    # defaulted parameters to the methods of an actor's class), not replace it by one of those
    called = Target("json.decoder", "JSONDecoder.decode", ("self", "s"))
    assert called.problem() is None
    replaced = dataclasses.replace(called, replaced=True)
    assert (
        replaced.problem() == "json.decoder.JSONDecoder.decode takes (self, s, _w), not (self, s)"
    )


def test_what_the_cluster_shape_readers_use_is_there():
    from radas.ray_compat.targets import SHAPE_TARGETS

    assert [target.problem() for target in SHAPE_TARGETS] == [None] * len(SHAPE_TARGETS)


def test_what_the_saved_state_repair_uses_is_there():
    from radas.ray_compat.targets import SAVED_STATE_TARGETS

    problems = [target.problem() for target in SAVED_STATE_TARGETS]
    assert problems == [None] * len(SAVED_STATE_TARGETS)


def test_fixes_are_installed_for_a_sweep_and_removed_after():
    import ray.tune.tune as tune_module
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.tune.experiment import Trial

    from radas.ray_compat.install import fixes_installed

    def current():
        return [
            RayActorManager.__dict__["_actor_task_failed"],
            TuneController.__dict__["_schedule_trial_train"],
            Trial.__dict__["handle_error"],
            Trial.__dict__["should_recover"],
            tune_module.__dict__["_setup_signal_catching"],
        ]

    rays = current()
    with fixes_installed():
        ours = current()
        with fixes_installed():  # a second sweep meanwhile shares them
            assert current() == ours
        assert current() == ours
    assert current() == rays
    assert all(function.__module__.startswith("ray.") for function in rays)
    assert not any(function.__module__.startswith("ray.") for function in ours)


@pytest.mark.parametrize("old_module", ["radas._ray_compat", "radas.ray_compat.fixes"])
def test_what_an_old_pickle_names_under_an_old_module_loads(old_module):
    """Experiments stored before the fixes had a module each name radas's FIFO scheduler (in
    ``tuner.pkl``) and its out-of-memory error (in a trial's ``error.pkl``) by the module that
    held them then: ``radas.core.moved`` maps it to ``radas.ray_compat.install``."""
    import pickle

    from radas.ray_compat.fifo import RadasFIFOScheduler
    from radas.ray_compat.oom import ActorOutOfMemoryError

    def under_old_name(value, module):  # protocol 2 names a class as text: "c<module>\n"
        stored = pickle.dumps(value, protocol=2).replace(module.encode(), old_module.encode())
        assert f"c{old_module}\n".encode() in stored
        return pickle.loads(stored)

    scheduler = under_old_name(RadasFIFOScheduler(), "radas.ray_compat.fifo")
    assert type(scheduler) is RadasFIFOScheduler
    assert dict(scheduler._positions) == {}  # made again by __setstate__ (not pickled)
    error = under_old_name(ActorOutOfMemoryError("killed for memory"), "radas.ray_compat.oom")
    assert type(error) is ActorOutOfMemoryError
    assert str(error) == "killed for memory"


def test_a_users_scheduler_is_used_as_given():
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler

    from radas.ray_compat.fifo import RadasFIFOScheduler
    from radas.tune.configuration import _tune_config

    def tune_config(given):
        spec = SimpleNamespace(trainable=reports_then_maybe_raises, tuner_init_kwargs=given)
        return _tune_config(spec)

    assert isinstance(tune_config({}).scheduler, RadasFIFOScheduler)
    asha = ASHAScheduler(metric="value", mode="max")
    assert tune_config({"tune_config": tune.TuneConfig(scheduler=asha)}).scheduler is asha
    assert tune_config({"tune_config": {"scheduler": asha}}).scheduler is asha
    users = tune.TuneConfig(num_samples=3)
    assert isinstance(tune_config({"tune_config": users}).scheduler, RadasFIFOScheduler)
    assert users.scheduler is None  # the user's own TuneConfig is not changed


def test_a_ray_that_does_not_match_gets_one_warning_and_runs_without_fixes(
    project, monkeypatch, batches
):
    """A fix's target with another signature (as another Ray release may have): one
    RadasWarning naming it, none of the fixes, and the sweep runs on Ray's code."""
    from ray.air.execution._internal.actor_manager import RayActorManager

    from radas.errors import RadasWarning
    from radas.ray_compat import targets
    from radas.ray_compat.fifo import default_scheduler

    rays = RayActorManager._actor_task_failed

    def changed(self, tracked_actor_task, exception, retry=False):  # a newer Ray, say
        return rays(self, tracked_actor_task, exception)

    monkeypatch.setattr(RayActorManager, "_actor_task_failed", changed)
    monkeypatch.setattr(targets, "_mismatches", None)  # checked again in this process
    with pytest.warns(RadasWarning) as warned:
        results = run(
            "unmatched", {"k": tune.grid_search([0, 1]), "reports": 30, "raise_after": False}
        )
        default_scheduler()  # asked again: no second warning
    messages = [str(w.message) for w in warned if issubclass(w.category, RadasWarning)]
    assert len(messages) == 1, messages
    assert "fixes to Ray's internals are off" in messages[0]
    assert (
        "RayActorManager._actor_task_failed takes (self, tracked_actor_task, exception, retry)"
        in messages[0]
    )
    assert len(results["tuner"].get_history_dataframe()) == 60  # the sweep ran, nothing lost
    assert set(batches) == {1}  # Ray's own buffering (which never buffers), not radas's
    assert RayActorManager._actor_task_failed is changed
    stored = _stored_scheduler(results["outcome"].experiment_path)
    assert stored is None  # Tune's own FIFO scheduler


def _stored_scheduler(experiment_path: str):
    from pathlib import Path

    from ray import cloudpickle

    from radas.ray_compat.private import stored_tune_config

    state = cloudpickle.loads((Path(experiment_path) / "tuner.pkl").read_bytes())
    return stored_tune_config(state).scheduler


def counts(config):
    for step in range(1, 21):
        tune.report({"step": step, "value": 100 * config["k"] + step})


def _rays_process_state() -> dict:
    """What radas could leave behind in the process: Tune's methods it fixes, the environment,
    filters on Ray's loggers and the ``ray`` logger's level."""
    import logging
    import os

    import ray.tune.tune as tune_module
    from ray.air.execution._internal.actor_manager import RayActorManager
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    return {
        "methods": [
            RayActorManager.__dict__["_actor_task_failed"],
            TuneController.__dict__["_schedule_trial_train"],
            Trial.__dict__["handle_error"],
            Trial.__dict__["should_recover"],
            FIFOScheduler.__dict__["choose_trial_to_run"],
            tune_module.__dict__["_setup_signal_catching"],
        ],
        "environment": dict(os.environ),
        "filters": {
            logger.name: list(logger.filters)
            for logger in loggers
            if logger.name.startswith("ray") and logger.filters
        },
        "ray level": logging.getLogger("ray").level,
    }


@pytest.mark.slow
def test_a_plain_tuner_after_radas_runs_on_rays_code(project, monkeypatch, batches):
    """A ``tune.Tuner`` of the user's own, run before and after a radas sweep in the same
    process: the same results, Ray's result buffering (which never buffers: one result per
    actor call), Ray's methods, and nothing radas set left in the environment or on Ray's
    loggers."""
    import io

    from ray import cloudpickle
    from ray._private import worker

    from radas.ray_compat.fifo import RadasFIFOScheduler

    # Tune may start Ray here (this test run alone): its workers cannot import this module
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # The user asks Tune to buffer: Ray's controller swaps its arguments (fix 2), so each
    # actor call still returns one result; under radas's fix they come in batches.
    monkeypatch.setenv("TUNE_RESULT_BUFFER_LENGTH", "1000")

    def plain(name: str) -> list:
        tuner = tune.Tuner(
            counts,
            param_space={"k": tune.grid_search([0, 1])},
            run_config=tune.RunConfig(name=name, storage_path=str(project / "plain"), verbose=0),
        )
        grid = tuner.fit()
        # progress.csv holds every result: Tune's own loggers are on (radas turns them off)
        return sorted(
            (result.config["k"], result.metrics_dataframe["value"].tolist()) for result in grid
        )

    first = plain("first")
    before = _rays_process_state()  # as Tune's own first run left it
    first_batches = list(batches)
    batches.clear()
    results = radas.run_experiment_sync(
        user_name="tester",
        experiment_name="between",
        trainable=counts,
        param_space={"k": tune.grid_search([0, 1])},
        run_choice="run",
    )
    assert len(results["tuner"].get_history_dataframe()) == 40
    assert max(batches) > 1  # radas's fixes ran for its sweep...
    assert isinstance(_stored_scheduler(results["outcome"].experiment_path), RadasFIFOScheduler)
    batches.clear()
    assert _rays_process_state() == before  # ...and left nothing behind
    second = plain("second")
    assert second == first == [(0, list(range(1, 21))), (1, list(range(101, 121)))]
    assert batches == first_batches and set(batches) == {1}
    # The workers' lines: radas's printer stays (late lines of its sweep) but hands any other
    # worker's line to Ray's as it is (one of a trainable no radas sweep ran: radas knows its
    # trials' workers by pid and by trainable name).
    line = {
        "ip": "127.0.0.1",
        "pid": 4_000_000,  # no radas trial's worker
        "job": "01000000",
        "is_err": False,
        "lines": ["\x1b[32mRestored on 127.0.0.1 from checkpoint: Checkpoint(x)\x1b[0m"],
        "actor_name": "their_own_trainable",
        "task_name": None,
    }
    via_radas, via_ray = io.StringIO(), io.StringIO()
    worker.print_worker_logs(line, via_radas)
    getattr(worker.print_worker_logs, "ray_version", worker.print_worker_logs)(line, via_ray)
    assert via_radas.getvalue() == via_ray.getvalue() != ""


def test_a_job_client_that_differs_is_refused_before_anything_is_sent(monkeypatch):
    from ray.dashboard.modules.dashboard_sdk import SubmissionClient

    from radas.errors import ClusterError
    from radas.ray_compat.job_sdk import job_client
    from radas.ray_compat.targets import JOB_CLIENT_TARGETS

    assert [target.problem() for target in JOB_CLIENT_TARGETS] == [None, None]

    def changed(self, response, retry=False):  # a newer Ray, say
        raise RuntimeError(response)

    monkeypatch.setattr(SubmissionClient, "_raise_error", changed)
    with pytest.raises(
        ClusterError, match=r"SubmissionClient._raise_error takes \(self, response, retry\)"
    ):
        job_client(
            "http://127.0.0.1:1",  # nothing listens: nothing is sent before the check
            headers={},
            timeout_s=1,
            request_bound_s=lambda: 1,
            http_error=RuntimeError,
        )


# What a worker stopped while it started prints (seen under load, 2026-11-29, Ray 2.60).
SIGTERM_REPORT = [
    "*** SIGTERM received at time=1795968053 on cpu 1 ***",
    "PC: @     0x7fa4122a7907  (unknown)  pthread_create",
    "    @     0x7fa41225a050  (unknown)  (unknown)",
    "[2026-11-29 16:00:53,295 E 22448 22475] logging.cc:474: *** SIGTERM received at "
    "time=1795968053 on cpu 1 ***",
    "[2026-11-29 16:00:53,295 E 22448 22475] logging.cc:474: PC: @     0x7fa4122a7907  "
    "(unknown)  pthread_create",
    "[2026-11-29 16:00:53,295 E 22448 22475] logging.cc:474:     @     0x7fa41225a050  "
    "(unknown)  (unknown)",
]


@pytest.mark.timing
@pytest.mark.parametrize(
    ("lines", "quiet", "printed"),
    [
        (SIGTERM_REPORT, True, []),
        (["epoch 3", *SIGTERM_REPORT], True, ["epoch 3"]),
        (SIGTERM_REPORT, False, SIGTERM_REPORT),  # RADAS_VERBOSE: Ray's lines as they are
        (  # a crash is never dropped
            [line.replace("SIGTERM", "SIGSEGV") for line in SIGTERM_REPORT],
            True,
            [line.replace("SIGTERM", "SIGSEGV") for line in SIGTERM_REPORT],
        ),
    ],
)
def test_a_worker_stopped_while_it_starts_says_nothing_while_ray_is_quiet(
    monkeypatch, lines, quiet, printed
):
    from radas.ray_compat import worker_logs

    monkeypatch.setattr(worker_logs, "_restored_lines_shown", not quiet)
    seen: list[list[str]] = []
    print_worker_logs = worker_logs._printing_worker_logs(
        lambda data, print_file, ignore_prefix=False: seen.append(data["lines"])
    )
    # a worker no trial ran on (its actor never started), after the sweep
    data = {"ip": "127.0.0.1", "pid": 4_000_001, "job": "01000000", "is_err": True}
    print_worker_logs({**data, "lines": lines, "actor_name": "", "task_name": None}, sys.stderr)
    assert seen == ([printed] if printed else [])


@pytest.mark.timing
def test_a_late_line_of_an_earlier_sweeps_trial_is_printed_plain(monkeypatch):
    """Under load a trial's print of the first of two sweeps reached the driver after the
    second had ended: it is still radas's (no colour codes into a pipe)."""
    import io

    from ray._private import worker

    from radas.ray_compat import sweeps
    from radas.ray_compat.install import fixes_installed

    monkeypatch.setattr(sweeps, "worker_pids", set())
    monkeypatch.setattr(sweeps, "trainables", set())
    with fixes_installed():  # the first sweep: its trial ran in worker 4000002
        sweeps.worker_pids.add(4_000_002)
    with fixes_installed():  # the second sweep
        pass
    pipe = io.StringIO()
    line = {"ip": "127.0.0.1", "pid": 4_000_002, "job": "01000000", "is_err": False}
    worker.print_worker_logs(
        {**line, "lines": ["TRAINABLE SAYS 0"], "actor_name": "fine", "task_name": None}, pipe
    )
    assert pipe.getvalue().startswith("(fine pid=4000002")  # (", ip=..." outside Ray)
    assert pipe.getvalue().endswith(") TRAINABLE SAYS 0\n")
