"""The radas config file (TOML), read and written in one place.

The file is ``$RADAS_CONFIG``, else ``~/.config/radas/config.toml``. Its tables are
``[clusters.<name>]`` (``radas.clusters.config``) and ``[smtp]`` (``radas.notify.email``); a
``user`` key above them names the default user (``radas.core.naming.default_user``). No table
may hold a secret: each names where its secret lives (``token_env`` / ``token_file``,
``password_env`` / ``password_file``), and ``refuse_secrets`` enforces that with the rule radas
uses for secrets everywhere (``radas.core.secrets.is_secret_key``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tomlkit

from radas.core.secrets import is_secret_key
from radas.core.temporary import replace_file
from radas.errors import RadasError


def config_path() -> Path:
    """The radas config file: ``$RADAS_CONFIG``, else ``~/.config/radas/config.toml``."""
    configured = os.environ.get("RADAS_CONFIG")
    return (
        Path(configured).expanduser() if configured else Path.home() / ".config/radas/config.toml"
    )


def read_config(error: type[RadasError]) -> tomlkit.TOMLDocument:
    """The whole config file (empty when there is none); ``error`` when it is not TOML (the
    caller's kind: ClusterConfigError, EmailConfigError)."""
    path = config_path()
    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except Exception as err:
        raise error(
            f"Cannot parse the radas config {path}: {type(err).__name__}: {err}. It must be a "
            "UTF-8 TOML file (format in skills/radas/REFERENCE.md); fix it there, or point "
            "RADAS_CONFIG at another file."
        ) from err


@contextlib.contextmanager
def updating_config(error: type[RadasError]) -> Iterator[tomlkit.TOMLDocument]:
    """The config file to change in the block, written back in one step when it ends changed
    (a reader never sees half of it). Writers take turns, holding a lock file beside it
    (``.<name>.lock``) from their read to their write, so two processes changing it at once
    (``radas cluster up a`` and ``radas cluster up b``) both keep their change."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        document = read_config(error)
        before = tomlkit.dumps(document)
        yield document
        after = tomlkit.dumps(document)
        if after != before:
            replace_file(path, after.encode("utf-8"))


def plain(value: Any) -> Any:
    """A value read from the file as plain Python (tomlkit wraps them)."""
    return value.unwrap() if hasattr(value, "unwrap") else value


def refuse_secrets(
    table: Mapping[str, Any], *, where: str, what: str, advice: str, error: type[RadasError]
) -> None:
    """``error`` when ``table`` holds a secret (``password``, ``token``, ...): it names the
    keys (never their values), then ``advice``: where the secret should live instead."""
    found = [key for key in table if is_secret_key(key)]
    if found:
        raise error(f"{where} stores {what} ({', '.join(found)}). {advice}")
