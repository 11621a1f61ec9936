"""What a local sweep costs beyond a hand-written Tune script (issue 23, deliverable 6): the
trials of radas's own local Ray take the workers Ray starts with it (``fixes`` fix 10,
radas's worker setup run in each trial instead of as the session's hook), and counting radas's
callbacks for Ray's usage statistics imports no integration of Ray's (fix 9).
bench/bench_fixed_cost.py measures the time; these tests check the mechanisms, on real Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from radas.ray_compat import worker_env
from radas.ray_compat.install import fixes_installed
from radas.tune import worker as _worker


def run_fresh(script: str, tmp_path) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter (what it imports and starts is its own)."""
    env = {**os.environ, "RADAS_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=240,
    )


def test_radas_callbacks_are_not_counted_and_import_no_integration(tmp_path):
    done = run_fresh(
        """
        import json, sys
        from ray import tune
        from ray.air._internal import usage
        from radas.ray_compat.install import fixes_installed
        from radas.tune.history import HistoryRecorder
        from radas.tune.progress import ProgressLine

        class Mine(tune.Callback):
            pass

        with fixes_installed():
            ours = usage.tag_callbacks([ProgressLine("x"), HistoryRecorder()])
            imported = "ray.air.integrations.wandb" in sys.modules
            usage.tag_callbacks([ProgressLine("x"), Mine()])
            counted = "ray.air.integrations.wandb" in sys.modules  # Ray's own way
        print(json.dumps([ours, imported, counted]))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # radas's alone: nothing counted, nothing imported; with a callback of the user's, Tune's
    # count runs as it does without radas
    assert done.stdout.splitlines()[-1] == "[false, false, true]"


@pytest.fixture
def radas_ray():
    from radas.backends.local import ensure_local_ray

    ensure_local_ray({})


def actor_runtime_env() -> dict | None:
    from ray.tune.execution.class_cache import _ActorClassCache

    class Trainable:
        pass

    return _ActorClassCache().get(Trainable)._default_options.get("runtime_env")


def test_trial_actors_have_no_runtime_env_while_rays_processes_hold_tunes_variables(
    radas_ray, monkeypatch
):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    tunes = {"env_vars": {"PL_DISABLE_FORK": "1"}}
    assert actor_runtime_env() == tunes  # Tune's own, outside a radas sweep
    with fixes_installed():
        assert actor_runtime_env() is None
        # a variable Tune passes on, set after Ray started: Tune's way, with its value
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "set-later")
        assert actor_runtime_env() == {
            "env_vars": {"PL_DISABLE_FORK": "1", "AWS_ACCESS_KEY_ID": "set-later"}
        }
    # the variable was in this process's environment only while Ray started
    assert "PL_DISABLE_FORK" not in os.environ


def test_a_ray_radas_did_not_start_keeps_tunes_way(radas_ray, monkeypatch):
    monkeypatch.setattr(worker_env, "_workers_environment", None)
    with fixes_installed():
        assert actor_runtime_env() == {"env_vars": {"PL_DISABLE_FORK": "1"}}
    environment = {"PL_DISABLE_FORK": "1"}
    monkeypatch.setattr(worker_env, "_workers_environment", ("10.0.0.1:6379", environment))
    with fixes_installed():  # what was noted belongs to another Ray session
        assert actor_runtime_env() == {"env_vars": {"PL_DISABLE_FORK": "1"}}


@pytest.mark.slow
def test_trials_run_in_the_workers_ray_started_with_the_session(tmp_path):
    done = run_fresh(
        """
        import json, os, sys, time
        import psutil
        import ray
        from ray import tune
        import radas
        from radas.core.poll import wait_until
        from radas.backends.local import ensure_local_ray

        def idle_workers():
            found = set()
            for process in psutil.Process().children(recursive=True):
                try:
                    if process.cmdline()[:1] == ["ray::IDLE"]:  # a worker names itself
                        found.add(process.pid)
                except psutil.Error:
                    pass
            return found

        def trainable(config):
            return {
                "worker": os.getpid(),
                "pl": os.environ.get("PL_DISABLE_FORK"),
                "set_up": getattr(sys.unraisablehook, "radas_quiet", False),
            }

        ensure_local_ray({})
        cpus = int(ray.cluster_resources()["CPU"])  # Ray starts one worker per CPU
        wait_until(lambda: len(idle_workers()) >= cpus, 60, what="Ray's first workers")
        before = idle_workers()
        df = radas.run_experiment_sync(
            user_name="tester",
            experiment_name="prestarted",
            trainable=trainable,
            param_space={"i": tune.grid_search([0, 1])},
            run_choice="run",
        )["df"]
        # a worker that runs no trainable (a trial actor Tune made and never used, an idle
        # one) is set up too: when Tune ends such an actor, it says nothing
        set_up_here = ray.remote(lambda: getattr(sys.unraisablehook, "radas_quiet", False))
        print(json.dumps({
            "in_first_workers": set(df["worker"]) <= before or [before, list(df["worker"])],
            "task_set_up": ray.get(set_up_here.remote()),
            "pl": sorted(set(df["pl"])),
            "set_up": sorted(set(df["set_up"])),
            "driver_pl": os.environ.get("PL_DISABLE_FORK"),
        }))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == (
        '{"in_first_workers": true, "task_set_up": true, "pl": ["1"], "set_up": [true], '
        '"driver_pl": null}'
    )


def test_worker_setup_runs_once_however_often_it_is_called():
    before = sys.unraisablehook
    try:
        _worker.setup()
        once = sys.unraisablehook
        _worker.setup()
        assert sys.unraisablehook is once
        assert once.radas_quiet
    finally:
        sys.unraisablehook = before


def test_with_setup_keeps_a_trainables_name_and_kind():
    from ray import tune

    def my_trainable(config):
        return {"score": config["x"]}

    class MyTrainable(tune.Trainable):
        def setup(self, config):
            self.x = config["x"]

    wrapped = _worker.with_setup(my_trainable)
    assert wrapped.__name__ == "my_trainable"
    assert wrapped.__wrapped__ is my_trainable
    wrapped_class = _worker.with_setup(MyTrainable)
    assert wrapped_class.__name__ == "MyTrainable"
    assert issubclass(wrapped_class, MyTrainable)
