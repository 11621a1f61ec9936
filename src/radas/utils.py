"""Small helpers for trainables and for analysis DataFrames (SPEC §7)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from radas.core.naming import get_current_user_name as get_current_user_name  # public here
from radas.errors import InvalidArgumentError

# ---------------------------------------------------------------------------------------------
# Seeding


def set_seed(seed: int) -> int:
    """Seed Python's ``random``, NumPy's global generator (``np.random.*``) and, when
    installed, PyTorch on CPU and every GPU; returns the seed.

    Not seeded: ``hash()`` of strings (Python fixes its salt when the interpreter starts, so
    only ``PYTHONHASHSEED`` set before the process starts changes it; for a cluster job give
    ``runtime_env={"env_vars": {"PYTHONHASHSEED": "0"}}``), generators made with
    ``np.random.default_rng()`` (pass them the seed), and nondeterministic GPU kernels
    (``torch.use_deterministic_algorithms(True)``).

    >>> set_seed(3)
    3
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative int, got {seed!r}.")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:
        return seed
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


def config_seed(config: Mapping[str, Any], key: str = "seed") -> int:
    """Seed everything from a trial's config and return the seed.

    Uses ``config[key]`` when present; otherwise a stable hash of the config, so two trials
    with the same config get the same seed and different configs get different ones.

    >>> config_seed({"lr": 0.1, "seed": 7})
    7
    """
    if not isinstance(config, Mapping):
        raise InvalidArgumentError(
            f"config_seed() takes the trial's config dict, got {type(config).__name__}: call "
            "it as config_seed(config) with the config your trainable received."
        )
    if key in config:
        return set_seed(config[key])
    text = json.dumps(config, sort_keys=True, default=repr)
    return set_seed(int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big"))


# ---------------------------------------------------------------------------------------------
# User name


# ---------------------------------------------------------------------------------------------
# Reshaping DataFrames


def explode(
    df: pd.DataFrame, columns: str | Sequence[str], *, index_name: str | None = None
) -> pd.DataFrame:
    """List-valued columns -> one row per element (columns of one row must have equal length).

    ``index_name`` adds a column with each element's position in its list.

    >>> explode(pd.DataFrame({"a": [1], "loss": [[0.5, 0.2]]}), "loss", index_name="step")
       a  loss  step
    0  1   0.5     0
    1  1   0.2     1
    """
    columns = [columns] if isinstance(columns, str) else list(columns)
    _require_columns(df, columns)
    exploded = df.explode(columns, ignore_index=True) if len(df) else df.copy()
    if index_name is not None:
        positions = [range(_length(value)) for value in df[columns[0]]]
        exploded[index_name] = [i for span in positions for i in (span or [0])]
    for column in columns:
        with contextlib.suppress(ValueError, TypeError):  # not numbers: keep the objects
            exploded[column] = pd.to_numeric(exploded[column])
    return exploded


def explode_tensor(
    df: pd.DataFrame, column: str, *, dim_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """A column of arrays/tensors (all of one shape) -> one row per element.

    Adds one index column per dimension (``dim_names``, default ``<column>_dim0``, ...), and
    ``column`` then holds the scalar.

    >>> explode_tensor(pd.DataFrame({"w": [np.array([[1, 2], [3, 4]])]}), "w",
    ...                dim_names=["row", "col"])
       row  col  w
    0    0    0  1
    1    0    1  2
    2    1    0  3
    3    1    1  4
    """
    _require_columns(df, [column])
    return _explode_arrays(df, {column: column}, column, dim_names)


def explode_dict_of_tensors(
    df: pd.DataFrame, column: str, *, dim_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """A column of ``{name: array}`` dicts (arrays of one shape) -> one row per element.

    Each dict key becomes a column; index columns as in ``explode_tensor``.

    >>> frame = pd.DataFrame({"m": [{"acc": np.array([0.5, 0.7]), "loss": np.array([2, 1])}]})
    >>> explode_dict_of_tensors(frame, "m", dim_names=["epoch"])
       epoch  acc  loss
    0      0  0.5     2
    1      1  0.7     1
    """
    _require_columns(df, [column])
    first = next((value for value in df[column] if isinstance(value, Mapping)), None)
    if first is None:
        raise InvalidArgumentError(f"column {column!r} holds no dicts of tensors to explode.")
    fields = {name: name for name in first}
    expanded = df.drop(columns=[column]).copy()
    for name in fields:
        expanded[name] = [value[name] for value in df[column]]
    return _explode_arrays(expanded, fields, column, dim_names)


def _explode_arrays(
    df: pd.DataFrame, fields: dict[str, str], label: str, dim_names: Sequence[str] | None
) -> pd.DataFrame:
    other_columns = [column for column in df.columns if column not in fields]
    pieces = []
    for _, row in df.iterrows():
        arrays = {name: _as_numpy(row[name]) for name in fields}
        shape = next(iter(arrays.values())).shape
        if any(array.shape != shape for array in arrays.values()):
            raise InvalidArgumentError(f"the tensors in {label!r} of one row differ in shape.")
        names = list(dim_names) if dim_names else [f"{label}_dim{i}" for i in range(len(shape))]
        if len(names) != len(shape):
            raise InvalidArgumentError(
                f"dim_names has {len(names)} names but the tensors in {label!r} have "
                f"{len(shape)} dimensions {shape}."
            )
        index = np.indices(shape).reshape(len(shape), -1)
        size = index.shape[1]
        piece: dict[str, Any] = {column: [row[column]] * size for column in other_columns}
        piece.update({name: index[i] for i, name in enumerate(names)})
        piece.update({name: array.reshape(-1) for name, array in arrays.items()})
        pieces.append(pd.DataFrame(piece))
    if not pieces:
        return df.copy()
    return pd.concat(pieces, ignore_index=True)


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (list, tuple, np.ndarray)) else 1


# ---------------------------------------------------------------------------------------------
# Reducing over repetitions


def reduce_by_config_cols(
    df: pd.DataFrame,
    config_cols: Iterable[str] | None = None,
    *,
    agg: str | Any = "mean",
    keep: Iterable[str] = ("training_iteration",),
) -> pd.DataFrame:
    """Group rows by config columns and aggregate the numeric metric columns.

    ``config_cols`` defaults to every ``config/*`` column; ``keep`` columns (when present)
    are grouped by too, so learning curves stay curves.

    >>> frame = pd.DataFrame({"config/lr": [0.1, 0.1, 0.2], "loss": [1.0, 3.0, 5.0]})
    >>> reduce_by_config_cols(frame)
       config/lr  loss
    0        0.1   2.0
    1        0.2   5.0
    """
    by = list(config_cols) if config_cols is not None else _config_columns(df)
    by += [column for column in keep if column in df.columns and column not in by]
    _require_columns(df, by)
    if not by:
        raise InvalidArgumentError("no config/* columns to group by; pass config_cols=[...].")
    metrics = [
        column
        for column in df.columns
        if column not in by
        and pd.api.types.is_numeric_dtype(df[column])
        and not pd.api.types.is_bool_dtype(df[column])
        and not column.startswith("config/")
    ]
    return df.groupby(by, dropna=False, sort=True)[metrics].agg(agg).reset_index()


def reduce_by_reduced_col(
    df: pd.DataFrame,
    reduced_col: str,
    *,
    agg: str | Any = "mean",
    keep: Iterable[str] = ("training_iteration",),
) -> pd.DataFrame:
    """Aggregate over one config column (e.g. seeds): group by all other ``config/*`` columns.

    >>> frame = pd.DataFrame({"config/lr": [0.1, 0.1], "config/seed": [0, 1], "acc": [0.8, 0.6]})
    >>> reduce_by_reduced_col(frame, "config/seed")
       config/lr  acc
    0        0.1  0.7
    """
    _require_columns(df, [reduced_col])
    by = [column for column in _config_columns(df) if column != reduced_col]
    return reduce_by_config_cols(df.drop(columns=[reduced_col]), by, agg=agg, keep=keep)


def _config_columns(df: pd.DataFrame) -> list[str]:
    return [column for column in df.columns if str(column).startswith("config/")]


def _require_columns(df: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [column for column in columns if column not in df.columns]
    if missing:
        raise InvalidArgumentError(
            f"column(s) {missing} not in the DataFrame; it has: {list(df.columns)}."
        )
