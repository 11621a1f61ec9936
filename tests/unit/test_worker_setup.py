"""radas's setup of Ray's worker processes (radas.tune.worker), in a fresh interpreter each: the
hook it installs is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(
        """
        import gc
        from radas.tune import worker as _worker

        class ExitsWhenCollected:  # as Ray's SIGTERM handler inside a weakref callback
            def __init__(self, error):
                self.error = error

            def __del__(self):
                raise self.error

        _worker.setup()
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


def test_a_worker_asked_to_exit_says_nothing():
    done = run(
        """
        ExitsWhenCollected(SystemExit(1))
        gc.collect()
        print("still here")
        """
    )
    assert done.stdout == "still here\n"
    assert done.stderr == "", done.stderr


def test_other_ignored_exceptions_are_still_reported():
    done = run(
        """
        ExitsWhenCollected(ValueError("lost in a finalizer"))
        gc.collect()
        """
    )
    assert "Exception ignored in" in done.stderr
    assert "ValueError: lost in a finalizer" in done.stderr
