"""``radas_home()``: the local directory where radas keeps its own files (results, data, locks,
local clusters' state). A leaf module, so that ``storage.dirs``, ``clusters.local`` and
``_locks`` all import it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from radas.errors import StorageError


def radas_home() -> Path:
    """The local radas directory: ``$RADAS_HOME``, else ``~/.radas``.

    A relative ``$RADAS_HOME`` is refused: each process (the driver, Ray's workers, a later
    session started elsewhere) would resolve it against its own working directory.
    """
    home = Path(os.environ.get("RADAS_HOME") or Path.home() / ".radas").expanduser()
    if not home.is_absolute():
        raise StorageError(
            f"RADAS_HOME={os.environ['RADAS_HOME']} is a relative path, which each process "
            "would resolve against its own working directory. Set an absolute path, e.g. "
            f"export RADAS_HOME={Path(home).absolute()}"
        )
    return home
