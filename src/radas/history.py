"""Every result a trial reports, kept in one place for learning-curve analysis.

The writer is a Tune callback on the driver: it buffers results and writes them as Parquet
parts under ``<experiment>/radas_history/`` (atomically: a part is written under a temporary
name and then renamed). The reader concatenates the parts; when a trial re-reported an
iteration (it restarted after a restore), the newest row wins.

Experiments run by plain Ray Tune (no parts) are read from Ray's own per-trial
``result.json`` files instead, giving the same columns.
"""

from __future__ import annotations

import pickle
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ray.tune import Callback

from radas import _ray_state

HISTORY_DIR = "radas_history"
PICKLED_COLUMNS_KEY = b"radas.pickled_columns"
KEY_COLUMNS = ["trial_id", "training_iteration"]


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts with ``/`` (``{"config": {"a": 1}}`` -> ``{"config/a": 1}``).

    Empty dicts add no column, as in Ray's own DataFrames.
    """
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}/"))  # an empty dict adds no column
        else:
            flat[name] = value
    return flat


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows with possibly different keys -> one Arrow table.

    A column Arrow cannot type (mixed str/int, arbitrary objects) is stored pickled and
    restored on read, so no reported value is lost or changed.
    """
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    arrays, pickled = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            if any(isinstance(value, (set, frozenset)) for value in values):
                raise TypeError("Arrow would turn sets into lists")
            arrays.append(pa.array(values))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            arrays.append(pa.array([pickle.dumps(value) for value in values], type=pa.binary()))
            pickled.append(name)
    schema_metadata = {PICKLED_COLUMNS_KEY: "\n".join(pickled).encode()} if pickled else None
    table = pa.Table.from_arrays(arrays, names=list(names))
    return table.replace_schema_metadata(schema_metadata)


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    metadata = table.schema.metadata or {}
    for name in filter(None, metadata.get(PICKLED_COLUMNS_KEY, b"").decode().split("\n")):
        frame[name] = [pickle.loads(value) for value in frame[name]]
    return frame


class HistoryRecorder(Callback):
    """Tune callback that stores every reported result of every trial.

    Rows are flushed every ``flush_interval_s`` seconds and when the experiment ends (also
    when it is interrupted), so an experiment whose driver dies loses at most the last
    ``flush_interval_s`` seconds of history.
    """

    def __init__(self, flush_interval_s: float = 2.0, max_buffered_rows: int = 50_000) -> None:
        self.flush_interval_s = flush_interval_s
        self.max_buffered_rows = max_buffered_rows
        self._reset()

    def _reset(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._target: tuple[Any, str] | None = None
        self._last_flush = time.monotonic()
        self._writer_id = uuid.uuid4().hex[:8]
        self._parts_written = 0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks with the run config; buffered rows and file handles stay here.
        return {
            "flush_interval_s": self.flush_interval_s,
            "max_buffered_rows": self.max_buffered_rows,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def setup(self, **info: Any) -> None:
        self._reset()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any):
        if self._target is None:
            storage = trial.storage
            self._target = (storage.storage_filesystem, storage.experiment_fs_path)
        row = flatten(result)
        row["trial_id"] = trial.trial_id
        self._rows.append(row)
        overdue = time.monotonic() - self._last_flush >= self.flush_interval_s
        if overdue or len(self._rows) >= self.max_buffered_rows:
            self.flush()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._rows and time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._rows or self._target is None:
            return
        filesystem, experiment_fs_path = self._target
        directory = f"{experiment_fs_path}/{HISTORY_DIR}"
        filesystem.create_dir(directory, recursive=True)
        name = f"{time.time_ns():020d}-{self._writer_id}-{self._parts_written:06d}.parquet"
        temporary = f"{directory}/.{name}.tmp"
        pq.write_table(rows_to_table(self._rows), temporary, filesystem=filesystem)
        filesystem.move(temporary, f"{directory}/{name}")
        self._parts_written += 1
        self._rows = []


def history_parts(experiment_path: str | Path) -> list[Path]:
    """radas's history parts, in the order they were written."""
    directory = Path(experiment_path) / HISTORY_DIR
    return sorted(directory.glob("*.parquet")) if directory.is_dir() else []


def load_history(experiment_path: str | Path) -> pd.DataFrame:
    """One row per reported result across all trials, sorted by trial id and iteration."""
    parts = history_parts(experiment_path)
    if parts:
        frame = _concat(table_to_frame(pq.read_table(part)) for part in parts)
    else:
        frame = _load_from_ray_result_files(experiment_path)
    if frame.empty:
        return frame
    frame = frame.drop_duplicates(KEY_COLUMNS, keep="last")
    frame = frame.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
    return frame[[*KEY_COLUMNS, *(c for c in frame.columns if c not in KEY_COLUMNS)]]


def _load_from_ray_result_files(experiment_path: str | Path) -> pd.DataFrame:
    rows = []
    for trial in _ray_state.load_trial_states(experiment_path):
        trial_dir = Path(experiment_path) / trial.trial_dir_name
        for result in _ray_state.read_trial_result_file(trial_dir):
            row = flatten(result)
            row["trial_id"] = trial.trial_id
            rows.append(row)
    return pd.DataFrame(rows)


def _concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
