"""Running one Ray Tune sweep with radas's defaults: the code that executes an experiment.

``run_sweep(spec)`` runs wherever Tune runs: in-process for ``run_with="local"``, inside the
Ray Job's driver for clusters. It needs a connected Ray and a results root it can write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import pickle
import re
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune

from radas.clusters import shape as cluster_shape
from radas.clusters import shape_record
from radas.core.console import print_info, ray_output_wanted, warn
from radas.core.secrets import with_secrets
from radas.core.spec import SweepOutcome, SweepSpec
from radas.errors import (
    ExperimentNotFoundError,
    InvalidArgumentError,
    StorageError,
    StorageFullError,
)
from radas.ray_compat.fifo import default_scheduler
from radas.ray_compat.install import fixes_installed
from radas.ray_compat.lost_trials import trials_recovered_by
from radas.ray_compat.private import run_config_verbose
from radas.ray_compat.worker_logs import quiet_ray_logs
from radas.resources import NodeCapacity, trial_resources
from radas.results import state_repair, tune_state
from radas.results.experiment_info import EXPERIMENT_INFO_FILE, check_owner, describe_param_space
from radas.results.history import load_history
from radas.storage import files as _files
from radas.storage import store as _store
from radas.storage.locks import experiment_lock
from radas.tune.history import HistoryRecorder
from radas.tune.progress import ProgressLine
from radas.tune.retries import LostTrialRetries, retry_failed_trials
from radas.tune.trial import with_output_kept
from radas.tune.trial_records import TrialRecords  # also the name older tuner.pkl files hold
from radas.tune.worker import with_setup

TUNER_INIT_KEYS = ("tune_config", "run_config")
RADAS_OWNED_RUN_CONFIG_FIELDS = ("name", "storage_path", "storage_filesystem")
ARCHIVE_DIR = ".archive"
# Checkpoints (states saved with radas.report(..., state=...)) kept per trial, unless the
# run_config has a checkpoint_config of its own: the latest one to continue from, and the one
# before it, which Tune's last snapshot may still name after a killed driver (Tune snapshots
# its state at least every num_to_keep checkpoints of a trial, so the one it names exists).
STATES_KEPT = 2
SNAPSHOT_WARNING = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"
# Trials send their reports in batches of up to 1000, every 0.5 s (up to 2 s with many trials
# running: Tune stretches the time with the number of running trials); see buffering, fix 2.
RESULT_BUFFERING = {
    "TUNE_RESULT_BUFFER_LENGTH": "1000",
    "TUNE_RESULT_BUFFER_MIN_TIME_S": "0.5",
    "TUNE_RESULT_BUFFER_MAX_TIME_S": "2",
}


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


def run_sweep(spec: SweepSpec, *, before_fit: Callable[[], None] | None = None) -> SweepOutcome:
    """Run or resume the experiment; returns its outcome. Ray must be initialized.

    Holds the experiment's lock throughout (``radas.storage.locks``): a second run or restore of it,
    from any process sharing the results root, gets ExperimentRunningError; a different
    (folder, name) pair mapping onto its full name gets NameCollisionError. ``before_fit``
    (the backend's) runs before every Tune fit, the retries' included.
    """
    with (
        experiment_lock(spec.storage_root, spec.full_name, spec.experiment_name),
        _tune_environment(quiet=not ray_output_wanted(_user_verbosity(spec))),
    ):
        if spec.cwd:
            check_owner(spec.experiment_path, experiment_name=spec.experiment_name, cwd=spec.cwd)
        return _run_sweep_locked(spec, before_fit or (lambda: None))


def _run_sweep_locked(spec: SweepSpec, before_fit: Callable[[], None]) -> SweepOutcome:
    before_fit()  # before the Tuner: it registers the trainable with the running Ray
    started = time.monotonic()
    path = _store.location(spec.experiment_path)
    capacity = _size_trials(spec)
    archived_to = already_done = None
    if spec.run_choice == "run":
        archived_to = archive_previous_results(spec)
        write_experiment_info(spec)
        tuner = build_tuner(spec, capacity)
    else:
        trials = tune_state.load_trial_states(path)
        if not trials:
            raise ExperimentNotFoundError(
                f"Nothing to restore for experiment {spec.experiment_name!r}: no stored state "
                f"at {path}. Start it with run_choice='run'."
            )
        already_done = sum(trial.finished for trial in trials)
        print_info(
            f"{spec.experiment_name}: resuming from {path}: {already_done} of {len(trials)} "
            "trials were already done and are kept; unfinished and errored trials continue."
        )
        tuner = _restore(spec, spec.cpu_per_trial, capacity, resume_errored=True)
    # A trial that lost its node or worker runs again within the fit (radas.tune.retries).
    lost_retries = LostTrialRetries()
    # Tune's own writes (its state, tuner.pkl) on a full disk raise a plain OSError.
    with (
        _store.unreachable_as_error(
            path,
            during="while the experiment ran",
            then="run_choice='restore' continues the experiment",
        ),
        _files.no_space_as_error(path, None),
        trials_recovered_by(lost_retries.in_fit),
    ):
        tuner.fit()

        def rerun(cpu_per_trial: float) -> None:
            before_fit()  # before the Tuner: it registers the trainable with the running Ray
            _restore(spec, cpu_per_trial, capacity, resume_errored=False).fit()

        retries = retry_failed_trials(spec, capacity, rerun, lost_retries)
    trials = tune_state.load_trial_states(path)
    return SweepOutcome.of_trials(
        str(path),
        trials,
        already_done=already_done,
        archived_to=archived_to,
        seconds=time.monotonic() - started,
        cpu_per_trial=retries.cpu_per_trial,
        memory_retried=sorted(retries.memory_retried),
        out_of_memory=sorted(retries.out_of_memory),
    )


def _size_trials(spec: SweepSpec) -> NodeCapacity:
    """The node capacity trials are sized from: the cluster's largest node type (it may have
    no node yet), with the radas config's overrides; a request no type can hold is refused.
    On a cluster, what was read is kept next to the results for the client's checks and
    ``radas clusters`` (``clusters.shape.record``)."""
    cluster = os.environ.get("RADAS_CLUSTER")
    where = f"cluster:{cluster}" if cluster else "this machine"
    sized = cluster_shape.sizing(
        cluster_shape.from_ray(), cluster_shape.Overrides.from_env(), where
    )
    if cluster and os.environ.get("RADAS_RESULTS_ROOT"):
        shape_record.record(sized.shape, os.environ["RADAS_RESULTS_ROOT"])
    if sized.note:
        print_info(f"{spec.experiment_name}: {sized.note}")
    sized.check(spec.cpu_per_trial, where)
    # nothing known to size from: the trial's CPUs alone
    return sized.capacity or NodeCapacity(cpus=spec.cpu_per_trial)


def _restore(
    spec: SweepSpec, cpu_per_trial: float, capacity: NodeCapacity, *, resume_errored: bool
) -> tune.Tuner:
    # Trials radas recorded as ended stay ended, even where Tune's last snapshot lags.
    state_repair.reconcile_with_records(spec.experiment_path)
    _rebuild_damaged_tuner_file(spec, capacity)
    _continue_trials_whose_state_is_gone(spec)
    # The trainable's resources apply to every trial that is still pending.
    experiment_path, filesystem = _store.arrow_source(_store.location(spec.experiment_path))
    try:
        return tune.Tuner.restore(
            experiment_path,
            storage_filesystem=filesystem,
            trainable=_trainable_with_resources(spec, cpu_per_trial, capacity),
            param_space=share_grid_values(spec.param_space),
            resume_unfinished=True,
            resume_errored=resume_errored,
        )
    except ValueError as err:
        if "Invalid `trainable`" not in str(err):
            raise
        raise _renamed_trainable_error(spec, err) from err


def _renamed_trainable_error(spec: SweepSpec, err: ValueError) -> InvalidArgumentError:
    """Tune's refusal of a trainable whose name is not the stored one, said radas's way."""
    stored = re.search(r"expected '([^']*)'", str(err))
    was = f" {stored.group(1)!r}" if stored else ""
    now = getattr(spec.trainable, "__name__", type(spec.trainable).__name__)
    return InvalidArgumentError(
        f"{spec.experiment_name}: restore needs the trainable the experiment was started "
        f"with, named{was or ' as it was'}; this one is named {now!r} (Tune finds a stored "
        f"experiment's trainable by its name). Rename it back{was and ' to' + was} to "
        "continue the stored trials, or start afresh with run_choice='run' (the stored "
        "results are moved to .archive/)."
    )


def _continue_trials_whose_state_is_gone(spec: SweepSpec) -> None:
    """An unfinished trial whose latest saved state, as Tune's newest snapshot names it, is
    gone failed on every restore (Tune: "Could not recover from checkpoint as it does not
    exist on storage anymore"). Tune deletes all but the latest ``num_to_keep`` states of a
    trial before its next snapshot is stored, so a killed run can leave a snapshot naming one
    it deleted (the newer ones are there); a state can also be deleted by hand or lost.

    The trial continues from the newest state that is complete (its folder holds files, and
    the history has the report it came with: its iteration count continues from there, so
    each report keeps its iteration), else from scratch; radas says which."""
    path = _store.location(spec.experiment_path)
    damaged = state_repair.saved_states_gone(path)
    if not damaged:
        return
    history = load_history(path) if any(d.latest_gone for d in damaged.values()) else None
    if history is not None and "checkpoint_dir_name" not in history.columns:
        history = history.assign(checkpoint_dir_name=None)
    chosen: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for trial_id, states in damaged.items():
        if not states.latest_gone or history is None:
            continue  # the older ones Tune keeps are dropped from its list (they are gone)
        reports = history[history["trial_id"] == trial_id].dropna(subset=["checkpoint_dir_name"])
        by_folder = {row["checkpoint_dir_name"]: row for _, row in reports.iterrows()}
        folders = sorted(
            (f for f in (path / states.trial_dir).glob("checkpoint_*") if f.is_dir()),
            key=lambda folder: folder.name,
            reverse=True,
        )
        complete = next((f for f in folders if f.name in by_folder and any(f.iterdir())), None)
        name = complete.name if complete is not None else None
        chosen[trial_id] = (name, _report_metrics(by_folder[name]) if name else {})
        then = (
            f"it continues from the newest complete one ({name})"
            if name
            else "it restarts from scratch (load_state() returns None); its earlier reports "
            "are replaced as it runs again"
        )
        warn(
            f"{spec.experiment_name}: trial {trial_id}'s latest saved state "
            f"{path / states.trial_dir / states.latest} is missing (Tune deleted it after its "
            f"last stored snapshot, or it was deleted or lost): {then}."
        )
    state_repair.continue_from(path, damaged, chosen)


def _report_metrics(row: pd.Series) -> dict[str, Any]:
    """A history row as the metrics Tune restores a trial with (top-level values only)."""
    metrics = {}
    for name, value in row.items():
        if "/" in name or value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        metrics[name] = value.item() if isinstance(value, np.generic) else value
    return metrics


def _rebuild_damaged_tuner_file(spec: SweepSpec, capacity: NodeCapacity) -> None:
    """Tune keeps the run's settings in ``tuner.pkl``; when it is missing or damaged, write
    it again from this call's arguments (trials and results are elsewhere)."""
    tuner_file = _store.location(spec.experiment_path) / "tuner.pkl"
    try:
        pickle.loads(tuner_file.read_bytes())
        return
    except Exception as err:  # missing, emptied, truncated: unpickling fails in many ways
        problem = f"{type(err).__name__}: {str(err)[:120]}"
    warn(
        f"{spec.experiment_name}: {tuner_file} is damaged ({problem}); it is written again "
        "from this call's arguments (tuner_init_kwargs), the trials and their results are "
        "kept."
    )
    with _files.no_space_as_error(tuner_file, None):
        build_tuner(spec, capacity)


@contextlib.contextmanager
def _tune_environment(quiet: bool) -> Iterator[None]:
    """Settings for the duration of a fit (then restored).

    - Ray's default per-trial loggers (result.json, progress.csv, TensorBoard files) are off:
      radas keeps every result in its own history (radas_history/, written in batches), and
      ``radas.Tuner.get_results()`` writes Ray's result.json files from it on first use.
      Passing logger callbacks in ``run_config`` still adds them; ``RADAS_RAY_LOGGERS=1``
      keeps Ray's defaults.
    - Results are buffered in the trial's worker (``RESULT_BUFFERING``), unless the user set
      Tune's variables themselves.
    - Tune's messages that contradict radas (its restore advice, "Press CTRL+C", "Failed to
      fetch metrics") are dropped (``ray_compat.worker_logs.quiet_ray_logs``), for the whole sweep:
      Tune's restore logs too.
    - radas's fixes to Tune's code are installed (``install.fixes_installed``) and removed
      after, so a ``tune.Tuner`` of the user's own runs on Ray's code.
    - ``quiet`` (unless ``console.ray_output_wanted``): Ray's INFO and WARNING records, the
      raylet's lines and each errored trial's traceback (``TUNE_PRINT_ALL_TRIAL_ERRORS=0``:
      radas prints one line per errored trial instead) stay off the console, and so does the
      banner Ray's new output engine prints even with verbose=0 (the legacy engine,
      ``RAY_AIR_NEW_OUTPUT=0``, honours verbose=0 fully).
    """
    settings = {
        # One actor call per batch of reports instead of one per report. Schedulers and
        # searchers still see every result, in order.
        name: value
        for name, value in RESULT_BUFFERING.items()
        if name not in os.environ
    }
    if os.environ.get("RADAS_RAY_LOGGERS") != "1":
        settings["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # Tune snapshots its state every STATES_KEPT states a trial saves (so that the state its
    # snapshot names is never deleted) and warns when that is often: the cost radas chose.
    if SNAPSHOT_WARNING not in os.environ:
        settings[SNAPSHOT_WARNING] = "0"
    if quiet:
        settings["RAY_AIR_NEW_OUTPUT"] = "0"
        settings["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "0"
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    # Optuna's INFO records ("A new study created in memory", one per trial it tells) are
    # Ray-like noise on a quiet console: WARNING and up only, as for Ray's loggers.
    optuna_logger = logging.getLogger("optuna")
    optuna_level = optuna_logger.level
    if quiet:
        optuna_logger.setLevel(max(optuna_level, logging.WARNING))
    try:
        with fixes_installed(), quiet_ray_logs(not quiet):
            yield
    finally:
        optuna_logger.setLevel(optuna_level)
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_experiment_info(spec: SweepSpec) -> None:
    """Who ran the experiment, under which name, from which folder and with which param_space:
    read by trials (trackers, artifacts) through ``radas.tune.trial.current_experiment()``, by tools
    that list experiments, and by the checks of ``radas.results.experiment_info``."""
    path = _store.location(spec.experiment_path)
    path.mkdir(parents=True, exist_ok=True)
    info = {
        "user_name": spec.user_name,
        "experiment_name": spec.experiment_name,
        "cwd": spec.cwd or None,
        "full_name": spec.full_name,
        "storage_root": spec.storage_root,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cluster": os.environ.get("RADAS_CLUSTER"),
        "param_space": describe_param_space(spec.param_space or {}),
    }
    _files.write_atomic(path / EXPERIMENT_INFO_FILE, json.dumps(info, indent=2))


def archive_previous_results(spec: SweepSpec) -> str | None:
    """Move earlier results of the same name aside (never delete them); returns where to.

    In an object store, moving is copying everything, then deleting the original."""
    path = _store.location(spec.experiment_path)
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = _store.location(spec.storage_root) / ARCHIVE_DIR / spec.full_name / stamp
    suffix = 1
    while target.exists():
        suffix += 1
        target = target.with_name(f"{stamp}-{suffix}")
    if isinstance(path, _store.UriPath) and isinstance(target, _store.UriPath):
        path.move_tree(target)
    else:
        assert isinstance(path, Path) and isinstance(target, Path)  # one root: both local
        _check_room_to_run(spec, path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # a rename or nothing: a copy that fails half-way (a read-only folder, a full
            # disk) left a partial copy in .archive/ at every try
            os.rename(path, target)
        except OSError as err:
            raise StorageError(
                f"{spec.experiment_name}: run_choice='run' moves the earlier results at "
                f"{path} to {target}, which failed ({err.strerror or err}); nothing was "
                "moved or changed. Make the folder writable (or, if it is a mount point, "
                "run from another results root), or continue it with run_choice='restore'; "
                f"dos=['analyze'] reads it as it is."
            ) from err
    print_info(
        f"{spec.experiment_name}: earlier results moved to {target} "
        "(run_choice='run' starts fresh; use run_choice='restore' to continue instead)."
    )
    return str(target)


# A run needs at least this much free space where its results go before the earlier results
# are moved aside: with less, its first writes fail and the advice to restore would find
# the folder gone to .archive/
MIN_FREE_TO_RUN_BYTES = 64 * 2**20


def _check_room_to_run(spec: SweepSpec, path: Path) -> None:
    """Refuse, before the earlier results at ``path`` are moved, a run that could not write
    its own: the disk nearly full, or the results root not writable (a read-only mount)."""
    root = Path(spec.storage_root)
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_TO_RUN_BYTES:
        raise StorageFullError(
            f"{spec.experiment_name}: only {free / 2**20:.1f} MiB free at {root}, too little "
            "to run (radas needs "
            f"{MIN_FREE_TO_RUN_BYTES // 2**20} MiB free); the earlier results at {path} were "
            "not moved and are kept as they are. Free space there, then run again, or "
            "continue them with run_choice='restore'."
        )
    if not os.access(root, os.W_OK) or _read_only_mount(root):
        raise StorageError(
            f"{spec.experiment_name}: the results root {root} is read-only here; the earlier "
            f"results at {path} were not moved. Run with a writable results root (RADAS_HOME, "
            "or the cluster's results_root); dos=['analyze'] reads them as they are."
        )


def _read_only_mount(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def build_tuner(spec: SweepSpec, capacity: NodeCapacity | None = None) -> tune.Tuner:
    """A tune.Tuner with radas's storage, callbacks and fast defaults."""
    tune_config = _tune_config(spec)
    run_config = _run_config(spec, tune_config)
    return tune.Tuner(
        _trainable_with_resources(spec, spec.cpu_per_trial, capacity),
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
        verbose=0 if _user_verbosity(spec) is None else given.verbose,
        checkpoint_config=(
            tune.CheckpointConfig(num_to_keep=STATES_KEPT)
            if given.checkpoint_config == tune.CheckpointConfig()
            else given.checkpoint_config
        ),
    )


def _user_verbosity(spec: SweepSpec) -> Any:
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


def _trainable_with_resources(
    spec: SweepSpec, cpu_per_trial: float, capacity: NodeCapacity | None
) -> Any:
    """The trainable Tune runs: the spec's, with its secrets in each trial's environment,
    its output kept in its folder (``trial.with_output_kept``) and radas's worker setup run
    first (``_worker.with_setup``)."""
    trainable = with_setup(with_output_kept(with_secrets(spec.trainable, spec.secrets)))
    return tune.with_resources(trainable, trial_resources(cpu_per_trial, capacity))
