"""Helpers a trainable calls while it runs as a Ray Tune trial.

A trial keeps its state with ``report(metrics, state=obj)`` and gets it back with
``load_state()``, so that a trial stopped part-way (``stop_attach`` then ``restore``, a lost
node, a killed driver, an out-of-memory retry) continues from its last saved state instead of
starting again. The state travels as a Ray Tune checkpoint (one pickle file in it), so it is
stored wherever Tune stores the experiment (local path, shared path, object store); radas keeps
the latest two of each trial unless the run_config sets its own ``checkpoint_config``
(``radas.tune.configuration.STATES_KEPT``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radas.errors import ExperimentDamagedError, InvalidArgumentError

STATE_FILE = "radas_state.pkl"
# report(state=) writes the state here (then "<pid>-<random>") for Tune to copy
STATE_FOLDER_PREFIX = "radas-state-"
ABANDONED_STATE_AGE_S = 3600.0
_NO_STATE = object()


def report(metrics: dict[str, Any], *, checkpoint: Any = None, state: Any = _NO_STATE) -> None:
    """Report one result (a dict of metrics) from inside a trainable, optionally with the
    trial's state to continue from.

    Same as ``ray.tune.report``; every call is one row of ``get_history_dataframe()``.
    ``state`` is any picklable object (for torch, the ``state_dict()`` of the model and the
    optimizer, not the objects); ``load_state()`` returns the latest one when the trial runs
    again. Outside a trial (the trainable called directly) the state is only checked.

    >>> def trainable(config):  # doctest: +SKIP
    ...     state = radas.load_state() or {"epoch": 0, "model": Net().state_dict()}
    ...     model = Net()
    ...     model.load_state_dict(state["model"])
    ...     for epoch in range(state["epoch"] + 1, 41):
    ...         loss = train_one_epoch(model)
    ...         radas.report({"loss": loss}, state={"epoch": epoch, "model": model.state_dict()})
    """
    from ray import tune

    from radas.ray_compat.private import CHECKPOINT_LOGGER

    if not isinstance(metrics, dict):
        raise InvalidArgumentError(
            f"radas.report() takes a dict of metrics, got {type(metrics).__name__}: name each "
            "value, e.g. radas.report({'loss': loss, 'epoch': epoch})."
        )
    if state is _NO_STATE:
        tune.report(metrics, checkpoint=checkpoint)
        return
    if checkpoint is not None:
        raise InvalidArgumentError(
            "radas.report() takes checkpoint= or state=, not both: put what the checkpoint "
            "holds into the state, or use ray.tune.get_checkpoint() for your own checkpoints."
        )
    pickled = _pickle_state(state)
    # Ray's storage logs a line per state stored: one per epoch of every trial saving its state
    logging.getLogger(CHECKPOINT_LOGGER).setLevel(logging.WARNING)
    _remove_states_of_dead_workers()
    with tempfile.TemporaryDirectory(prefix=f"{STATE_FOLDER_PREFIX}{os.getpid()}-") as directory:
        with open(os.path.join(directory, STATE_FILE), "wb") as stream:
            stream.write(pickled)
        # Tune copies the folder to the trial's storage before report() returns.
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


@functools.cache  # once per worker process
def _remove_states_of_dead_workers() -> None:
    """Remove the state folders that workers killed in the middle of ``report`` left in the
    temporary folder: those named after a process that is gone and untouched for
    ``ABANDONED_STATE_AGE_S`` (a report copies its folder within it; a process of another pid
    namespace sharing the folder is not taken for gone while it writes)."""
    now = time.time()
    for folder in Path(tempfile.gettempdir()).glob(f"{STATE_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(STATE_FOLDER_PREFIX) :].split("-", 1)[0]
        with contextlib.suppress(OSError, ValueError):  # another user's, or just removed
            if _alive(int(pid)) or now - folder.stat().st_mtime < ABANDONED_STATE_AGE_S:
                continue
            shutil.rmtree(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _pickle_state(state: Any) -> bytes:
    from ray import cloudpickle  # also objects of classes defined in the trainable's script

    try:
        return cloudpickle.dumps(state)
    except Exception as err:  # pickling fails with TypeError, PicklingError, AttributeError...
        trial = _trial_name() or "(outside a trial)"
        raise InvalidArgumentError(
            f"radas.report(state=...) in trial {trial}: the state cannot be pickled "
            f"({type(err).__name__}: {str(err)[:200]}). Pass plain data: numbers, lists, "
            "dicts, numpy arrays, and for torch the model's and optimizer's state_dict(), not "
            "open files, locks, threads or connections."
        ) from err


def load_state() -> Any:
    """The state this trial last saved with ``report(..., state=...)``, or None when it has
    saved none (its first run) or when called outside a trial.

    >>> state = radas.load_state() or {"epoch": 0}  # doctest: +SKIP
    """
    from ray import cloudpickle, tune

    if _trial_name() is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state_file = os.path.join(directory, STATE_FILE)
        if not os.path.exists(state_file):
            raise InvalidArgumentError(
                f"Trial {_trial_name()} continues from a checkpoint it reported with "
                "radas.report(checkpoint=...), which holds no radas state: read it with "
                "ray.tune.get_checkpoint(), or report state=... instead of checkpoint=...."
            )
        try:
            with open(state_file, "rb") as stream:
                return cloudpickle.load(stream)
        except Exception as err:  # truncated or overwritten: unpickling fails in many ways
            stored = f"{checkpoint.path.rstrip('/')}/{STATE_FILE}"
            raise ExperimentDamagedError(
                f"Trial {_trial_name()} cannot continue: the state it saved, {stored}, is "
                f"damaged ({type(err).__name__}: {str(err)[:200]}). To run this trial on "
                f"from an earlier state, delete that state's folder ({os.path.dirname(stored)}) "
                "and restore again (run_choice='restore'): radas then continues it from its "
                "newest complete state, or from scratch when none is kept; the other trials "
                "continue from their own states."
            ) from err


def _trial_name() -> str | None:
    """This trial's name, or None outside a trial."""
    from ray import tune

    with warnings.catch_warnings():  # Ray warns when asked outside a trial
        warnings.simplefilter("ignore")
        try:
            return tune.get_context().get_trial_name()
        except Exception:  # no Tune session at all
            return None


def current_experiment() -> dict[str, Any] | None:
    """Inside a trial: the radas experiment it belongs to, else None.

    A dict with ``user_name``, ``experiment_name``, ``full_name``, ``storage_root``,
    ``started``, ``cluster`` (None for local runs), plus ``trial_id`` and ``trial_name``.
    """
    import json
    from pathlib import Path

    from ray import tune

    try:
        context = tune.get_context()
        with warnings.catch_warnings():  # Ray warns when asked outside a trial
            warnings.simplefilter("ignore")
            storage = context.get_storage()
    except Exception:  # not inside a Tune trial
        return None
    if storage is None:
        return None
    info_file = Path(storage.experiment_fs_path) / "radas_experiment.json"
    if not info_file.exists():
        return None
    info = json.loads(info_file.read_text())
    info["trial_id"] = context.get_trial_id()
    info["trial_name"] = context.get_trial_name()
    return info


# --- each trial's own output, kept in its folder ------------------------------------------------

OUTPUT_FILE = "radas_output.log"
OUTPUT_LIMIT_BYTES = 10 * 2**20  # kept per trial (per run of it); the console shows it all
_OUTPUT_UPLOAD_S = 10.0  # an object store has no append: the file is written again this often


def with_output_kept(trainable: Any) -> Any:
    """``trainable`` (a function) with what it prints to ``sys.stdout`` / ``sys.stderr`` also
    appended to ``radas_output.log`` in its trial's folder, so no line depends on the console
    (``radas logs --experiment``). Class trainables are returned as they are. Output written
    below Python (a C library, a subprocess writing to the file descriptors) is not seen."""
    if isinstance(trainable, type):
        return trainable

    @functools.wraps(trainable)
    def run_keeping_output(*args: Any, **kwargs: Any) -> Any:
        with _kept_output():
            return trainable(*args, **kwargs)

    return run_keeping_output


class _OutputFile:
    """Text appended to a trial's output file: straight to a local file; to an object store,
    the whole text again every ``_OUTPUT_UPLOAD_S`` seconds and at the end."""

    def __init__(self, location: Any) -> None:
        self._lock = threading.Lock()
        self._clock = time.monotonic
        self._location = location
        self._written = 0
        self._local = None
        if isinstance(location, Path):
            self._local = open(location, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._text: list[str] = []
        self._uploaded = self._clock()
        again = "\n--- this trial runs again ---\n"
        if self._local is not None and self._local.tell():
            self._local.write(again)
        elif self._local is None and location.exists():  # no append: what it printed before
            self._text = [location.read_text(), again]

    def write(self, text: str) -> None:
        with self._lock:
            if self._written > OUTPUT_LIMIT_BYTES:
                return
            self._written += len(text)
            if self._written > OUTPUT_LIMIT_BYTES:
                text += f"\n[radas] output beyond {OUTPUT_LIMIT_BYTES >> 20} MiB not kept here\n"
            if self._local is not None:
                self._local.write(text)
                self._local.flush()
                return
            self._text.append(text)
            if self._clock() - self._uploaded >= _OUTPUT_UPLOAD_S:
                self._upload()

    def _upload(self) -> None:
        from radas.storage import files as _files

        self._uploaded = self._clock()
        # the output is a courtesy: never the reason a trial fails
        with contextlib.suppress(Exception):
            _files.write_atomic(self._location, "".join(self._text))

    def close(self) -> None:
        with self._lock:
            if self._local is not None:
                self._local.close()
            elif self._text:
                self._upload()


class _Tee:
    """A text stream that writes to ``stream`` and to ``kept``."""

    def __init__(self, stream: Any, kept: _OutputFile) -> None:
        self._stream = stream
        self._kept = kept

    def write(self, text: str) -> int:
        with contextlib.suppress(Exception):  # a full disk: the console still gets the line
            self._kept.write(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _kept_output() -> Iterator[None]:
    """Within: this trial's prints also go to its output file (console only, outside a
    trial or when the folder cannot be written)."""
    from ray import tune

    from radas.storage import store as _store

    try:
        with warnings.catch_warnings():  # Ray warns when asked outside a trial
            warnings.simplefilter("ignore")
            storage = tune.get_context().get_storage()
        folder = _store.on_filesystem(storage.storage_filesystem, storage.trial_fs_path)
        folder.mkdir(parents=True, exist_ok=True)
        kept = _OutputFile(folder / OUTPUT_FILE)
    except Exception:
        yield
        return
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, kept), _Tee(sys.stderr, kept)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
        kept.close()
