"""The shape a cluster's radas job read, kept in the cluster's results root for the client.

The job server does not serve the autoscaler's config (its node types' resources and bounds),
so the driver of each radas job, which reads it on the head, leaves it next to the results;
``radas clusters`` and the check before a submission read it from there.
"""

from __future__ import annotations

import contextlib
import json
import time

from radas.clusters.shape import ClusterShape
from radas.errors import StorageError
from radas.storage import files, store

RECORD_FILE = ".radas-node-types.json"


def record(shape: ClusterShape, results_root: str) -> None:
    """Keep ``shape`` in the cluster's results root for the client (best effort: a cluster
    whose results root cannot take it runs all the same)."""
    data = json.dumps({"read_at": time.time(), "shape": shape.to_dict()})
    with contextlib.suppress(OSError, StorageError):
        files.write_atomic(store.location(results_root) / RECORD_FILE, data)


def recorded(results_root: str) -> tuple[ClusterShape, float] | None:
    """The shape the cluster's last radas job read, and when (``time.time()``); None if none
    or unreadable."""
    try:
        data = json.loads((store.location(results_root) / RECORD_FILE).read_text())
        return ClusterShape.from_dict(data["shape"]), float(data["read_at"])
    except Exception:  # missing, damaged, unreachable: the client goes without it
        return None
