"""A trial's saved states as Tune records them (its checkpoint manager), read and rebuilt.

Tune keeps, per trial, the checkpoints it knows (``ray/train/_internal/checkpoint_manager.py``,
``_CheckpointManager``, pickled into the experiment state's trial metadata under
``checkpoint_manager`` with Tune's ``CLOUDPICKLE_FALLBACK`` JSON encoding) and restores a trial
from the latest, with that checkpoint's metrics (its ``training_iteration`` is where the
trial's count continues). A snapshot can name a checkpoint Tune deleted since (it keeps
``num_to_keep`` and deletes the oldest before its next snapshot is stored): radas points the
trial at another one before Tune restores it (``radas.tune.sweep``). What it uses:
``targets.SAVED_STATE_TARGETS``.
"""

from __future__ import annotations

import functools
from typing import Any

from ray import cloudpickle

from radas.ray_compat.targets import SAVED_STATE_TARGETS

_PICKLED = "CLOUDPICKLE_FALLBACK"


def saved_states(encoded: Any) -> tuple[str, list[str]] | None:
    """The path of the checkpoint Tune restores a trial from and the paths of every one it
    keeps (it deletes the oldest of these as new ones come), given the trial metadata's
    ``checkpoint_manager`` entry; None when it names none or cannot be read."""
    if not _saved_states_readable():
        return None  # another Ray: Tune restores as it does (radas repairs nothing)
    manager = _decoded(encoded)
    latest = getattr(manager, "latest_checkpoint_result", None)
    if latest is None or latest.checkpoint is None:
        return None
    kept = [result.checkpoint.path for result in manager.best_checkpoint_results]
    return latest.checkpoint.path, kept


def saved_states_at(encoded: Any, path: str | None, metrics: dict[str, Any]) -> Any:
    """The ``checkpoint_manager`` entry naming only the checkpoint at ``path`` (on the
    filesystem of the one it named), restored with ``metrics``; with ``path`` None, none: the
    trial starts from scratch."""
    from ray.train._internal.session import _TrainingResult

    manager = _decoded(encoded)
    fresh = type(manager)(manager.checkpoint_config)
    if path is not None:
        named = manager.latest_checkpoint_result.checkpoint
        checkpoint = type(named)(path=path, filesystem=named.filesystem)
        fresh.register_checkpoint(_TrainingResult(checkpoint=checkpoint, metrics=metrics))
    return _encoded(fresh)


def saved_states_without(encoded: Any, missing: set[str]) -> Any:
    """The ``checkpoint_manager`` entry without the checkpoints at ``missing`` (Tune would
    fail deleting them later); the latest stays the latest."""
    manager = _decoded(encoded)
    latest = manager.latest_checkpoint_result
    fresh = type(manager)(manager.checkpoint_config)
    for result in manager.best_checkpoint_results:
        if result is not latest and result.checkpoint.path not in missing:
            fresh.register_checkpoint(result)
    fresh.register_checkpoint(latest)
    return _encoded(fresh)


def _encoded(manager: Any) -> dict[str, str]:
    return {"_type": _PICKLED, "value": cloudpickle.dumps(manager).hex()}


@functools.cache
def _saved_states_readable() -> bool:
    return not any(target.problem() for target in SAVED_STATE_TARGETS)


def _decoded(encoded: Any) -> Any:
    if not isinstance(encoded, dict) or encoded.get("_type") != _PICKLED:
        return None
    try:
        return cloudpickle.loads(bytes.fromhex(encoded["value"]))
    except Exception:  # damaged, or pickled by another Ray: not known
        return None
