"""Stage 1, plan: ``run_experiment``'s arguments checked and the experiment decided (names,
where it runs, the analysis options, the mail, one ``SweepSpec``) before anything runs.

``make_plan`` checks what every call needs; ``Plan.sweep`` checks the arguments of a run
(``"run"`` in ``dos``) and builds its ``SweepSpec``, once. ``radas.experiment`` calls it
after the name's owner is checked, where a failure is mailed (as the run's own failures).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from radas import backends
from radas.core.args import of_type, one_of
from radas.core.naming import full_experiment_name, validate_user_name
from radas.core.spec import RunTarget, SweepSpec, parse_run_with
from radas.errors import InvalidArgumentError
from radas.notify import email
from radas.resources import validate_cpu_per_trial
from radas.results import listing
from radas.results.analysis import AnalysisOptions
from radas.storage import store
from radas.trackers import prepare_secrets
from radas.tune.configuration import validate_tuner_init_kwargs

RUN_CHOICES = ("run", "restore", "attach", "stop_attach")
DOS = ("run", "analyze")
LIVE_DEFAULT_S = 10.0  # live=True: the live figure is redrawn every 10 s


@dataclass
class Plan:
    """An experiment as decided before anything runs or is read."""

    user_name: str
    experiment_name: str
    full_name: str
    cwd: str
    target: RunTarget
    backend: backends.Backend
    dos: list[str]
    run_choice: str | None
    yes: bool
    options: AnalysisOptions
    notification: email.Notification | None
    live_s: float | None  # seconds between redraws of the live figure; None: no live figure
    # the run's arguments, checked by ``sweep`` (only with "run" in dos)
    trainable: Any
    param_space: Any
    runtime_env: Any
    cpu_per_trial: Any
    tuner_init_kwargs: dict[str, Any]

    def experiment_location(self) -> store.Location:
        """Where the experiment is stored. Made within the backend's ``store_scope``: a URI's
        S3 endpoint is chosen when its location is made."""
        return store.location(self.backend.results_root(self.user_name)) / self.full_name

    def sweep(self) -> tuple[SweepSpec, dict[str, Any]]:
        """The run's arguments checked: its ``SweepSpec`` and the runtime_env to start it
        with (secrets leave the param_space, stored with every trial, for the trials' env)."""
        if self.trainable is not None:
            validate_trainable(self.trainable)
        runtime_env = _validate_runtime_env(self.runtime_env)
        param_space, secrets = prepare_secrets(_validate_param_space(self.param_space), runtime_env)
        spec = SweepSpec(
            user_name=self.user_name,
            experiment_name=self.experiment_name,
            full_name=self.full_name,
            storage_root=self.backend.results_root(self.user_name),
            trainable=self.trainable,
            param_space=param_space,
            run_choice="run",
            cpu_per_trial=validate_cpu_per_trial(self.cpu_per_trial),
            tuner_init_kwargs=self.tuner_init_kwargs,
            secrets=secrets,
            cwd=self.cwd,
        )
        return spec, runtime_env

    def stored_elsewhere(self) -> str:
        """Where else this name is stored, for a not-found error (looked up only then)."""
        return listing.where_else(
            self.experiment_name, user_name=self.user_name, target=self.target, cwd=self.cwd
        )


def make_plan(
    *,
    user_name: str,
    experiment_name: str,
    run_with: str,
    run_choice: str | None,
    dos: object,
    yes: bool,
    tuner_init_kwargs: dict[str, Any] | None,
    email_notification_to_address: str | None,
    trainable: Any,
    param_space: Any,
    runtime_env: Any,
    cpu_per_trial: Any,
    live: object = False,
    **analysis_arguments: Any,
) -> Plan:
    """``run_experiment``'s arguments (``analysis_arguments``: those of ``AnalysisOptions``)
    checked, in the order a mistake is reported, and the experiment's backend."""
    user_name = validate_user_name(user_name)
    cwd = os.getcwd()
    full_name = full_experiment_name(experiment_name, cwd=cwd)
    checked_dos = _validate_dos(dos)
    # checked whatever dos holds: a wrong value is a mistake even where it is not used
    one_of("run_choice", run_choice, (*RUN_CHOICES, None))
    of_type("yes", yes, bool, "yes=True (start without asking when nothing is stored)")
    target = parse_run_with(run_with)
    backend = backends.get_backend(target)
    options = AnalysisOptions(**analysis_arguments)
    live_s = validate_live(live, has_plot_fn=options.plot_fn is not None)
    tuner_init_kwargs = validate_tuner_init_kwargs(tuner_init_kwargs)
    # the mail when the experiment ends; a bad address fails now, before anything runs
    notify = email_notification_to_address
    return Plan(
        user_name=user_name,
        experiment_name=experiment_name,
        full_name=full_name,
        cwd=cwd,
        target=target,
        backend=backend,
        dos=checked_dos,
        run_choice=run_choice,
        yes=yes,
        options=options,
        notification=email.Notification(notify) if notify is not None else None,
        live_s=live_s,
        trainable=trainable,
        param_space=param_space,
        runtime_env=runtime_env,
        cpu_per_trial=cpu_per_trial,
        tuner_init_kwargs=tuner_init_kwargs,
    )


def _validate_dos(dos: object) -> list[str]:
    if isinstance(dos, str) or not isinstance(dos, (list, tuple)) or not dos:
        raise InvalidArgumentError(
            f"dos={dos!r} is not valid: use ['run', 'analyze'] (default), ['run'] or ['analyze']."
        )
    for item in dos:
        if item not in DOS:
            raise InvalidArgumentError(
                f"dos contains {item!r}: the allowed steps are 'run' and 'analyze', e.g. "
                "dos=['analyze'] to only analyze stored results."
            )
    return list(dos)


def validate_live(live: object, *, has_plot_fn: bool) -> float | None:
    """Seconds between redraws of the live figure (``live=True``: 10), None for ``False``."""
    if live is False:
        return None
    if live is True:
        seconds = LIVE_DEFAULT_S
    elif isinstance(live, (int, float)) and math.isfinite(live) and live > 0:
        seconds = float(live)
    else:
        raise InvalidArgumentError(
            f"live={live!r} is not valid: use live=True (redraw the figure every "
            f"{LIVE_DEFAULT_S:g} s while the experiment runs), a number of seconds such as "
            "live=30, or live=False (the default: the figure only at the end)."
        )
    if not has_plot_fn:
        raise InvalidArgumentError(
            f"live={live!r} redraws the figure of plot_fn while the experiment runs, and no "
            "plot_fn was given: add plot_fn= and plot_kwargs= (e.g. plot_fn=sns.lineplot, "
            "plot_kwargs=dict(x='config/lr', y='loss')), or leave live out. Nothing was run."
        )
    return seconds


def validate_trainable(trainable: object) -> Callable[..., Any]:
    if trainable is None or not callable(trainable):
        raise InvalidArgumentError(
            f"trainable must be a function taking a config dict (or a ray.tune.Trainable "
            f"class), got {trainable!r}: for example "
            "def trainable(config): return {'score': config['a']}."
        )
    return trainable


def _validate_param_space(param_space: object) -> dict[str, Any]:
    if param_space is None:
        return {}
    if not isinstance(param_space, dict):
        raise InvalidArgumentError(
            f"param_space must be a dict, got {type(param_space).__name__}: for example "
            "param_space={'lr': tune.loguniform(1e-4, 1e-1), 'seed': tune.grid_search([0, 1])}."
        )
    columns: dict[str, str] = {}  # config column -> the key path it came from
    for path, value in _param_space_leaves(param_space):
        shown = "".join(f"[{key!r}]" for key in path)
        if isinstance(value, dict) and set(value) == {"grid_search"} and not value["grid_search"]:
            raise InvalidArgumentError(
                f"param_space{shown} is tune.grid_search([]): a grid over no values makes no "
                "trials. Give at least one value, e.g. tune.grid_search([0.1]), or leave the "
                "key out."
            )
        column = "/".join(str(key) for key in path)
        if column in columns:
            raise InvalidArgumentError(
                f"param_space{shown} and param_space{columns[column]} both become the column "
                f"'config/{column}' (nested keys are joined with '/'): one would hide the "
                "other. Rename one of them without '/'."
            )
        columns[column] = shown
        try:
            copy.deepcopy(value)  # Tune copies the param_space for each trial
        except Exception as err:
            raise InvalidArgumentError(
                f"param_space{shown} = {value!r} cannot be copied for each trial "
                f"({type(err).__name__}: {err}). Pass plain values (numbers, strings, lists, "
                "tune.choice(...)); create locks, connections or open files inside the "
                "trainable instead."
            ) from err
    return param_space


def _param_space_leaves(
    space: dict[str, Any], path: tuple[Any, ...] = ()
) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(key path, value) of every value of a param_space, nested dicts walked into (a
    ``tune.grid_search`` is a leaf)."""
    for key, value in space.items():
        if isinstance(value, dict) and value and set(value) != {"grid_search"}:
            yield from _param_space_leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _validate_runtime_env(runtime_env: object) -> dict[str, Any]:
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, dict):
        raise InvalidArgumentError(
            f"runtime_env must be a dict (Ray's runtime_env), got {type(runtime_env).__name__}: "
            "for example runtime_env={'pip': ['optuna'], 'env_vars': {'MY_FLAG': '1'}}."
        )
    if "working_dir" in runtime_env:
        raise InvalidArgumentError(
            "runtime_env['working_dir'] is set by radas (the directory you run from); remove "
            "it. To ship other code, use runtime_env['py_modules']."
        )
    return dict(runtime_env)
