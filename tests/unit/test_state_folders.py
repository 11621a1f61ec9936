"""The folders report(state=) writes a state into before Tune copies it: what a worker killed in
the middle of a report leaves there is removed by the next worker's first report, and nothing
that may still be in use is."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from radas.tune import trial
from radas.tune.trial import ABANDONED_STATE_AGE_S, STATE_FOLDER_PREFIX


def a_gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def state_folder(root: Path, pid: int, age_s: float) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"{STATE_FOLDER_PREFIX}{pid}-", dir=root))
    (folder / trial.STATE_FILE).write_bytes(b"state")
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_only_folders_of_gone_processes_untouched_for_an_hour_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    trial._remove_states_of_dead_workers.cache_clear()
    gone = a_gone_pid()
    abandoned = state_folder(tmp_path, gone, ABANDONED_STATE_AGE_S + 60)
    recent = state_folder(tmp_path, gone, 5)  # maybe a process of another pid namespace
    mine = state_folder(tmp_path, os.getpid(), ABANDONED_STATE_AGE_S + 60)
    not_ours = tmp_path / "radas-state-notapid-x"
    not_ours.mkdir()
    os.utime(not_ours, (0, 0))

    trial._remove_states_of_dead_workers()

    assert not abandoned.exists()
    assert recent.exists() and mine.exists() and not_ours.exists()
    trial._remove_states_of_dead_workers.cache_clear()
