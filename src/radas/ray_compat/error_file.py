"""Fix 4: a trial's ``error.txt`` without colour codes, and the trainable's own exits read
right (with fix 8).

Ray: ``ray/tune/experiment/trial.py``, ``Trial.handle_error`` (line 842 in Ray 2.60) writes
``str(RayTaskError)``, ANSI colour codes included. Ours rewrites the file without them as soon
as Tune wrote it, adds the trainable's own error where Ray's misreads it
(``resources.own_error_line``), and keeps the exception for fix 8's ``should_recover``.
``docs/architecture.md``, "The Ray boundary".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from radas.core.console import strip_ansi
from radas.ray_compat.lost_trials import note_failure, own_exit_code
from radas.resources import FAILURE_HEADER, own_error_block, own_error_line


def _wrap_handle_error(original: Callable[..., Any]) -> Callable[..., Any]:
    def handle_error(self: Any, exc: Any = None) -> None:
        original(self, exc)
        note_failure(self, exc)  # for should_recover, which Tune asks next (fix 8)
        os_exit_code = own_exit_code(exc)
        path = self.error_file
        if path:
            with contextlib.suppress(OSError):
                with open(path, encoding="utf-8", errors="replace") as stream:
                    text = stream.read()
                plain = strip_ansi(text)
                last_failure = plain.rpartition(FAILURE_HEADER)[2]
                own = own_error_line(exc, last_failure, os_exit_code)
                if own is not None:
                    plain = plain.rstrip("\n") + "\n" + own_error_block(own)
                if plain != text:
                    with open(path, "w", encoding="utf-8") as stream:
                        stream.write(plain)

    return handle_error


def install(replace: Callable[[Any, str, Callable[[Any], Any]], None]) -> None:
    from ray.tune.experiment import Trial

    replace(Trial, "handle_error", _wrap_handle_error)
