"""What radas relies on in Ray's private code, checked before any fix is installed.

A ``Target`` is one private name (module, attribute path, parameters). ``TARGETS`` lists the
targets of every fix (each row names its fix and module): radas installs all the fixes or none
(``fixes_apply``). The readers' tables (saved states, cluster shape, job client) are here too.
When Ray fixes one upstream, removing ours is its module and its rows here.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from radas.core.console import warn

_CONTROLLER = "ray.tune.execution.tune_controller"
_JOB_SDK = "ray.dashboard.modules.dashboard_sdk"


@dataclass(frozen=True)
class Target:
    """A private name a fix relies on: ``path`` in ``module``, and its parameters (None: it
    only has to exist, as a property or a logger does).

    A function radas replaces must take exactly these parameters (Tune calls radas's version
    as it calls its own); one radas only calls may take more after them, with defaults (Ray
    adds ``_ray_trace_ctx=None`` to the methods of a class it made an actor of).
    """

    module: str
    path: str
    parameters: tuple[str, ...] | None
    replaced: bool = False

    def problem(self) -> str | None:
        """What differs from what the fix was written for; None when nothing does."""
        try:
            owner: Any = importlib.import_module(self.module)
            *classes, name = self.path.split(".")
            for class_name in classes:
                owner = getattr(owner, class_name)
            value = inspect.getattr_static(owner, name)
        except (ImportError, AttributeError):
            return f"{self} is missing"
        if self.parameters is None:
            return None
        try:
            parameters = inspect.signature(value).parameters
        except (TypeError, ValueError):
            return f"{self} is no longer a function"
        found = tuple(parameters)
        expected = len(self.parameters)
        extra = [parameters[name] for name in found[expected:]]
        if found[:expected] != self.parameters or (
            extra and (self.replaced or any(p.default is p.empty for p in extra))
        ):
            return f"{self} takes ({', '.join(found)}), not ({', '.join(self.parameters)})"
        return None

    def __str__(self) -> str:
        return f"{self.module}.{self.path}"


TARGETS = (
    # fix 1 (oom)
    Target(
        "ray.air.execution._internal.actor_manager",
        "RayActorManager._actor_task_failed",
        ("self", "tracked_actor_task", "exception"),
        replaced=True,
    ),
    # fix 2 (buffering): radas's _schedule_trial_train calls the controller's methods as Ray's does
    Target(_CONTROLLER, "TuneController._schedule_trial_train", ("self", "trial"), replaced=True),
    Target(_CONTROLLER, "TuneController._maybe_buffer_training", ("self", "trial")),
    Target(
        _CONTROLLER,
        "TuneController._schedule_trial_task",
        (
            "self",
            "trial",
            "method_name",
            "args",
            "kwargs",
            "on_result",
            "on_error",
            "_return_future",
        ),
    ),
    Target(_CONTROLLER, "TuneController._on_training_result", ("self", "trial", "result")),
    Target(_CONTROLLER, "TuneController._trial_task_failure", ("self", "trial", "exception")),
    Target("ray.tune.trainable.trainable", "Trainable.train", ("self",)),
    Target("ray.tune.trainable.trainable", "Trainable.trial_id", None),
    # fix 3 (fifo)
    Target(
        "ray.tune.schedulers.trial_scheduler",
        "FIFOScheduler.choose_trial_to_run",
        ("self", "tune_controller"),
        replaced=True,
    ),
    Target(_CONTROLLER, "TuneController.get_trials", ("self",)),
    Target(_CONTROLLER, "TuneController.get_live_trials", ("self",)),
    # fix 4 (error_file)
    Target("ray.tune.experiment.trial", "Trial.handle_error", ("self", "exc"), replaced=True),
    Target("ray.tune.experiment.trial", "Trial.error_file", None),
    # fix 5 (worker_logs)
    Target(
        "ray._private.worker",
        "print_worker_logs",
        ("data", "print_file", "ignore_prefix"),
        replaced=True,
    ),
    # fix 6 (signals)
    Target("ray.tune.tune", "_setup_signal_catching", (), replaced=True),
    # fix 7 (dedup)
    Target("ray._private.ray_logging", "RAY_DEDUP_LOGS", None),
    # fix 8 (lost_trials; with fix 4's Trial.handle_error)
    Target("ray.tune.experiment.trial", "Trial.should_recover", ("self",), replaced=True),
    Target(_CONTROLLER, "TuneController._process_trial_failure", ("self", "trial", "exception")),
    Target("ray.experimental.internal_kv", "_internal_kv_put", ("key", "value", "overwrite")),
    # fix 9 (callbacks)
    Target("ray.air._internal.usage", "tag_callbacks", ("callbacks",), replaced=True),
    # fix 10 (worker_env)
    Target(
        "ray.tune.execution.class_cache",
        "_ActorClassCache.get",
        ("self", "trainable_cls"),
        replaced=True,
    ),
    Target("ray.tune.execution.class_cache", "DEFAULT_ENV_VARS", None),
    Target("ray.tune.execution.class_cache", "ENV_VARS_TO_PROPAGATE", None),
    # worker_logs.quiet_ray_logs: the loggers of the modules that log Tune's contradicting messages
    Target("ray.tune.tune", "logger", None),
    Target("ray.tune.analysis.experiment_analysis", "logger", None),
)


# What differs from TARGETS in this process's Ray (empty: nothing); None until checked.
_mismatches: tuple[str, ...] | None = None


def fixes_apply() -> bool:
    """Whether this Ray matches every target (checked once per process); the first time one
    does not, a ``RadasWarning`` (``console.warn``) says which and what radas runs without."""
    global _mismatches
    if _mismatches is None:
        _mismatches = tuple(problem for target in TARGETS if (problem := target.problem()))
        if _mismatches:
            import ray

            from radas.ray_compat.versions import supported_range

            warn(
                f"radas's fixes to Ray's internals are off: this Ray ({ray.__version__}) "
                f"differs from the Ray radas was verified against ({supported_range()}): "
                f"{'; '.join(_mismatches)}. Sweeps run on Ray's own code, with the same "
                "results, but a trial killed for memory ends the experiment (radas cannot "
                "retry it), a trial that lost its node or worker runs again only after "
                "the fit, a trainable's os._exit reads as a lost worker, reports "
                "reach the driver one at a time, Tune's FIFO choice "
                "scans every trial, Ray's colour codes and log lines show in error.txt "
                "files and logs, and Ctrl-C does not stop a local sweep running in a "
                "thread. Install a Ray in that range to have them.",
                stacklevel=2,
            )
    return not _mismatches


# What the saved-state readers use (``saved_states``; read and rebuilt, never patched: on a Ray
# where one differs Tune restores as it does and radas repairs nothing).
SAVED_STATE_TARGETS = (
    Target(
        "ray.train._internal.checkpoint_manager",
        "_CheckpointManager.register_checkpoint",
        ("self", "checkpoint_result"),
    ),
    Target("ray.train._internal.checkpoint_manager", "_CheckpointManager.checkpoint_config", None),
    Target(
        "ray.train._internal.checkpoint_manager",
        "_CheckpointManager.latest_checkpoint_result",
        None,
    ),
    Target(
        "ray.train._internal.checkpoint_manager",
        "_CheckpointManager.best_checkpoint_results",
        None,
    ),
    Target("ray.train._internal.session", "_TrainingResult", ("checkpoint", "metrics")),
    # writes {"_type": "CLOUDPICKLE_FALLBACK", "value": <hex of the cloudpickle>}
    Target("ray.tune.utils.serialization", "TuneFunctionEncoder._to_cloudpickle", ("self", "obj")),
)

# What the cluster-shape readers use (``autoscaler``; they read, never patch: on a Ray where one
# differs they answer None, and radas sizes trials from the nodes alive, as without an
# autoscaler); tests/ray/test_ray_compat.py checks them on the newest and the oldest Ray.
SHAPE_TARGETS = (
    Target("ray._private.ray_constants", "DEBUG_AUTOSCALING_STATUS", None),
    Target("ray._private.state", "GlobalState.get_cluster_config", ("self",)),
    Target("ray.experimental.internal_kv", "_internal_kv_get", ("key", "namespace")),
    Target("ray.autoscaler._private.monitor", "Monitor._run", ("self",)),
    Target("ray.autoscaler.v2.sdk", "get_cluster_status", ("gcs_address", "timeout")),
    Target("ray.autoscaler.v2.utils", "is_autoscaler_v2", ("fetch_from_server", "gcs_client")),
    Target("ray.autoscaler.v2.schema", "LaunchRequest", None),
)

# What radas's subclass of Ray's job client overrides (``job_sdk``; Tune's fixes do not depend
# on it: a Ray whose client differs is refused, clusters only).
JOB_CLIENT_TARGETS = (
    Target(
        _JOB_SDK,
        "SubmissionClient._do_request",
        ("self", "method", "endpoint", "data", "json_data", "kwargs"),
        replaced=True,
    ),
    Target(_JOB_SDK, "SubmissionClient._raise_error", ("self", "r"), replaced=True),
)
