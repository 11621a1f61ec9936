"""A sweep run by a script in a process of its own, its trials held until the test releases
them: what another process (a reader, radas watch, the report page) sees while an experiment
runs. The script gets the release file's path as its one argument."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class HeldSweep:
    process: subprocess.Popen[bytes]
    release: Path  # the file whose existence lets the trials go on
    log: Path  # the script's output (a file: a full pipe nobody reads would hold it up)

    def finish(self, timeout_s: float = 180) -> str:
        """Release the trials and wait for the script to end with status 0; its output."""
        self.release.touch()
        self.process.wait(timeout=timeout_s)
        output = self.log.read_text()
        assert self.process.returncode == 0, output
        return output


@contextlib.contextmanager
def held_sweep(project: Path, script: str, *, name: str = "held_sweep.py") -> Iterator[HeldSweep]:
    """``script`` written to ``project/name`` and run from ``project`` in a session of its own;
    on leaving the block the trials are released and a script still running is killed with
    its process group."""
    (project / name).write_text(script)
    release, log = project / "release", project / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-u", name, str(release)],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield HeldSweep(process, release, log)
    finally:
        release.touch()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
