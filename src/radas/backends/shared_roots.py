"""Whether a cluster sees the folders its config names as this machine sees them.

A cluster's ``results_root`` and ``data_root`` may be paths (a shared mount) instead of an
object store. Such a path must be the same folder here and on every node: the client reads
the results from it, and ``get_data_dir`` hands out folders in it. Before a job's sweep starts,
radas checks that: the client writes a marker file with a random content under each path root
(``write_markers``) and names them in the job's environment (``MARKERS_ENV``); the job's driver
reads them first thing (``unseen_roots``), removes them, and when one is missing or differs it
prints ``NOT_SHARED`` and the roots it did not see (``unseen_line``) and ends before the sweep
starts. The client finds that line in the job's output (``unseen_in``) and raises
``ClusterConfigError`` with ``not_shared_message``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from radas.clusters.config import ClusterConfig, config_path

MARKERS_ENV = "RADAS_ROOT_MARKERS"  # {"results_root": [root, marker path, content], ...}
MARKERS_DIRNAME = ".radas-checks"
NOT_SHARED = "the cluster sees other folders than the client at these roots (not started):"
_CHECKED_KEYS = ("results_root", "data_root")


def write_markers(cluster: ClusterConfig, job_id: str) -> dict[str, list[str]]:
    """Write a marker under each of ``cluster``'s path roots; what the job's driver checks.

    A root that is a folder here but cannot be written to from here (a read-only mount of the
    share, say) is left unchecked; a ``results_root`` that is no folder here and cannot be
    made one raises OSError (the client could not read results there), a ``data_root`` is
    then left unchecked too."""
    markers = {}
    for key in _CHECKED_KEYS:
        root = getattr(cluster, key)
        if not root or "://" in root:
            continue
        content = secrets.token_hex(16)
        marker = Path(root) / MARKERS_DIRNAME / f"{job_id}-{content[:8]}"
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(content)
        except OSError:
            if key == "results_root" and not Path(root).is_dir():
                raise
            continue
        markers[key] = [root, str(marker), content]
    return markers


def remove_markers(cluster: ClusterConfig, job_id: str) -> None:
    """Remove the markers of job ``job_id`` from this machine's view of ``cluster``'s roots
    once the job has ended (those its driver saw are gone already)."""
    for key in _CHECKED_KEYS:
        root = getattr(cluster, key)
        if root and "://" not in root:
            for marker in (Path(root) / MARKERS_DIRNAME).glob(f"{job_id}-*"):
                marker.unlink(missing_ok=True)


def remove_own_markers(markers: dict[str, list[str]]) -> None:
    """Remove the markers ``write_markers`` returned (a submission that made no job of its
    own: another client's submission of the same job id keeps its markers)."""
    for _root, marker, _content in markers.values():
        Path(marker).unlink(missing_ok=True)


def unseen_roots(environ: dict[str, str] | None = None) -> dict[str, str]:
    """In the job's driver: the roots (key -> path) whose marker this process does not see as
    the client wrote it; the markers it saw are removed."""
    named = (environ if environ is not None else os.environ).get(MARKERS_ENV)
    unseen = {}
    for key, (root, marker, content) in json.loads(named or "{}").items():
        try:
            seen = Path(marker).read_text() == content
        except (OSError, UnicodeDecodeError):
            seen = False
        if seen:
            Path(marker).unlink(missing_ok=True)
        else:
            unseen[key] = root
    return unseen


def unseen_line(unseen: dict[str, str]) -> str:
    """The line the driver prints for the roots it did not see."""
    return f"{NOT_SHARED} {json.dumps(unseen)}"


def unseen_in(output: str) -> dict[str, str] | None:
    """The roots a job's driver reported unseen in its ``output``; None if it reported none."""
    for line in output.splitlines():
        if NOT_SHARED in line:
            try:
                return dict(json.loads(line.split(NOT_SHARED, 1)[1]))
            except ValueError:
                return None
    return None


def not_shared_message(cluster_name: str, unseen: dict[str, str]) -> str:
    """The client's error when the cluster does not see ``unseen`` (key -> root) as this
    machine does: the roots, why it matters and the way out."""
    listing = ", ".join(f"{key} = {root!r}" for key, root in unseen.items())
    why = []
    if "results_root" in unseen:
        why.append(
            "the sweep's results would be written where the client cannot read them "
            '(results_root = "s3://bucket/prefix", an object store every machine reaches, '
            "needs no shared folder)"
        )
    if "data_root" in unseen:
        why.append(
            "radas.get_data_dir hands the client folders the trials cannot see (keep data "
            "the trials need in an object store with radas.cloud_artifact, or share the folder)"
        )
    return (
        f"cluster:{cluster_name} does not see {listing} as this machine does: a marker file "
        "radas wrote there from this machine was not there for the job's driver on the "
        f"cluster. That path is another folder on the cluster, so {'; and '.join(why)}. Mount "
        "one shared folder at that path on this machine and on every node, or change "
        f"[clusters.{cluster_name}] in {config_path()}. The sweep did not start."
    )
