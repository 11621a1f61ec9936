"""A backend that runs nothing on Ray, for testing what ``run_experiment`` decides.

``FakeBackend`` implements ``radas.backends.Backend`` the way submitit's tests implement a
fake executor: it calls the trainable in this process, once per point of the param_space's
grid, and stores the experiment as radas's readers expect it (Tune's experiment state with
each trial, radas's trial records, each trial's ``result.json`` and error file, the
experiment info), so ``radas.Tuner``, the DataFrame and the plot read it back as they read a
real run. Every call is recorded in ``calls``. A test puts it in place for one ``run_with``
by patching ``radas.backends.get_backend`` (fixture ``fake`` in test_flow.py).

A fake, because the real thing is what the rest of the suite tests: here a flow test takes
milliseconds instead of a Ray start and a Tune fit. It supports what flow tests need:
function trainables that return their result (or raise: the trial errors; ``MemoryError``:
the trial ran out of memory, as radas's retry would end at the largest node), and
param_spaces of constants and ``tune.grid_search``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radas.core.spec import RunTarget, SweepOutcome, SweepSpec
from radas.results import tune_state
from radas.storage import store as _store
from radas.tune.sweep import archive_previous_results, write_experiment_info


@dataclass
class Call:
    """One call of the backend: ``run`` (with the spec's run choice) or ``attach``."""

    method: str
    run_choice: str
    spec: SweepSpec
    runtime_env: dict[str, Any] | None = None
    stop: bool | None = None
    secrets: dict[str, str] = field(default_factory=dict)


class FakeBackend:
    def __init__(self, target: RunTarget, results_root: Path, *, stop_after: int | None = None):
        """``stop_after``: run that many trials, then end as an interrupted run does (the
        rest stay PENDING, its state saved)."""
        self.target = target
        self.root = results_root
        self.stop_after = stop_after
        self.calls: list[Call] = []

    def results_root(self, user_name: str) -> str:
        return str(self.root / user_name)

    def store_scope(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    async def run(self, spec: SweepSpec, *, runtime_env: dict[str, Any]) -> SweepOutcome:
        # a copy: the spec is the caller's, and secrets are not pickled (see SweepSpec)
        self.calls.append(
            Call(
                "run",
                spec.run_choice,
                copy.copy(spec),
                runtime_env=dict(runtime_env),
                secrets=dict(spec.secrets),
            )
        )
        started = time.monotonic()
        path = Path(spec.experiment_path)
        archived_to = already_done = None
        if spec.run_choice == "run":
            archived_to = archive_previous_results(spec)
            write_experiment_info(spec)
            trials = [
                tune_state.TrialState(f"fake_{index:05d}", "PENDING", config, {}, "")
                for index, config in enumerate(grid_points(spec.param_space or {}))
            ]
        else:
            trials = tune_state.load_trial_states(path, running=False)
            already_done = sum(trial.status == "TERMINATED" for trial in trials)
        ran, out_of_memory = 0, []
        for trial in trials:
            if trial.status == "TERMINATED":
                continue
            if self.stop_after is not None and ran >= self.stop_after:
                trial.status = "PENDING"
                continue
            if run_trial(spec, path, trial) == "memory":
                out_of_memory.append(trial.trial_id)
            ran += 1
        store(path, trials, spec.cpu_per_trial)
        return SweepOutcome.of_trials(
            str(path),
            trials,
            already_done=already_done,
            archived_to=archived_to,
            seconds=time.monotonic() - started,
            cpu_per_trial=spec.cpu_per_trial,
            out_of_memory=out_of_memory,
        )

    async def attach(self, spec: SweepSpec, *, stop: bool) -> SweepOutcome:
        """As a cluster's job that has ended: the stored experiment's outcome."""
        self.calls.append(Call("attach", spec.run_choice, copy.copy(spec), stop=stop))
        trials = tune_state.load_trial_states(spec.experiment_path, running=False)
        return SweepOutcome.of_trials(spec.experiment_path, trials)

    def running_probe(self, user_name: str, full_name: str) -> None:
        """None: the fake's runs have ended when ``run`` returns; the lock tells the rest."""
        return None


def grid_points(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every config of a param_space of constants and (nested) ``tune.grid_search``es."""
    keys = list(space)
    options = [_values(space[key]) for key in keys]
    return [
        dict(zip(keys, combination, strict=True)) for combination in itertools.product(*options)
    ]


def _values(value: Any) -> list[Any]:
    if isinstance(value, dict) and set(value) == {"grid_search"}:
        return list(value["grid_search"])
    if isinstance(value, dict):
        return grid_points(value)
    if hasattr(value, "sample"):  # a Tune Domain (tune.uniform, ...): not a fake's job
        raise NotImplementedError("FakeBackend takes constants and tune.grid_search only")
    return [value]


def run_trial(spec: SweepSpec, path: Path, trial: tune_state.TrialState) -> str:
    """Calls the trainable; returns how the trial ended: finished, error or memory."""
    trial.trial_dir_name = f"fake_trial_{trial.trial_id}"
    trial_dir = path / trial.trial_dir_name
    trial_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = spec.trainable(trial.config) or {}
    except Exception as err:
        (trial_dir / "error.txt").write_text(traceback.format_exc())
        trial.status, trial.error_filename = "ERROR", "error.txt"
        return "memory" if isinstance(err, MemoryError) else "error"
    trial.status, trial.error_filename = "TERMINATED", None
    trial.last_result = {**result, "training_iteration": 1, "trial_id": trial.trial_id}
    # Ray's result.json: one line per report, with the trial's config
    line = {**trial.last_result, "config": trial.config}
    (trial_dir / "result.json").write_text(json.dumps(line) + "\n")
    return "finished"


def store(path: Path, trials: list[tune_state.TrialState], cpu_per_trial: float) -> None:
    """Tune's experiment state (the part radas reads: ``trial_data``) and radas's records."""
    trial_data = [
        [
            json.dumps(
                {
                    "trial_id": trial.trial_id,
                    "status": trial.status,
                    "config": trial.config,
                    "relative_logdir": trial.trial_dir_name,
                }
            ),
            json.dumps(
                {
                    "last_result": trial.last_result,
                    "error_filename": trial.error_filename,
                    "num_failures": int(trial.status == "ERROR"),
                }
            ),
        ]
        for trial in trials
    ]
    path.mkdir(parents=True, exist_ok=True)
    for old in tune_state.state_files(path):
        _store.location(old).unlink()
    state_file = path / f"experiment_state-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    state_file.write_text(json.dumps({"trial_data": trial_data}))
    records: dict[str, dict[str, Any]] = {
        tune_state.RECORDS_FORMAT_KEY: {"version": tune_state.RECORDS_FORMAT}
    }
    for trial in trials:
        if trial.status == "PENDING":
            continue
        records[trial.trial_id] = {
            "resources": {"CPU": cpu_per_trial},
            "config": trial.config,
            "trial_dir_name": trial.trial_dir_name,
            "status": trial.status,
            "last_result": trial.last_result,
        }
    tune_state.write_trial_records(path, records)
