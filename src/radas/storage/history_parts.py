"""The history's files: every result a trial reports, as Parquet parts under
``<experiment>/radas_history/`` (written atomically: under a temporary name, then renamed; in
an object store, uploaded in one go), read back in the order they were written with each
trial's iterations kept once (``latest_attempt_rows``): a trial that continues from a saved
state or starts again reports some iterations a second time, and the later attempt's rows
replace the earlier ones from the iteration it restarted at. A damaged part, or one without
the key columns (``trial_id``, ``training_iteration``), is skipped with a warning naming it;
files that are not radas parts are ignored.

Writer: ``radas.tune.history.HistoryRecorder``; reader: ``radas.results.history``.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray import cloudpickle

from radas.core.console import warn
from radas.core.temporary import temporary_name, temporary_sibling
from radas.storage import files as _files
from radas.storage import store as _store

HISTORY_DIR = "radas_history"


COMPACTED_FILE = "compacted.parquet"


PART_NAME = re.compile(r"\d{20}-[0-9a-f]{8}-\d{6}\.parquet")


PICKLED_COLUMNS_KEY = b"radas.pickled_columns"


PLACEHOLDER = "<radas: not stored, {kind} cannot be pickled: {text}>"


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


def rows_to_table(rows: list[dict[str, Any]], placeholders: set[str] | None = None) -> pa.Table:
    """Rows with possibly different keys -> one Arrow table.

    A column Arrow cannot type (mixed str/int, arbitrary objects) is stored pickled
    (cloudpickle for what plain pickle refuses: lambdas, local functions) and restored on
    read, so no reported value is lost or changed. A value even cloudpickle refuses is
    stored as a readable placeholder (``PLACEHOLDER``, with its repr) and its column's name
    added to ``placeholders``: one value never ends a sweep.
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
            stored = [_pickle_value(value, name, placeholders) for value in values]
            arrays.append(pa.array(stored, type=pa.binary()))
            pickled.append(name)
    schema_metadata = {PICKLED_COLUMNS_KEY: "\n".join(pickled).encode()} if pickled else None
    table = pa.Table.from_arrays(arrays, names=list(names))
    return table.replace_schema_metadata(schema_metadata)


def _pickle_value(value: Any, column: str, placeholders: set[str] | None) -> bytes:
    try:
        return pickle.dumps(value)
    except Exception:  # pickling fails with PicklingError, TypeError, AttributeError...
        pass
    try:
        return cloudpickle.dumps(value)
    except Exception:
        if placeholders is not None:
            placeholders.add(column)
        return pickle.dumps(PLACEHOLDER.format(kind=type(value).__name__, text=_repr(value)))


def _unpickle_values(values: Iterable[Any], column: str) -> list[Any]:
    """A pickled column's values; one that cannot be rebuilt here (its class is not
    importable in this process) becomes a placeholder, with one warning for the column."""
    restored: list[Any] = []
    failed = None
    for value in values:
        if value is None:
            restored.append(None)
            continue
        try:
            restored.append(pickle.loads(value))
        except Exception as err:  # unpickling fails in many ways
            failed = failed or err
            restored.append(PLACEHOLDER.format(kind="a value that", text=_repr(err)))
    if failed is not None:
        warn(
            f"History column {column!r} holds values that cannot be rebuilt in this process "
            f"({type(failed).__name__}: {str(failed)[:120]}): they are shown as placeholders "
            "(import the module that defines their class before loading to get them back).",
            stacklevel=4,
        )
    return restored


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = object.__repr__(value)
    return text if len(text) <= 200 else f"{text[:200]}..."


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    metadata = table.schema.metadata or {}
    for name in filter(None, metadata.get(PICKLED_COLUMNS_KEY, b"").decode().split("\n")):
        frame[name] = _unpickle_values(frame[name], name)
    return frame


OBJECT_STORES = ("s3", "gcs")  # pyarrow filesystems whose written objects appear whole


def write_whole(filesystem: Any, table: pa.Table, path: str) -> None:
    """Write ``table`` as the Parquet file ``path`` (replacing one there) so that readers see
    the old file or the new one, never part of it: in an object store an object appears
    whole when its upload completes (one request); elsewhere it is written under a
    temporary name and renamed (a kill leaves the temporary file, which readers ignore)."""
    if filesystem.type_name in OBJECT_STORES:
        pq.write_table(table, path, filesystem=filesystem)
        return
    directory, name = path.rsplit("/", 1)
    temporary = f"{directory}/{temporary_name(name)}"
    try:
        pq.write_table(table, temporary, filesystem=filesystem)
        filesystem.move(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            filesystem.delete_file(temporary)
        raise


def common_pickled_columns(tables: list[pa.Table]) -> set[str] | None:
    """The pickled columns of tables whose columns are pickled in all or none of them (where
    they hold values); None when one is pickled in some and not in others."""
    kinds: dict[str, set[bool]] = {}
    for table in tables:
        metadata = table.schema.metadata or {}
        pickled = set(metadata.get(PICKLED_COLUMNS_KEY, b"").decode().split("\n"))
        for field in table.schema:
            if field.type != pa.null():
                kinds.setdefault(field.name, set()).add(field.name in pickled)
    if any(len(found) > 1 for found in kinds.values()):
        return None
    return {name for name, found in kinds.items() if True in found}


def history_parts(experiment_path: _store.AnyPath) -> list[_store.Location]:
    """radas's history files in the order they were written (the compacted file first).
    Other files in the folder (temporary files of a write cut short, junk) are ignored."""
    directory = _store.location(experiment_path) / HISTORY_DIR
    if isinstance(directory, Path) and not directory.is_dir():
        return []  # (an object store lists nothing for a folder that is not there)
    names = {path.name: path for path in directory.iterdir()}
    parts = [names[name] for name in sorted(names) if PART_NAME.fullmatch(name)]
    return [names[COMPACTED_FILE], *parts] if COMPACTED_FILE in names else parts


def compact_history(experiment_path: _store.AnyPath) -> None:
    """Merge the history parts into one file sorted by trial and iteration (each iteration
    once, see ``latest_attempt_rows``), so that loading it needs no sorting: done once, when
    a fit ends, by the process that ran it.

    Safe against a crash at any instant: the compacted file is written under a temporary
    name and renamed, then the parts it holds are removed oldest first. A reader that finds
    the compacted file next to some of its parts reads those parts' rows twice, and the parts'
    copies (written later) replace the compacted ones: the same rows. Damaged parts are left
    alone.
    """
    parts = history_parts(experiment_path)
    target = _store.location(experiment_path) / HISTORY_DIR / COMPACTED_FILE
    if not parts or parts == [target]:
        return
    tables, pickled, readable = read_parts(parts, exclude=set())
    try:
        table = merge_tables(tables)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return  # parts whose column types conflict stay as they are; loading merges them
    metadata = {PICKLED_COLUMNS_KEY: "\n".join(sorted(pickled)).encode()} if pickled else None
    temporary = temporary_sibling(target)
    try:
        with _files.no_space_as_error(target, table.nbytes):
            where, filesystem = _store.arrow_source(temporary)
            pq.write_table(table.replace_schema_metadata(metadata), where, filesystem=filesystem)
            _store.rename(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    for part in readable:
        if part != target:
            part.unlink(missing_ok=True)


def load_stored_history(experiment_path: _store.AnyPath, exclude: set[str]) -> pd.DataFrame | None:
    """The rows of the history's parts (each trial's iterations once, sorted); None when there
    are no parts (the folder is listed once: on an object store a listing is a request)."""
    parts = history_parts(experiment_path)
    if not parts:
        return None
    # The system allocator hands large freed buffers back at once; Arrow's default pool keeps
    # them, which would raise the peak of this one-off load.
    previous_pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        tables, pickled, readable = read_listed_parts(experiment_path, parts, exclude)
        if not tables:
            return pd.DataFrame()
        if len(tables) == 1 and readable[0].name == COMPACTED_FILE:
            table = tables.pop()  # already merged and sorted
        else:
            try:
                table = merge_tables(tables)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # a column that is numbers in one part and pickled objects in another
                frame = concat_frames(table_to_frame(t) for t in tables)
                return finish_in_pandas(frame, exclude)
        del tables
        frame = table.to_pandas(self_destruct=True, split_blocks=True)
        del table
    finally:
        pa.set_memory_pool(previous_pool)
    for name in pickled & set(frame.columns):
        frame[name] = _unpickle_values(frame[name], name)
    return frame


class _PartGone(Exception):
    """A listed part was removed before it was read: a compaction merged it meanwhile."""


def read_listed_parts(
    experiment_path: _store.AnyPath, parts: list[_store.Location], exclude: set[str]
) -> tuple[list[pa.Table], set[str], list[_store.Location]]:
    """``read_parts`` of a listing taken while the experiment may run: when a compaction
    removes parts between the listing and the read, list again (the compacted file, written
    before any part is removed, holds their rows), so a reader never loses or mixes rows."""
    for _ in range(3):
        try:
            return read_parts(parts, exclude, gone_is_error=True)
        except _PartGone:
            parts = history_parts(experiment_path)
    return read_parts(parts, exclude)


def read_parts(
    parts: list[_store.Location], exclude: set[str], *, gone_is_error: bool = False
) -> tuple[list[pa.Table], set[str], list[_store.Location]]:
    """The readable parts' tables, their pickled column names, and which parts they are (a
    damaged part is skipped with a warning)."""
    tables, pickled, readable = [], set(), []
    for part in parts:
        where, filesystem = _store.arrow_source(part)
        try:
            names = pq.read_schema(where, filesystem=filesystem).names
            if not set(KEY_COLUMNS) <= set(names):
                lacking = " and ".join(c for c in KEY_COLUMNS if c not in names)
                warn(
                    f"History file {part} has no {lacking} column: it is not a radas history "
                    "part, so its rows are left out of the history (move it out of the "
                    "folder to silence this).",
                    stacklevel=4,
                )
                continue
            table = pq.read_table(
                where, columns=[n for n in names if n not in exclude], filesystem=filesystem
            )
        except (OSError, pa.ArrowException) as err:
            if gone_is_error and not part.exists():
                raise _PartGone(part) from err
            warn(
                f"History file {part} is unreadable ({type(err).__name__}: {str(err)[:120]}): "
                "the results it held are missing from the history (trials whose last result "
                "is missing get it back from the experiment state).",
                stacklevel=4,
            )
            continue
        metadata = table.schema.metadata or {}
        pickled |= set(filter(None, metadata.get(PICKLED_COLUMNS_KEY, b"").decode().split("\n")))
        tables.append(table)  # keeps its metadata: table_to_frame() unpickles per part
        readable.append(part)
    return tables, pickled, readable


def merge_tables(tables: list[pa.Table]) -> pa.Table:
    """Concatenate (in the order written), keep each trial's iterations once
    (``latest_attempt_rows``), sort by trial and iteration."""
    table = pa.concat_tables(
        [t.replace_schema_metadata(None) for t in tables], promote_options="permissive"
    )
    tables.clear()
    trial_codes = pc.dictionary_encode(table.column("trial_id")).combine_chunks().indices
    keep = latest_attempt_rows(
        trial_codes.to_numpy(zero_copy_only=False),
        table.column("training_iteration").to_numpy(),
    )
    if not keep.all():
        table = table.filter(pa.array(keep))
    indices = pc.sort_indices(table, sort_keys=[(key, "ascending") for key in KEY_COLUMNS])
    order = [*KEY_COLUMNS, *(c for c in table.column_names if c not in KEY_COLUMNS)]
    columns = []
    for name in order:  # release each source column once its sorted copy exists
        columns.append(table.column(name).take(indices))
        table = table.drop_columns([name])
    return pa.Table.from_arrays(columns, names=order)


def last_rows_from_history(experiment_path: _store.AnyPath) -> list[dict[str, Any]]:
    """The newest history row of every trial in radas's history parts (to rebuild the
    per-trial table)."""
    frame = load_stored_history(experiment_path, set())
    if frame is None or frame.empty:
        return []
    last = frame.groupby("trial_id", sort=True).tail(1)
    return [
        {key: value for key, value in row.items() if not is_missing(value)}
        for row in last.to_dict("records")
    ]


def finish_in_pandas(frame: pd.DataFrame, exclude: set[str]) -> pd.DataFrame:
    frame = frame.drop(columns=[c for c in exclude if c in frame.columns])
    if frame.empty:
        return frame
    frame = frame[latest_attempt_rows(frame["trial_id"], frame["training_iteration"])]
    frame = frame.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)
    return frame[[*KEY_COLUMNS, *(c for c in frame.columns if c not in KEY_COLUMNS)]]


def latest_attempt_rows(trial_ids: Any, iterations: Any) -> np.ndarray:
    """Which rows (given in the order they were reported) to keep so that each trial has
    each iteration once, from its latest attempt: a row is dropped when a later row of the
    same trial has the same or a smaller ``training_iteration``.

    A trial resumed from its saved state at iteration k after reporting up to m > k (the
    reports after its last saved state, or a restore from an older state after a killed
    driver), or started again from scratch, reports iterations k+1.. again: the earlier
    attempt's rows from k+1 on are dropped, also those the later attempt did not reach
    (a trial started again and stopped earlier has no rows past where it stopped). Rows
    with no iteration are kept.

    >>> latest_attempt_rows(["a"] * 6 + ["b"], [1, 2, 3, 4, 3, 4, 1]).tolist()
    [True, True, False, False, True, True, True]
    """
    iteration = pd.to_numeric(pd.Series(np.asarray(iterations)), errors="coerce").to_numpy(float)
    missing = np.isnan(iteration)
    frame = pd.DataFrame(
        {"trial": np.asarray(trial_ids), "iteration": np.where(missing, np.inf, iteration)}
    ).iloc[::-1]
    later_minimum = (
        frame.groupby("trial", sort=False)["iteration"]
        .cummin()
        .groupby(frame["trial"], sort=False)
        .shift(1)
    )
    superseded = (frame["iteration"] >= later_minimum).to_numpy()[::-1]
    return ~superseded | missing


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def concat_frames(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
