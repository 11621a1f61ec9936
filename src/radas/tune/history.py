"""The history's writer: a Tune callback on the driver that buffers every reported result
and writes it as a part (``radas.storage.history_parts``).

No stored experiment state is newer than the history: a report with a state
(``radas.report(..., state=...)``) is written to the history before Tune records that state
as the trial's latest (``HistoryRecorder.on_checkpoint``), so after a killed driver the
history holds every report up to the state a restore continues from. A full disk raises
``StorageFullError`` (see ``radas.storage.files``).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import pyarrow as pa
from ray.tune import Callback

from radas.core.console import warn
from radas.errors import StorageFullError
from radas.storage import files as _files
from radas.storage import store as _store
from radas.storage.history_parts import (
    HISTORY_DIR,
    PICKLED_COLUMNS_KEY,
    common_pickled_columns,
    compact_history,
    flatten,
    rows_to_table,
    write_whole,
)

MERGE_PARTS = 64  # a recorder merges its last this many small parts into one (see flush)


SMALL_PART_ROWS = 1_000


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

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
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
                    write_whole(filesystem, table, f"{directory}/{name}")
                except FileNotFoundError:  # the folder was removed while the run went on
                    self._recreate_directory(directory)
                    write_whole(filesystem, table, f"{directory}/{name}")
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
        pickled = common_pickled_columns([table for _, table in parts])
        if pickled is None:
            return
        try:  # numbers of different types are promoted as loading does (see merge_tables)
            table = pa.concat_tables(
                [t.replace_schema_metadata(None) for _, t in parts], promote_options="permissive"
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return
        metadata = {PICKLED_COLUMNS_KEY: "\n".join(sorted(pickled)).encode()} if pickled else None
        table = table.replace_schema_metadata(metadata)
        try:
            write_whole(filesystem, table, parts[-1][0])
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
