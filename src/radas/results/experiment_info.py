"""``radas_experiment.json``: what radas records about a stored experiment, and the checks made
against it.

``sweep.write_experiment_info`` writes it when a ``run`` starts: the user, the experiment's
name and the working directory it was started from (the two make its full name, which is
lossy: ``my-exp`` and ``my_exp`` share one), and a comparable description of its param_space.
Before a run, restore or analysis ``check_owner`` refuses a different (folder, name) pair
that maps onto the same full name; a restore compares the param_space it was given with the
stored one (``param_space_changes``). Experiments stored without this record are read as
before.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from radas.errors import NameCollisionError
from radas.storage import store

EXPERIMENT_INFO_FILE = "radas_experiment.json"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_DEPTH = 20


def read_experiment_info(experiment_path: store.AnyPath) -> dict[str, Any] | None:
    """The stored record, or None when there is none (or it cannot be read as JSON)."""
    try:
        info = json.loads((store.location(experiment_path) / EXPERIMENT_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def check_owner(experiment_path: store.AnyPath, *, experiment_name: str, cwd: str) -> None:
    """Raise NameCollisionError when the experiment stored at ``experiment_path`` was started
    as another (working directory, experiment_name) pair that maps onto the same full name.

    Records without a working directory (written before radas stored it) are checked by
    name only; no record at all is no objection.
    """
    info = read_experiment_info(experiment_path)
    if info is None or "experiment_name" not in info:
        return
    stored_name, stored_cwd = info["experiment_name"], info.get("cwd")
    if stored_name == experiment_name and stored_cwd in (None, cwd):
        return
    stored_where = f"from {stored_cwd}" if stored_cwd else "(folder not recorded)"
    raise NameCollisionError(
        f"experiment_name={experiment_name!r} run from {cwd} maps onto the stored experiment "
        f"at {experiment_path}, which is experiment_name={stored_name!r} started "
        f"{stored_where}. radas names an experiment by its folder and name with every "
        "character other than a letter or digit turned into '_', so both would share one "
        "folder and mix their results. Give this experiment a name of its own (for example "
        f"experiment_name={experiment_name + '-2'!r}) or run it from another folder; the "
        "stored experiment is left as it is."
    )


def describe_param_space(space: Any, depth: int = 0) -> Any:
    """A JSON-compatible description of ``space`` that compares equal for equal spaces:
    plain values as they are, Tune search-space objects (``tune.loguniform(...)``,
    ``tune.choice(...)``) and functions as stable text without memory addresses.

    >>> describe_param_space({"a": {"grid_search": [1, 2]}, "b": (0.5, None)})
    {'a': {'grid_search': [1, 2]}, 'b': [0.5, None]}
    """
    if depth > _MAX_DEPTH:
        return _ADDRESS.sub("", repr(space))
    if isinstance(space, dict):
        return {str(key): describe_param_space(value, depth + 1) for key, value in space.items()}
    if isinstance(space, (list, tuple)):
        return [describe_param_space(value, depth + 1) for value in space]
    if space is None or isinstance(space, (bool, int, str)):
        return space
    if isinstance(space, float):
        return space if math.isfinite(space) else repr(space)
    if hasattr(space, "__qualname__"):  # a function or class
        return f"<{getattr(space, '__module__', '?')}.{space.__qualname__}>"
    attributes = getattr(space, "__dict__", None)
    if isinstance(attributes, dict):  # e.g. tune.loguniform(1e-4, 1e-1)
        fields = ", ".join(
            f"{name}={_as_text(describe_param_space(value, depth + 1))}"
            for name, value in attributes.items()
        )
        return f"{type(space).__name__}({fields})"
    return _ADDRESS.sub("", repr(space))


def param_space_changes(stored: Any, given: Any) -> list[str]:
    """Where the described ``given`` param_space differs from the ``stored`` description,
    one line per key path (``model/lr``).

    >>> param_space_changes({"a": {"grid_search": [1, 2]}}, {"a": {"grid_search": [1, 3]}})
    ["'a': stored {'grid_search': [1, 2]}, given {'grid_search': [1, 3]}"]
    """
    stored_leaves = _leaves(stored)
    given_leaves = _leaves(json.loads(json.dumps(given)))  # tuples -> lists, as stored
    changes = []
    for path in sorted(stored_leaves.keys() | given_leaves.keys()):
        if path not in given_leaves:
            changes.append(f"{path!r}: stored {stored_leaves[path]!r}, not in the given one")
        elif path not in stored_leaves:
            changes.append(f"{path!r}: given {given_leaves[path]!r}, not in the stored one")
        elif stored_leaves[path] != given_leaves[path]:
            changes.append(
                f"{path!r}: stored {stored_leaves[path]!r}, given {given_leaves[path]!r}"
            )
    return changes


def _leaves(space: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(space, dict) or not space or set(space) == {"grid_search"}:
        return {prefix or "(param_space)": space}
    leaves: dict[str, Any] = {}
    for key, value in space.items():
        leaves.update(_leaves(value, f"{prefix}/{key}" if prefix else str(key)))
    return leaves


def _as_text(described: Any) -> str:
    return described if isinstance(described, str) else json.dumps(described)
