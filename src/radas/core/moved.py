"""The module names radas had before its layers (0.1.0 development): experiments stored then
hold them in their pickled Tune state (``tuner.pkl`` names radas's callbacks by module), so an
import of an old name gets the module that lives on under the new one."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

MOVED = {
    "radas._ray_state": "radas.results.tune_state",
    "radas._trial_records": "radas.tune.trial_records",
    "radas._experiment_info": "radas.results.experiment_info",
    "radas.history": "radas.tune.history",
    "radas.tuner": "radas.results.tuner",
    "radas.analysis": "radas.results.analysis",
    "radas.sweep": "radas.tune.sweep",
    "radas.progress": "radas.tune.progress",
    "radas._retries": "radas.tune.retries",
    "radas._worker": "radas.tune.worker",
    # the fixes' classes a pickle names (RadasFIFOScheduler, ActorOutOfMemoryError) are
    # re-exported by radas.ray_compat.install; .fixes was their module from the layers on
    "radas._ray_compat": "radas.ray_compat.install",
    "radas.ray_compat.fixes": "radas.ray_compat.install",
    "radas._spec": "radas.core.spec",
    "radas._status": "radas.core.status",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads it as the module under the new one."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: Any) -> None:
        """Nothing to run: the module ran under its new name."""


def install() -> None:
    """Old names resolve from now on in this process (idempotent)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
