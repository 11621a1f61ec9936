"""Running one Ray Tune sweep with radas's defaults: the code that executes an experiment.

``run_sweep(spec)`` runs wherever Tune runs: in-process for ``run_with="local"``, inside the
Ray Job's driver for clusters. It needs a connected Ray and a results root it can write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from radas.clusters import shape as cluster_shape
from radas.clusters import shape_record
from radas.core.console import print_info, ray_output_wanted
from radas.core.spec import SweepOutcome, SweepSpec
from radas.errors import ExperimentNotFoundError, StorageError, StorageFullError
from radas.ray_compat.install import fixes_installed
from radas.ray_compat.lost_trials import trials_recovered_by
from radas.ray_compat.worker_logs import quiet_ray_logs
from radas.resources import NodeCapacity
from radas.results import tune_state
from radas.results.experiment_info import EXPERIMENT_INFO_FILE, check_owner, describe_param_space
from radas.storage import files as _files
from radas.storage import store as _store
from radas.storage.locks import experiment_lock

# SharedGridValues and TrialRecords: names stored experiments hold under this module
# (``radas.sweep.*`` before the layers, mapped here by ``core.moved``): Tune pickles the run's
# callbacks in tuner.pkl and its searcher, with the grid values of the param_space, in the
# searcher state. Both are defined in ``configuration`` and ``trial_records`` now.
from radas.tune.configuration import (
    SharedGridValues,  # noqa: F401 (pickled name)
    build_tuner,
    user_verbosity,
)
from radas.tune.restore import restore_tuner
from radas.tune.retries import LostTrialRetries, retry_failed_trials
from radas.tune.trial_records import TrialRecords  # noqa: F401 (pickled name)

ARCHIVE_DIR = ".archive"
SNAPSHOT_WARNING = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"
# Trials send their reports in batches of up to 1000, every 0.5 s (up to 2 s with many trials
# running: Tune stretches the time with the number of running trials); see buffering, fix 2.
RESULT_BUFFERING = {
    "TUNE_RESULT_BUFFER_LENGTH": "1000",
    "TUNE_RESULT_BUFFER_MIN_TIME_S": "0.5",
    "TUNE_RESULT_BUFFER_MAX_TIME_S": "2",
}


def run_sweep(spec: SweepSpec, *, before_fit: Callable[[], None] | None = None) -> SweepOutcome:
    """Run or resume the experiment; returns its outcome. Ray must be initialized.

    Holds the experiment's lock throughout (``radas.storage.locks``): a second run or restore of it,
    from any process sharing the results root, gets ExperimentRunningError; a different
    (folder, name) pair mapping onto its full name gets NameCollisionError. ``before_fit``
    (the backend's) runs before every Tune fit, the retries' included.
    """
    with (
        experiment_lock(spec.storage_root, spec.full_name, spec.experiment_name),
        _tune_environment(quiet=not ray_output_wanted(user_verbosity(spec))),
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
        tuner = restore_tuner(spec, spec.cpu_per_trial, capacity, resume_errored=True)
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
            restore_tuner(spec, cpu_per_trial, capacity, resume_errored=False).fit()

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
