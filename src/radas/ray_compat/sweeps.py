"""What the fixes know of radas's sweeps in this process: how many run now (the fixes are
installed while one does: ``install.fixes_installed``), and the worker processes (pids) and
trainable names of their trials (fix 5, ``worker_logs``).

The workers and names are kept after a sweep, as a worker's lines may reach the driver long
after it (seen under load: a trial's print of the first of two sweeps arrived after the second
had ended). Names too: a trial run again that only prints (it continues from its state and
reports nothing new) sends no result with its new worker's pid.
"""

from __future__ import annotations

running = 0  # radas sweeps under install.fixes_installed in this process
worker_pids: set[int] = set()
trainables: set[str] = set()


def from_a_sweep(data: dict) -> bool:
    """Whether a worker's lines (Ray's log record ``data``) come from a trial of one of
    radas's sweeps."""
    name = data.get("actor_name") or data.get("task_name")
    return data.get("pid") in worker_pids or name in trainables
