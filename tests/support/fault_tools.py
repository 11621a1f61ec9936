"""Tools the fault tests share: a tmpfs of their own (a full or read-only disk), the radas
warnings raised in a block, a short job-server timeout with no ambient Ray token."""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from radas.errors import RadasWarning


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str = "200m") -> Iterator[Path]:
    """A tmpfs of its own at ``mount_point`` (tests run as root; chmod alone does not stop
    root's writes, a read-only mount does: ``mount -o remount,ro``), unmounted after;
    skipped where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@contextlib.contextmanager
def radas_warnings() -> Iterator[list[str]]:
    """The messages of the RadasWarnings raised inside (from any thread; several may be
    expected)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        messages: list[str] = []
        yield messages
    messages.extend(str(w.message) for w in caught if issubclass(w.category, RadasWarning))


def short_cluster_timeout(monkeypatch: pytest.MonkeyPatch, home: Path, seconds: float) -> None:
    """``RADAS_CLUSTER_TIMEOUT_S`` of ``seconds``, and no Ray token of the real user anywhere
    (``HOME`` is ``home``)."""
    monkeypatch.setenv("RADAS_CLUSTER_TIMEOUT_S", str(seconds))
    monkeypatch.setenv("HOME", str(home))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
