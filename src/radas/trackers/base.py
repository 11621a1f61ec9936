"""What the wandb and swanlab helpers share: the config block, secrets and default names.

A trial's config carries one block per tracker::

    config["wandb"] = {"enable": True, "api_key": "...", "init_kwargs": {"project": "p"}}

``enable`` defaults to True when the block is there (no block: disabled), ``api_key`` to the
tracker's own environment variable / login, ``init_kwargs`` to radas's defaults (see
``default_init_kwargs``); every key of ``init_kwargs`` overrides the default of that name.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from radas.core.secrets import is_secret_key
from radas.errors import TrackerConfigError, TrackerNotInstalledError

BLOCK_KEYS = ("enable", "api_key", "init_kwargs")
DEFAULT_PROJECT = "radas"


@dataclass(frozen=True)
class TrackerSpec:
    """One supported tracker: its config key, package, API key variable and install extra."""

    name: str  # the config key, the package to import and the radas extra
    api_key_env: str
    prefix: str  # the helpers' prefix: rwandb_init, rswanlab_init
    dir_kwarg: str  # init's keyword for where run files go
    dir_env: str  # the tracker's own variable for that directory
    name_env: tuple[str, str, str]  # the tracker's variables for project, group and run name
    notes_kwarg: str = "notes"  # init's keyword for the run's description
    run_subdir: str = ""  # where in the trial's directory its run files go


TRACKERS: dict[str, TrackerSpec] = {
    "wandb": TrackerSpec(
        name="wandb",
        api_key_env="WANDB_API_KEY",
        prefix="rwandb",
        dir_kwarg="dir",
        dir_env="WANDB_DIR",
        name_env=("WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_NAME"),
    ),
    "swanlab": TrackerSpec(
        name="swanlab",
        api_key_env="SWANLAB_API_KEY",
        prefix="rswanlab",
        dir_kwarg="log_dir",
        dir_env="SWANLAB_LOG_DIR",
        name_env=("SWANLAB_PROJECT", "SWANLAB_GROUP", "SWANLAB_EXP_NAME"),
        notes_kwarg="description",
        run_subdir="swanlog",
    ),
}


@dataclass(frozen=True)
class TrackerBlock:
    """A validated ``config[<tracker>]`` block."""

    enable: bool
    api_key: str | None = field(default=None, repr=False)
    init_kwargs: dict[str, Any] = field(default_factory=dict)


def read_block(config: object, tracker: str) -> TrackerBlock:
    """The tracker's block of a trial config, validated; disabled when there is none."""
    spec = TRACKERS[tracker]
    example = (
        f'config["{tracker}"] = {{"enable": True, "api_key": None, '
        f'"init_kwargs": {{"project": "my-project"}}}}'
    )
    if not isinstance(config, Mapping):
        raise TrackerConfigError(
            f"{spec.prefix}_init(config) takes the trial's config dict, got "
            f"{type(config).__name__}: call it as {spec.prefix}_init(config) inside the "
            "trainable, with the config Tune passed to it."
        )
    block = config.get(tracker)
    if block is None:
        return TrackerBlock(enable=False)
    if isinstance(block, bool):
        return TrackerBlock(enable=block)
    if not isinstance(block, Mapping):
        raise TrackerConfigError(
            f'config["{tracker}"] must be a dict, got {type(block).__name__}: for example '
            f"{example}."
        )
    unknown = sorted(set(block) - set(BLOCK_KEYS))
    if unknown:
        raise TrackerConfigError(
            f'config["{tracker}"] has unknown key(s) {unknown}; the valid keys are '
            f"{', '.join(BLOCK_KEYS)} (arguments of {tracker}.init go into init_kwargs), "
            f"for example {example}."
        )
    enable = block.get("enable", True)
    if not isinstance(enable, bool):
        raise TrackerConfigError(
            f'config["{tracker}"]["enable"] must be True or False, got {enable!r}.'
        )
    api_key = block.get("api_key")
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
        raise TrackerConfigError(
            f'config["{tracker}"]["api_key"] must be a non-empty string or None (then '
            f"${spec.api_key_env} or the tracker's own login is used), got a "
            f"{type(api_key).__name__}."
        )
    init_kwargs = block.get("init_kwargs") or {}
    if not isinstance(init_kwargs, Mapping):
        raise TrackerConfigError(
            f'config["{tracker}"]["init_kwargs"] must be a dict of {tracker}.init arguments, '
            f"got {type(init_kwargs).__name__}: for example {example}."
        )
    return TrackerBlock(
        enable=enable,
        api_key=api_key.strip() if api_key else None,
        init_kwargs=dict(init_kwargs),
    )


class ActiveRun:
    """The run a tracker's ``*_init`` started in this process (one at a time), or None."""

    def __init__(self) -> None:
        self.run: Any = None

    def log(self, metrics: Mapping[str, Any], **log_kwargs: Any) -> None:
        """Log to the run; a no-op when there is none."""
        if self.run is not None:
            self.run.log(dict(metrics), **log_kwargs)

    def take(self) -> Any:
        """The run (or None), no longer the active one."""
        run, self.run = self.run, None
        return run


def import_tracker(tracker: str) -> ModuleType:
    """Import the tracker's package, or say how to install it."""
    spec = TRACKERS[tracker]
    try:
        return importlib.import_module(spec.name)
    except ImportError as err:
        raise TrackerNotInstalledError(
            f'config["{tracker}"] is enabled but {tracker} cannot be imported where this trial '
            f'runs ({err}). Install it with `pip install "radas-ray[{tracker}]"` (or `pip install '
            f"{tracker}`); on a cluster add runtime_env={{'pip': ['{tracker}']}} to "
            f'run_experiment. Or turn it off with config["{tracker}"]["enable"] = False.'
        ) from err


def logged_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The trial config as a tracker should record it: without the tracker blocks and
    without any value under a secret-looking key (at any depth).

    >>> logged_config({"lr": 0.1, "wandb": {"enable": True}, "db": {"password": "x", "n": 1}})
    {'lr': 0.1, 'db': {'n': 1}}
    """
    return {
        key: _without_secrets(value)
        for key, value in config.items()
        if key not in TRACKERS and not is_secret_key(key)
    }


def _without_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_secrets(v) for k, v in value.items() if not is_secret_key(k)}
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def default_init_kwargs(tracker: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """radas's defaults for ``<tracker>.init``, from the experiment and trial running now.

    Inside a radas trial: project = the experiment name, group = the experiment name and the
    time its ``run_choice="run"`` started (``lr-sweep-20260101-120000``: a restore continues
    in the same group, a fresh run gets a new one), run name = the trial name, tags = the
    user name, notes = the experiment's full name and the trial id, run files in the trial's
    directory, config = the trial config without the tracker blocks and secrets. Outside
    radas: project ``radas``, names from Tune when inside a Tune trial. A tracker's own
    environment variable (``WANDB_PROJECT``, ``WANDB_DIR``, ...) wins over a default.
    """
    spec = TRACKERS[tracker]
    trial = _running_trial() or {}
    experiment = trial.get("experiment")
    names = {"project": DEFAULT_PROJECT, "group": trial.get("experiment_name")}
    names["name"] = trial.get("trial_name")
    defaults: dict[str, Any] = {}
    if experiment is not None:
        names["project"] = sanitize_project(experiment.get("experiment_name") or DEFAULT_PROJECT)
        names["group"] = _group_name(experiment)
        if experiment.get("user_name"):
            defaults["tags"] = [str(experiment["user_name"])]
        defaults[spec.notes_kwarg] = (
            f"radas experiment {experiment.get('full_name')} "
            f"(user {experiment.get('user_name')}), trial {trial['trial_id']}"
        )
    for key, env in zip(("project", "group", "name"), spec.name_env, strict=True):
        if names[key] and not os.environ.get(env):
            defaults[key] = names[key]
    if trial.get("trial_dir") and not os.environ.get(spec.dir_env):
        defaults[spec.dir_kwarg] = str(Path(trial["trial_dir"], spec.run_subdir))
    defaults["config"] = logged_config(config)
    return defaults


def sanitize_project(name: str) -> str:
    """A project name the trackers accept: at most 128 characters, none of ``/\\#?%:``.

    >>> sanitize_project("lr sweep/v2")
    'lr_sweep_v2'
    """
    cleaned = re.sub(r"[\\/#?%:\s]+", "_", name).strip("_") or DEFAULT_PROJECT
    return cleaned[:128]


def _group_name(experiment: Mapping[str, Any]) -> str:
    started = experiment.get("started")
    stamp = ""
    if isinstance(started, str):
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.strptime(started, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            stamp = re.sub(r"[^0-9A-Za-z]+", "", started)
    base = str(experiment.get("experiment_name") or DEFAULT_PROJECT)
    return f"{base}-{stamp}"[:128] if stamp else base[:128]


def _running_trial() -> dict[str, Any] | None:
    """One look at the Tune trial running now (None outside one): Tune's names for it, its
    directory in the experiment's storage, and the radas experiment it belongs to
    (``experiment``: the record radas stored with it, None for a plain Tune run)."""
    try:
        from ray import tune

        with warnings.catch_warnings():  # Ray warns when asked outside a trial
            warnings.simplefilter("ignore")
            context = tune.get_context()
            trial_name = context.get_trial_name()
            storage = context.get_storage() if trial_name is not None else None
    except Exception:  # Ray missing, or no Tune session at all
        return None
    if storage is None:
        return None
    # Tune's own trial dir is a temporary staging copy; the stored one is where results are
    # kept, usable when it is a local or mounted path
    local = type(storage.storage_filesystem).__name__ == "LocalFileSystem"
    return {
        "trial_name": trial_name,
        "trial_id": context.get_trial_id(),
        "experiment_name": context.get_experiment_name(),
        "trial_dir": str(storage.trial_fs_path) if local else None,
        "experiment": _experiment_record(storage.experiment_fs_path) if local else None,
    }


def _experiment_record(experiment_dir: str) -> dict[str, Any] | None:
    """The record radas stored with the experiment (``radas_experiment.json``, see
    ``radas.results.experiment_info``; read here as a plain file, since a trial needs none of the
    storage layers that module brings), or None."""
    try:
        record = json.loads(Path(experiment_dir, "radas_experiment.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def merged_init_kwargs(
    tracker: str, config: Mapping[str, Any], block: TrackerBlock
) -> dict[str, Any]:
    """radas's defaults overridden key by key by the block's ``init_kwargs``."""
    kwargs = default_init_kwargs(tracker, config)
    kwargs.update(copy.deepcopy(block.init_kwargs))
    run_dir = kwargs.get(TRACKERS[tracker].dir_kwarg)
    if run_dir:
        os.makedirs(run_dir, exist_ok=True)  # wandb falls back to a temp dir when it is missing
    return kwargs
