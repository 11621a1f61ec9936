"""The CPU hogs of ``scripts/test.sh --under-load`` (scripts/_load.sh) end with the script:
when it ends, when it gets Ctrl-C, and when it is killed outright."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from radas.clusters.node_processes import is_alive
from support.waiting import wait_for

pytestmark = pytest.mark.timing  # the hogs end within a bound after a signal

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def start_script(body: str) -> tuple[subprocess.Popen, list[int]]:
    """A bash script sourcing _load.sh that starts two hogs, then runs ``body``; returns it
    (in a process group of its own, like a terminal's job) and the hogs' pids it printed."""
    script = subprocess.Popen(
        ["bash", "-c", f"source {SCRIPTS / '_load.sh'}; start_hogs; {body}"],
        env={**os.environ, "RADAS_TEST_HOGS": "2"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as from a terminal: a shell started in the background (nohup, `cmd &`) inherits
        # SIGINT ignored, and bash cannot trap a signal ignored when it started
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    line = script.stdout.readline()
    found = re.search(r"under load: 2 CPU hogs running \(pids ([\d ]+)\)", line)
    assert found, line
    hogs = [int(pid) for pid in found.group(1).split()]
    assert all(psutil.pid_exists(pid) for pid in hogs)
    return script, hogs


def _waits_for_sleep(pid: int) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return any(child.name() == "sleep" for child in psutil.Process(pid).children())
    return False


def running(pids: list[int]) -> list[int]:
    return [pid for pid in pids if is_alive(pid)]


def test_hogs_end_when_the_script_ends():
    script, hogs = start_script("read -r _")  # waits for a line on its standard input
    assert running(hogs) == hogs
    script.stdin.write("go\n")
    script.stdin.close()  # the line: the script ends
    assert script.wait(timeout=60) == 0
    wait_for(lambda: not running(hogs), 30, what="the hogs to end")


@pytest.mark.parametrize(
    ("how", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)]
)
def test_hogs_end_when_the_script_is_interrupted_or_killed(how, code):
    script, hogs = start_script("sleep 600 & wait $!")
    try:
        # signalled once it waits: a signal that reaches bash while it forks the sleep can be
        # lost (its trap is reset in the fork), and the script then waits the whole 600 s
        wait_for(lambda: _waits_for_sleep(script.pid), 30, what="the script to wait")
        if how == signal.SIGINT:  # Ctrl-C: the terminal signals the whole process group
            os.killpg(script.pid, how)
        else:
            script.send_signal(how)
        assert script.wait(timeout=60) == code
        wait_for(lambda: not running(hogs), 30, what="the hogs to end")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(script.pid, signal.SIGKILL)  # the sleep, whatever happened
