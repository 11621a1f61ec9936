"""Fix 10: trials take the workers Ray started with the session.

Ray: ``ray/tune/execution/class_cache.py``, ``_ActorClassCache.get`` gives trial actors a
runtime_env of their own (the variables Tune passes on), so Ray starts a new worker process for
each trial. In the local Ray radas starts, whose processes already hold those values
(``inherited_by_workers``), ours makes the actor class without the runtime_env.
``docs/architecture.md``, "The Ray boundary".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The environment the processes of the local Ray radas started inherited, and that Ray's GCS
# address (None: another Ray).
_workers_environment: tuple[str, dict[str, str]] | None = None


def tune_trial_environment() -> dict[str, str]:
    """The variables Tune passes to its trial actors and the values it would pass now."""
    import os

    from ray.tune.execution import class_cache

    passed = dict(class_cache.DEFAULT_ENV_VARS)
    passed.update(
        {name: os.environ[name] for name in class_cache.ENV_VARS_TO_PROPAGATE if name in os.environ}
    )
    return passed


def worker_setup_environment() -> dict[str, str]:
    """The variable that has every worker process of the local Ray radas starts run radas's
    worker setup (``radas.tune.worker.setup``) as it starts: Ray's
    ``worker_process_setup_hook`` given as a module path (``ray/_private/workers/
    default_worker.py`` reads it; a runtime_env would set it, which fix 10 avoids). Without
    it the setup ran only in workers whose trainable ran (``with_setup``), and a trial actor
    Tune made but never used (another one took both trials) printed "Exception ignored ...
    SystemExit: 1" when Tune ended it."""
    from ray._private import ray_constants

    return {ray_constants.WORKER_PROCESS_SETUP_HOOK_ENV_VAR: "radas.tune.worker.setup"}


def inherited_by_workers(environment: dict[str, str] | None) -> None:
    """Say which environment the processes of radas's own local Ray hold (None: the Ray
    running now is not one radas started, or it stopped)."""
    global _workers_environment
    if environment is None:
        _workers_environment = None
        return
    import ray

    _workers_environment = (ray.get_runtime_context().gcs_address, dict(environment))


def _wrap_actor_class_get(original: Callable[..., Any]) -> Callable[..., Any]:
    def get(self: Any, trainable_cls: Any) -> Any:
        import ray

        started = _workers_environment
        if (
            started is None
            or started[0] != ray.get_runtime_context().gcs_address  # another Ray now
            or any(started[1].get(k) != v for k, v in tune_trial_environment().items())
        ):
            return original(self, trainable_cls)
        plain = self.__dict__.setdefault("_radas_without_runtime_env", {})
        if trainable_cls not in plain:
            plain[trainable_cls] = ray.remote(trainable_cls)
        return plain[trainable_cls]

    return get


def install(replace: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
    from ray.tune.execution.class_cache import _ActorClassCache

    replace(_ActorClassCache, "get", _wrap_actor_class_get)
