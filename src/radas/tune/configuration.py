"""The Tune configuration of a sweep: the ``tune.Tuner`` radas builds and what it checks.

``validate_tuner_init_kwargs`` checks the user's ``tuner_init_kwargs`` before anything runs;
``build_tuner`` makes the Tuner: the user's TuneConfig (radas's FIFO scheduler if none) and
RunConfig with radas's storage, callbacks (progress line, history, trial records) and states
kept, and the trainable with its resources, secrets, kept output and worker setup. Grid
values are shared rather than deep-copied per trial (``SharedGridValues``).
"""

from __future__ import annotations

import dataclasses
import sys
import sysconfig
from pathlib import Path
from typing import Any

from ray import tune

from radas.core.secrets import with_secrets
from radas.core.spec import SweepSpec
from radas.errors import InvalidArgumentError
from radas.ray_compat.fifo import default_scheduler
from radas.ray_compat.private import run_config_verbose
from radas.resources import NodeCapacity, trial_resources
from radas.storage import store as _store
from radas.tune.history import HistoryRecorder
from radas.tune.progress import ProgressLine
from radas.tune.trial import with_output_kept
from radas.tune.trial_records import TrialRecords
from radas.tune.worker import with_setup

TUNER_INIT_KEYS = ("tune_config", "run_config")
RADAS_OWNED_RUN_CONFIG_FIELDS = ("name", "storage_path", "storage_filesystem")
# Checkpoints (states saved with radas.report(..., state=...)) kept per trial, unless the
# run_config has a checkpoint_config of its own: the latest one to continue from, and the one
# before it, which Tune's last snapshot may still name after a killed driver (Tune snapshots
# its state at least every num_to_keep checkpoints of a trial, so the one it names exists).
STATES_KEPT = 2


def validate_tuner_init_kwargs(tuner_init_kwargs: object) -> dict[str, Any]:
    """Check ``tuner_init_kwargs`` before anything runs; returns a copy."""
    if tuner_init_kwargs is None:
        return {}
    if not isinstance(tuner_init_kwargs, dict):
        raise InvalidArgumentError(
            "tuner_init_kwargs must be a dict such as "
            "dict(tune_config=tune.TuneConfig(num_samples=10), run_config=tune.RunConfig(...)), "
            f"got {type(tuner_init_kwargs).__name__}."
        )
    for key in tuner_init_kwargs:
        if key in ("trainable", "param_space"):
            raise InvalidArgumentError(
                f"tuner_init_kwargs[{key!r}] is not allowed: pass {key}=... to run_experiment."
            )
        if key not in TUNER_INIT_KEYS:
            raise InvalidArgumentError(
                f"tuner_init_kwargs has unknown key {key!r}: tune.Tuner takes "
                f"{' and '.join(TUNER_INIT_KEYS)} here."
            )
    tune_config = tuner_init_kwargs.get("tune_config")
    if tune_config is not None and not isinstance(tune_config, (tune.TuneConfig, dict)):
        raise InvalidArgumentError(
            "tuner_init_kwargs['tune_config'] must be a ray.tune.TuneConfig or a dict of its "
            f"fields, got {type(tune_config).__name__}."
        )
    if isinstance(tune_config, dict):
        _tune_config_from_dict(tune_config)
    run_config = tuner_init_kwargs.get("run_config")
    if run_config is not None:
        if not isinstance(run_config, tune.RunConfig):
            raise InvalidArgumentError(
                "tuner_init_kwargs['run_config'] must be a ray.tune.RunConfig, "
                f"got {type(run_config).__name__}."
            )
        from ray.train.constants import DEFAULT_STORAGE_PATH

        # what RunConfig fills in
        defaults = {"name": None, "storage_path": DEFAULT_STORAGE_PATH, "storage_filesystem": None}
        for name in RADAS_OWNED_RUN_CONFIG_FIELDS:
            if getattr(run_config, name) != defaults[name]:
                raise InvalidArgumentError(
                    f"RunConfig({name}=...) is set by radas: results are stored under the "
                    "results root as <user_name>/<full experiment name>. Remove "
                    f"{name}= from run_config; use experiment_name= to name the experiment."
                )
    return dict(tuner_init_kwargs)


def is_function_trainable(trainable: Any) -> bool:
    return not (isinstance(trainable, type) and issubclass(trainable, tune.Trainable))


def ship_trainable_by_value(trainable: Any) -> None:
    """Make the trainable travel with the experiment instead of being imported by workers.

    A trainable from a project file (not an installed package) is pickled by value, so it
    works wherever Ray runs it: defined in ``__main__``, a notebook, a test module, or a file
    outside the working directory. Modules it imports must still be importable there.
    """
    module = sys.modules.get(getattr(trainable, "__module__", "") or "")
    if module is None or module.__name__ == "__main__":
        return  # __main__ is always pickled by value
    top_level = module.__name__.partition(".")[0]
    module_file = getattr(module, "__file__", None)
    if top_level in ("radas", "ray") or not module_file or _is_installed(module_file):
        return
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(module)


def _is_installed(module_file: str) -> bool:
    resolved = str(Path(module_file).resolve())
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib")}
    return any(resolved.startswith(str(Path(root).resolve())) for root in roots)


def build_tuner(spec: SweepSpec, capacity: NodeCapacity | None = None) -> tune.Tuner:
    """A tune.Tuner with radas's storage, callbacks and fast defaults."""
    tune_config = _tune_config(spec)
    run_config = _run_config(spec, tune_config)
    return tune.Tuner(
        trainable_with_resources(spec, spec.cpu_per_trial, capacity),
        param_space=share_grid_values(spec.param_space),
        tune_config=tune_config,
        run_config=run_config,
    )


def _tune_config(spec: SweepSpec) -> tune.TuneConfig:
    """The TuneConfig the user gave, with radas's FIFO scheduler (``ray_compat.fifo``, fix 3) if
    they gave none; theirs (ASHA, PBT, ...) as given."""
    tune_config = _given_tune_config(spec)
    if tune_config.scheduler is None:
        return dataclasses.replace(tune_config, scheduler=default_scheduler())
    return tune_config


def _given_tune_config(spec: SweepSpec) -> tune.TuneConfig:
    given = spec.tuner_init_kwargs.get("tune_config")
    function_trainable = is_function_trainable(spec.trainable)
    if isinstance(given, dict):
        fields = {"reuse_actors": function_trainable, **given}
        return _tune_config_from_dict(fields)
    if given is None:
        return tune.TuneConfig(reuse_actors=function_trainable)
    if function_trainable and not given.reuse_actors:
        # TuneConfig cannot tell "left at default" from "set to False"; pass tune_config as a
        # dict with reuse_actors=False to really turn actor reuse off.
        return dataclasses.replace(given, reuse_actors=True)
    return given


def _tune_config_from_dict(fields: dict[str, Any]) -> tune.TuneConfig:
    try:
        return tune.TuneConfig(**fields)
    except TypeError as err:
        valid = sorted(f.name for f in dataclasses.fields(tune.TuneConfig))
        raise InvalidArgumentError(
            f"tuner_init_kwargs['tune_config'] has a key TuneConfig does not take ({err}). "
            f"Valid keys: {', '.join(valid)}."
        ) from err


def _run_config(spec: SweepSpec, tune_config: tune.TuneConfig) -> tune.RunConfig:
    given = spec.tuner_init_kwargs.get("run_config") or tune.RunConfig()
    history = HistoryRecorder()
    callbacks = [
        *(given.callbacks or []),
        ProgressLine(spec.experiment_name, metric=tune_config.metric, mode=tune_config.mode),
        history,
        TrialRecords(history),  # last: writes after the history, raises a full disk
    ]
    storage_path, storage_filesystem = _store.arrow_source(_store.location(spec.storage_root))
    return dataclasses.replace(
        given,
        name=spec.full_name,
        storage_path=storage_path,
        storage_filesystem=storage_filesystem,
        callbacks=callbacks,
        verbose=0 if user_verbosity(spec) is None else given.verbose,
        checkpoint_config=(
            tune.CheckpointConfig(num_to_keep=STATES_KEPT)
            if given.checkpoint_config == tune.CheckpointConfig()
            else given.checkpoint_config
        ),
    )


def user_verbosity(spec: SweepSpec) -> Any:
    """The verbose= the user gave RunConfig, or None."""
    given = spec.tuner_init_kwargs.get("run_config")
    return None if given is None else run_config_verbose(given)


class SharedGridValues(list):
    """The values of one ``tune.grid_search``, shared instead of deep-copied.

    Tune's variant generator deep-copies the whole unresolved search space once per trial,
    grid value lists included: O(trials) work per trial, O(trials^2) for a grid. The values
    are never changed, so when they are all immutable scalars one shared list is exact.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedGridValues:
        return self


_SCALARS = (int, float, str, bool, bytes, type(None))


def share_grid_values(space: Any) -> Any:
    """``space`` with every scalar-only ``grid_search`` list made a SharedGridValues."""
    if isinstance(space, dict):
        if set(space) == {"grid_search"} and isinstance(space["grid_search"], (list, tuple)):
            values = space["grid_search"]
            if all(isinstance(value, _SCALARS) for value in values):
                return {"grid_search": SharedGridValues(values)}
            return space
        return {key: share_grid_values(value) for key, value in space.items()}
    return space


def trainable_with_resources(
    spec: SweepSpec, cpu_per_trial: float, capacity: NodeCapacity | None
) -> Any:
    """The trainable Tune runs: the spec's, with its secrets in each trial's environment,
    its output kept in its folder (``trial.with_output_kept``) and radas's worker setup run
    first (``_worker.with_setup``)."""
    trainable = with_setup(with_output_kept(with_secrets(spec.trainable, spec.secrets)))
    return tune.with_resources(trainable, trial_resources(cpu_per_trial, capacity))
