"""``radas_home()``: the local directory where radas keeps its own files (results, data, locks,
local clusters' state). A leaf module, so that ``storage.dirs``, ``clusters.local`` and
``_locks`` all import it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def radas_home() -> Path:
    """The local radas directory: ``$RADAS_HOME``, else ``~/.radas``."""
    return Path(os.environ.get("RADAS_HOME") or Path.home() / ".radas").expanduser()
