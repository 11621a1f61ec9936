"""Fix 3: Tune's FIFO choice among the live trials only.

Ray: ``ray/tune/schedulers/trial_scheduler.py``, ``FIFOScheduler.choose_trial_to_run`` (line
163 in Ray 2.60) scans every trial, finished ones included, at every step: O(trials^2).
``RadasFIFOScheduler`` picks the same trial among the live ones; radas hands it to its own
Tuners when the user gave no scheduler (nothing is patched). ``docs/architecture.md``, "The Ray
boundary".
"""

from __future__ import annotations

import weakref
from typing import Any

from ray.tune.schedulers import FIFOScheduler

from radas.ray_compat.targets import fixes_apply


class RadasFIFOScheduler(FIFOScheduler):
    """Tune's FIFO scheduler, choosing among the live trials only (fix 3).

    Stored in the experiment's ``tuner.pkl`` under this name, so a restore uses it again.
    """

    def __init__(self) -> None:
        super().__init__()
        # Per controller: the position of each trial in its trial list (the list only grows).
        self._positions: weakref.WeakKeyDictionary[Any, dict[Any, int]] = (
            weakref.WeakKeyDictionary()
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_positions"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._positions = weakref.WeakKeyDictionary()

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        from ray.tune.experiment import Trial

        controller = getattr(tune_controller, "_tune_controller", None)
        if controller is None or not hasattr(tune_controller, "get_live_trials"):
            return super().choose_trial_to_run(tune_controller)  # not what Tune 2.55-2.60 pass
        trials = tune_controller.get_trials()
        positions = self._positions.setdefault(controller, {})
        for position in range(len(positions), len(trials)):
            positions[trials[position]] = position
        live = tune_controller.get_live_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [trial for trial in live if trial.status == status]
            if waiting and all(trial in positions for trial in waiting):
                return min(waiting, key=positions.__getitem__)
            if waiting:  # a trial list Tune replaced: Ray's own scan
                return super().choose_trial_to_run(tune_controller)
        return None


def default_scheduler() -> RadasFIFOScheduler | None:
    """The scheduler for a radas sweep whose user gave none: radas's FIFO, or None (Tune's
    own) when this Ray does not match ``TARGETS``."""
    return RadasFIFOScheduler() if fixes_apply() else None
