"""Every result a trial reports, kept in one place for learning-curve analysis.

The writer is a Tune callback on the driver: it buffers results and writes them as Parquet
parts under ``<experiment>/radas_history/`` (atomically: a part is written under a temporary
name and then renamed; in an object store, uploaded in one go). The reader concatenates the
parts in the order they were written and keeps each trial's iterations once
(``latest_attempt_rows``): a trial that continues from a saved state
(``radas.report(..., state=...)``) or starts again reports some iterations a second time, and
the later attempt's rows replace the earlier attempt's from the iteration it restarted at. A
damaged part, or one without the key columns (``trial_id``, ``training_iteration``), is
skipped with a warning naming it; files that are not radas parts are ignored; a trial whose
iterations have a hole (rows lost) is named in a warning. A full disk raises
``StorageFullError`` (see ``radas._files``).

No stored experiment state is newer than the history: a report with a state
(``radas.report(..., state=...)``) is written to the history before Tune records that state
as the trial's latest (``HistoryRecorder.on_checkpoint``), so after a killed driver the
history holds every report up to the state a restore continues from.

Experiments run by plain Ray Tune (no parts) are read from Ray's own per-trial
``result.json`` files instead, giving the same columns.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray import cloudpickle
from ray.tune import Callback

from radas import _files, _ray_state, _store
from radas.console import warn
from radas.errors import ExperimentDamagedError, StorageFullError

HISTORY_DIR = _ray_state.HISTORY_DIR
COMPACTED_FILE = "compacted.parquet"
PART_NAME = re.compile(r"\d{20}-[0-9a-f]{8}-\d{6}\.parquet")
PICKLED_COLUMNS_KEY = b"radas.pickled_columns"
MERGE_PARTS = 64  # a recorder merges its last this many small parts into one (see flush)
SMALL_PART_ROWS = 1_000
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


class HistoryRecorder(Callback):
    """Tune callback that stores every reported result of every trial.

    Rows are flushed every ``flush_interval_s`` seconds, when a report carries a trial's
    state (``on_checkpoint``), before radas records a trial's end (``sweep.TrialRecords``)
    and when the experiment ends (also when it is interrupted). So an experiment whose
    driver dies keeps every report up to the state each trial continues from after a
    restore, and every row of a trial whose end was recorded; only reports made after a
    trial's last state can be lost, and the restored trial reports those again.

    A full disk ends the experiment with ``StorageFullError`` (raised at the end of a Tune
    step, where Tune lets it through); ``storage_error`` keeps it for ``TrialRecords``.
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
        self._small_parts: list[tuple[str, pa.Table]] = []  # written in a row, not merged yet
        self._placeholders: set[str] = set()
        self.storage_error: StorageFullError | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks with the run config; buffered rows and file handles stay here.
        return {
            "flush_interval_s": self.flush_interval_s,
            "max_buffered_rows": self.max_buffered_rows,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def setup(self, *args: Any, **info: Any) -> None:
        self._reset()

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """A report with a state: Tune calls this before it records the state as the trial's
        latest (``TuneController._process_trial_save``), so writing the buffered rows (that
        report's among them) here means no experiment state Tune stores later names a state
        newer than the history. (Writing before Tune saves its experiment state would not
        do: Tune writes the state file first, and an upload still running can take it.)

        A full disk raises ``StorageFullError``: Tune then does not record the state (it
        logs the error) and the flush at the end of the step ends the run.
        """
        self.flush()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any):
        if self._target is None:
            storage = trial.storage
            self._target = (storage.storage_filesystem, storage.experiment_fs_path)
            storage.storage_filesystem.create_dir(
                f"{storage.experiment_fs_path}/{HISTORY_DIR}", recursive=True
            )
        row = flatten(result)
        row["trial_id"] = trial.trial_id
        self._rows.append(row)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        overdue = time.monotonic() - self._last_flush >= self.flush_interval_s
        if self._rows and (overdue or len(self._rows) >= self.max_buffered_rows):
            self.flush()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Flush and compact. A full disk at the flush is kept in ``storage_error``
        (TrialRecords, the last callback, raises it) so that the other callbacks still end;
        one at the compaction only leaves the complete history in its parts (a warning)."""
        try:
            self.flush()
        except StorageFullError:
            return
        if self._target is not None:
            try:
                compact_history(_store.on_filesystem(*self._target))
            except StorageFullError:
                warn(
                    f"No space left to compact the history in {self._target[1]}/{HISTORY_DIR}: "
                    "it stays complete in its parts (loading merges them)."
                )

    def flush(self) -> None:
        """Write the buffered rows as one part; raises StorageFullError on a full disk (the
        rows stay buffered, nothing partial is left).

        A report with a state flushes (``on_checkpoint``), so a run can write many small
        parts; every ``MERGE_PARTS`` small parts written in a row are merged into one
        (``_merge_small_parts``), so that reading the history of a running or killed
        experiment stays fast."""
        self._last_flush = time.monotonic()
        if not self._rows or self._target is None:
            return
        filesystem, experiment_fs_path = self._target
        directory = f"{experiment_fs_path}/{HISTORY_DIR}"  # created with the target
        name = f"{time.time_ns():020d}-{self._writer_id}-{self._parts_written:06d}.parquet"
        placeholders: set[str] = set()
        table = rows_to_table(self._rows, placeholders)
        try:
            with _files.no_space_as_error(f"{directory}/{name}", table.nbytes):
                try:
                    _write_whole(filesystem, table, f"{directory}/{name}")
                except FileNotFoundError:  # the folder was removed while the run went on
                    self._recreate_directory(directory)
                    _write_whole(filesystem, table, f"{directory}/{name}")
        except StorageFullError as err:
            self.storage_error = self.storage_error or err
            raise
        self._parts_written += 1
        self._rows = []
        if table.num_rows > SMALL_PART_ROWS:
            self._small_parts = []  # merged parts stay in the order written: none across it
        else:
            self._small_parts.append((f"{directory}/{name}", table))
            if len(self._small_parts) >= MERGE_PARTS:
                self._merge_small_parts()
        for column in sorted(placeholders - self._placeholders):
            warn(
                f"A reported value of {column!r} cannot be pickled, even by cloudpickle: the "
                "history stores a placeholder with its repr instead (report plain data, e.g. "
                "numbers, strings, lists, to keep the value)."
            )
        self._placeholders |= placeholders

    def _merge_small_parts(self) -> None:
        """Write the small parts written since the last merge (kept in memory) as one part
        under the newest one's name, then remove the others, oldest first.

        Safe against a crash, and for readers, at any instant: the merged part holds the same
        rows in the same order and sorts where its newest part did (the parts since were
        written by this recorder alone), so an older part still there is read before the
        merged part and its rows are replaced by their own copies (``latest_attempt_rows``).
        Parts that cannot be merged (a column pickled in some only, types Arrow cannot
        promote) are left as they are; so are they after a failed write (a full disk is met
        again at the next flush)."""
        assert self._target is not None
        filesystem = self._target[0]
        parts, self._small_parts = self._small_parts, []
        pickled = _common_pickled_columns([table for _, table in parts])
        if pickled is None:
            return
        try:  # numbers of different types are promoted as loading does (see _merge)
            table = pa.concat_tables(
                [t.replace_schema_metadata(None) for _, t in parts], promote_options="permissive"
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return
        metadata = {PICKLED_COLUMNS_KEY: "\n".join(sorted(pickled)).encode()} if pickled else None
        table = table.replace_schema_metadata(metadata)
        try:
            _write_whole(filesystem, table, parts[-1][0])
        except OSError:
            return
        for path, _ in parts[:-1]:
            with contextlib.suppress(OSError):
                filesystem.delete_file(path)

    def _recreate_directory(self, directory: str) -> None:
        assert self._target is not None
        self._target[0].create_dir(directory, recursive=True)
        self._small_parts = []  # (a merge would bring some of the removed rows back)
        warn(
            f"The history folder {directory} was removed while the experiment ran: it is made "
            "again, and the results written to it before are missing from the history."
        )


OBJECT_STORES = ("s3", "gcs")  # pyarrow filesystems whose written objects appear whole


def _write_whole(filesystem: Any, table: pa.Table, path: str) -> None:
    """Write ``table`` as the Parquet file ``path`` (replacing one there) so that readers see
    the old file or the new one, never part of it: in an object store an object appears
    whole when its upload completes (one request); elsewhere it is written under a
    temporary name and renamed (a kill leaves the temporary file, which readers ignore)."""
    if filesystem.type_name in OBJECT_STORES:
        pq.write_table(table, path, filesystem=filesystem)
        return
    directory, name = path.rsplit("/", 1)
    temporary = f"{directory}/.{name}.tmp"
    try:
        pq.write_table(table, temporary, filesystem=filesystem)
        filesystem.move(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            filesystem.delete_file(temporary)
        raise


def _common_pickled_columns(tables: list[pa.Table]) -> set[str] | None:
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
    tables, pickled, readable = _read_parts(parts, exclude=set())
    try:
        table = _merge(tables)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return  # parts whose column types conflict stay as they are; loading merges them
    metadata = {PICKLED_COLUMNS_KEY: "\n".join(sorted(pickled)).encode()} if pickled else None
    temporary = target.with_name(f".{COMPACTED_FILE}.tmp")
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


def load_history(experiment_path: _store.AnyPath, *, exclude: Iterable[str] = ()) -> pd.DataFrame:
    """One row per reported result across all trials, sorted by trial id and iteration.

    ``exclude`` names columns not to load. A compacted history is read and converted
    column by column (the Arrow buffers released as they are converted), so the peak memory
    stays near the size of the frame itself; parts not compacted yet (a fit still running,
    or a crashed driver) are merged and sorted here.

    Damaged or missing history is completed from the trials' stored last results (with a
    warning naming the trials), so every trial with a result has at least its last row.
    """
    exclude = set(exclude) - set(KEY_COLUMNS)
    frame = _load_stored_history(experiment_path, exclude)
    _warn_of_holes(frame, experiment_path)
    return _add_missing_last_results(frame, experiment_path, exclude)


def _warn_of_holes(frame: pd.DataFrame, experiment_path: _store.AnyPath) -> None:
    """Warn, naming the trials, when a trial's iterations in the history (sorted by trial and
    iteration) have a hole: Tune numbers a trial's reports 1, 2, 3..., and continues the
    numbers of the state it restores, so a missing number is a report lost. A gap just before
    a restore (``iterations_since_restore`` 1) is not counted: a trial can take another
    trial's state there (PBT), skipping numbers."""
    columns = ("training_iteration", "iterations_since_restore")
    if frame.empty or not set(columns) <= set(frame.columns):
        return
    iterations, since_restore = (
        pd.to_numeric(frame[column], errors="coerce").to_numpy(float) for column in columns
    )
    known = ~np.isnan(iterations)
    iterations, trial_ids = iterations[known], frame["trial_id"].to_numpy()[known]
    if not len(iterations):
        return
    first = np.ones(len(iterations), dtype=bool)  # a trial's first row
    first[1:] = trial_ids[1:] != trial_ids[:-1]
    lost_before = iterations - np.where(first, 0, np.r_[0, iterations[:-1]]) - 1
    holes = (lost_before > 0) & (since_restore[known] != 1)
    if not holes.any():
        return
    lacking = pd.Series(lost_before[holes]).groupby(trial_ids[holes], sort=True).sum().astype(int)
    names = ", ".join(f"{trial} ({count})" for trial, count in list(lacking.items())[:5]) + (
        ", ..." if len(lacking) > 5 else ""
    )
    warn(
        f"The history of {experiment_path} lacks {lacking.sum()} earlier result(s) of "
        f"{len(lacking)} trial(s) ({names}): those reports are lost (history files removed, "
        "replaced or damaged, or a driver killed under an earlier radas); the rows shown "
        "are intact.",
        stacklevel=3,
    )


def _load_stored_history(experiment_path: _store.AnyPath, exclude: set[str]) -> pd.DataFrame:
    parts = history_parts(experiment_path)
    if not parts:
        return _finish_in_pandas(_load_from_ray_result_files(experiment_path), exclude)
    # The system allocator hands large freed buffers back at once; Arrow's default pool keeps
    # them, which would raise the peak of this one-off load.
    previous_pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        tables, pickled, readable = _read_listed_parts(experiment_path, parts, exclude)
        if not tables:
            return pd.DataFrame()
        if len(tables) == 1 and readable[0].name == COMPACTED_FILE:
            table = tables.pop()  # already merged and sorted
        else:
            try:
                table = _merge(tables)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # a column that is numbers in one part and pickled objects in another
                frame = _concat(table_to_frame(t) for t in tables)
                return _finish_in_pandas(frame, exclude)
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


def _read_listed_parts(
    experiment_path: _store.AnyPath, parts: list[_store.Location], exclude: set[str]
) -> tuple[list[pa.Table], set[str], list[_store.Location]]:
    """``_read_parts`` of a listing taken while the experiment may run: when a compaction
    removes parts between the listing and the read, list again (the compacted file, written
    before any part is removed, holds their rows), so a reader never loses or mixes rows."""
    for _ in range(3):
        try:
            return _read_parts(parts, exclude, gone_is_error=True)
        except _PartGone:
            parts = history_parts(experiment_path)
    return _read_parts(parts, exclude)


def _read_parts(
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


def _merge(tables: list[pa.Table]) -> pa.Table:
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


def _add_missing_last_results(
    frame: pd.DataFrame, experiment_path: _store.AnyPath, exclude: set[str]
) -> pd.DataFrame:
    """Add each ended trial's stored last result where the history lacks it (damaged or
    deleted history files), with a warning."""
    try:
        trials = _ray_state.load_trial_states(experiment_path)
    except ExperimentDamagedError:
        return frame
    newest: dict[str, Any] = {}
    if not frame.empty:
        newest = frame.groupby("trial_id")["training_iteration"].max().to_dict()
    missing = [  # ended trials only: a running one's last rows may still be buffered
        trial
        for trial in trials
        if trial.status in _ray_state.TERMINAL_STATUSES
        and trial.last_result.get("training_iteration") is not None
        and not trial.last_result["training_iteration"] <= newest.get(trial.trial_id, -1)
    ]
    if not missing:
        return frame
    names = ", ".join(trial.trial_id for trial in missing[:5]) + (
        ", ..." if len(missing) > 5 else ""
    )
    warn(
        f"The history of {experiment_path} lacks the last result of {len(missing)} trial(s) "
        f"({names}): their last result is taken from the experiment state; earlier results "
        "of those trials that are not in the history are lost.",
        stacklevel=3,
    )
    rows = []
    for trial in missing:
        row = flatten(trial.last_result)
        row["trial_id"] = trial.trial_id
        rows.append(row)
    return _finish_in_pandas(_concat([frame, pd.DataFrame(rows)]), exclude)


def last_rows_from_history(experiment_path: _store.AnyPath) -> list[dict[str, Any]]:
    """The newest history row of every trial in radas's history parts (to rebuild the
    per-trial table)."""
    if not history_parts(experiment_path):
        return []
    frame = _load_stored_history(experiment_path, set())
    if frame.empty:
        return []
    last = frame.groupby("trial_id", sort=True).tail(1)
    return [
        {key: value for key, value in row.items() if not _is_missing(value)}
        for row in last.to_dict("records")
    ]


def _finish_in_pandas(frame: pd.DataFrame, exclude: set[str]) -> pd.DataFrame:
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


def write_ray_result_files(experiment_path: _store.AnyPath) -> int:
    """Write Ray's per-trial ``result.json`` (JSON lines) from radas's history, for trials
    without ``progress.csv`` whose ``result.json`` is missing or behind their last result
    (written while they ran, or before a restore continued them); returns how many files
    were written."""
    path = _store.location(experiment_path)
    missing = {
        trial.trial_id: path / trial.trial_dir_name
        for trial in _ray_state.load_trial_states(path)
        if trial.last_result
        and not (path / trial.trial_dir_name / "progress.csv").exists()
        and _last_iteration(path / trial.trial_dir_name / "result.json")
        != trial.last_result.get("training_iteration")
    }
    if not missing or not history_parts(path):
        return 0
    history = load_history(path)
    written = 0
    for trial_id, rows in history.groupby("trial_id", sort=False):
        trial_dir = missing.get(trial_id)
        if trial_dir is None:
            continue
        trial_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for record in rows.to_dict("records"):
            present = {key: value for key, value in record.items() if not _is_missing(value)}
            lines.append(json.dumps(present, default=_ray_state.json_default))
        _files.write_atomic(trial_dir / "result.json", "\n".join(lines) + "\n")
        written += 1
    return written


def _last_iteration(result_file: _store.Location) -> Any:
    """The ``training_iteration`` of a ``result.json``'s last line (None: no file, or none)."""
    try:
        lines = result_file.read_text(errors="replace").splitlines()
        return json.loads(lines[-1]).get("training_iteration") if lines else None
    except (OSError, ValueError, AttributeError):
        return None


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _load_from_ray_result_files(experiment_path: _store.AnyPath) -> pd.DataFrame:
    rows = []
    for trial in _ray_state.load_trial_states(experiment_path):
        trial_dir = _store.location(experiment_path) / trial.trial_dir_name
        for result in _ray_state.read_trial_result_file(trial_dir):
            row = flatten(result)
            row["trial_id"] = trial.trial_id
            rows.append(row)
    return pd.DataFrame(rows)


def _concat(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
