"""Named clusters from the radas config file (TOML).

The file is ``$RADAS_CONFIG``, else ``~/.config/radas/config.toml``::

    [clusters.lab-gpu]
    address = "http://10.0.0.5:8265"        # the Ray job server (dashboard) address
    description = "8x RTX 5090 in the lab"
    when_to_use = "GPU training; anything that needs CUDA"
    results_root = "/mnt/shared/ray-results" # a path readable here and on every node, or
                                             # an object store: "s3://lab/ray-results"
    results_endpoint_url = "http://10.0.0.9:9000"  # optional; an S3-compatible server (MinIO)
    data_root = "/mnt/shared/data"           # optional when results_root is a URI
    cold_data_root = "/mnt/cold/data"        # (then get_data_dir is refused)
    artifact_root = "s3://lab/radas"         # optional; default <results_root>/.radas-artifacts
                                             # for a URI results_root, else
                                             # <data_root>/.radas-artifacts
    artifact_endpoint_url = "http://10.0.0.9:9000"  # optional; an S3-compatible server (MinIO)
    cpus_per_node = 32                       # optional overrides: radas reads the
    gpus_per_node = 8                        # cluster's node types (its autoscaler's,
    memory_per_node_gb = 256                 # or the nodes alive) and uses these instead
    token_env = "LAB_GPU_RAY_TOKEN"          # where the Ray auth token comes from:
    token_file = "~/.ray/lab-gpu.token"      # an env var and/or a file, never the token itself

The token is looked up in ``token_env``, then ``token_file``; a cluster whose entry names
neither gets no token: radas never sends the token of Ray's own places (``RAY_AUTH_TOKEN``,
``~/.ray/auth_token``) to an address that did not ask for it (name them, e.g.
``token_env = "RAY_AUTH_TOKEN"``, to use them). Local clusters radas starts name their own
token file.
S3 credentials come from the standard AWS variables and files on each machine
(``AWS_ACCESS_KEY_ID``, ``~/.aws/credentials``, ...), never from this file. Without
``results_endpoint_url`` an ``s3://`` results root goes to ``AWS_ENDPOINT_URL`` if set, else AWS.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import stat
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomlkit

from radas.clusters.shape import OVERRIDES_ENV, Overrides
from radas.core.config import (
    config_path,
    plain,
    read_config,
    refuse_secrets,
    updating_config,
)
from radas.core.console import warn
from radas.core.spec import CLUSTER_NAME_RULE, is_cluster_name
from radas.errors import ClusterAuthError, ClusterConfigError, UnknownClusterError

REQUIRED_KEYS = ("address", "results_root", "data_root", "cold_data_root")
DATA_ROOT_KEYS = ("data_root", "cold_data_root")  # optional when results_root is a URI
RESULTS_URI_SCHEMES = ("s3", "gs", "gcs")
NUMBER_KEYS = ("cpus_per_node", "gpus_per_node", "memory_per_node_gb")
_OPTIONAL_TEXT = ("description", "when_to_use")  # may be empty
ARTIFACTS_DIRNAME = ".radas-artifacts"
_warned_token_files: set[str] = set()


@dataclass(frozen=True)
class ClusterConfig:
    """One named Ray cluster."""

    name: str
    address: str
    results_root: str  # a shared path, or an object store URI (s3://bucket/prefix, gs://...)
    data_root: str = ""  # "": none (allowed when results_root is a URI)
    cold_data_root: str = ""
    description: str = ""
    when_to_use: str = ""
    # Overrides of what the cluster says of its largest node type (None: the cluster's own)
    cpus_per_node: float | None = None
    gpus_per_node: float | None = None
    memory_per_node_gb: float | None = None
    token_env: str | None = None
    token_file: str | None = None
    managed_by_radas: bool = False
    artifact_root: str | None = None  # a path or URL; None: see cluster_artifact_root
    artifact_endpoint_url: str | None = None  # S3-compatible server, e.g. http://host:9000
    results_endpoint_url: str | None = None  # the same, for an s3:// results_root

    def overrides(self) -> Overrides:
        """The per-node numbers this config gives (each None when not given): they replace
        what the cluster says of its largest node type (``radas.clusters.shape``)."""
        return Overrides(self.cpus_per_node, self.gpus_per_node, self.memory_per_node_gb)

    def token_sources(self) -> list[str]:
        """Where the token is looked for, in order, for messages (empty: nowhere)."""
        sources = []
        if self.token_env:
            sources.append(f"${self.token_env}")
        if self.token_file:
            sources.append(self.token_file)
        return sources

    def resolve_token(self) -> str | None:
        """The Ray auth token for this cluster, from the ``token_env`` or ``token_file`` its
        entry names; None when it names neither. Ray's own places (``RAY_AUTH_TOKEN``,
        ``~/.ray/auth_token``) are never read unless named: their token is for the cluster
        they were made for, not for whatever address an entry gives.

        When the cluster names a ``token_env`` or ``token_file`` and neither yields a token,
        that is a ClusterAuthError naming both (the cluster expects one).
        """
        if not (self.token_env or self.token_file):
            return None
        if self.token_env and os.environ.get(self.token_env, "").strip():
            return os.environ[self.token_env].strip()
        if self.token_file and Path(self.token_file).expanduser().is_file():
            token = read_token_file(Path(self.token_file).expanduser())
            if token:
                return token
        raise ClusterAuthError(
            f"Cluster {self.name!r} needs a Ray auth token, but none was found in "
            f"{' or '.join(self.token_sources())}. Export the variable or write the "
            f"token to the file (one line, mode 600), or fix token_env/token_file in "
            f"{config_path()}."
        )

    def job_env(self) -> dict[str, str]:
        """Environment variables a radas job carries to its driver and trials, so code running
        on the cluster finds the cluster's storage without the client's config file."""
        optional = {
            "RADAS_DATA_ROOT": self.data_root,
            "RADAS_COLD_DATA_ROOT": self.cold_data_root,
            "RADAS_ARTIFACT_ENDPOINT_URL": cluster_artifact_endpoint_url(self),
            "RADAS_RESULTS_ENDPOINT_URL": self.results_endpoint_url,
        }
        if self.overrides().any():
            optional[OVERRIDES_ENV] = self.overrides().to_env()
        return {
            "RADAS_CLUSTER": self.name,
            "RADAS_RESULTS_ROOT": self.results_root,
            "RADAS_ARTIFACT_ROOT": cluster_artifact_root(self),
            **{name: value for name, value in optional.items() if value},
        }


def cluster_artifact_root(cluster: ClusterConfig) -> str:
    """Where ``cluster`` keeps cloud artifacts: ``artifact_root``, else next to its results
    when they are in an object store, else inside its data root.

    >>> cluster_artifact_root(ClusterConfig("c", "http://h:8265", "/r", "/data", "/cold"))
    '/data/.radas-artifacts'
    >>> cluster_artifact_root(ClusterConfig("c", "http://h:8265", "s3://lab/results"))
    's3://lab/results/.radas-artifacts'
    """
    return cluster.artifact_root or default_artifact_root(cluster.results_root, cluster.data_root)


def default_artifact_root(results_root: str, data_root: str) -> str:
    """The artifact root of a cluster without ``artifact_root``: also what a job uses when
    its environment carries no ``RADAS_ARTIFACT_ROOT`` (``storage.dirs.storage_roots``)."""
    if "://" in results_root:  # the results' object store
        return posixpath.join(results_root.rstrip("/"), ARTIFACTS_DIRNAME)
    return posixpath.join(data_root.rstrip("/") or "/", ARTIFACTS_DIRNAME)


def cluster_artifact_endpoint_url(cluster: ClusterConfig) -> str | None:
    """The S3 endpoint of ``cluster``'s artifact store: ``artifact_endpoint_url``, else the
    results' endpoint when the artifacts default to the results' store."""
    if cluster.artifact_endpoint_url or cluster.artifact_root:
        return cluster.artifact_endpoint_url
    return cluster.results_endpoint_url


def read_token_file(path: Path) -> str:
    """The token in ``path``; a RadasWarning (once per file) when others may read it."""
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ClusterAuthError(
            f"Cannot read the Ray auth token file {path} ({err}). It must be a readable "
            "UTF-8 text file holding the token on one line, mode 600."
        ) from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and str(path) not in _warned_token_files:
        _warned_token_files.add(str(path))
        warn(
            f"The Ray auth token file {path} can be read by other users (mode "
            f"{stat.S_IMODE(mode):03o}): anyone who reads it can run code on the cluster. "
            f"Make it private: chmod 600 {path}",
            stacklevel=3,
        )
    return token


def validate_cluster_name(name: object) -> str:
    """``name`` if it can name a cluster (and its folder), else UnknownClusterError.

    >>> validate_cluster_name("lab-gpu")
    'lab-gpu'
    """
    if not is_cluster_name(name):
        raise UnknownClusterError(
            f"{name!r} is not a valid cluster name: use {CLUSTER_NAME_RULE}, e.g. 'lab-gpu'."
        )
    return name


def load_clusters() -> dict[str, ClusterConfig]:
    """Every configured cluster by name (an empty dict when there is no config file)."""
    document = read_config(ClusterConfigError)
    tables = document.get("clusters", {})
    if not isinstance(tables, dict):
        raise ClusterConfigError(
            f"'clusters' in {config_path()} is {_kind(tables)}; it must be a table of "
            "clusters: one [clusters.<name>] section per cluster (see `radas clusters`)."
        )
    clusters = {}
    for name, table in tables.items():
        where = f"[clusters.{name}] in {config_path()}"
        if not is_cluster_name(name):
            raise ClusterConfigError(
                f"{where}: {name!r} is not a valid cluster name; use {CLUSTER_NAME_RULE}."
            )
        if not isinstance(table, dict):
            raise ClusterConfigError(
                f"'clusters.{name}' in {config_path()} is {_kind(table)}; it must be a table "
                f'([clusters.{name}] with address = "http://host:8265", results_root = ...).'
            )
        clusters[name] = _cluster_from_table(name, dict(table))
    return clusters


def get_cluster(name: str) -> ClusterConfig:
    """The configured cluster called ``name``; UnknownClusterError lists the known ones."""
    validate_cluster_name(name)
    clusters = load_clusters()
    if name not in clusters:
        known = ", ".join(sorted(clusters)) or "none"
        raise UnknownClusterError(
            f"No cluster named {name!r} in {config_path()} (known: {known}). Add a "
            f"[clusters.{name}] table there, or start a local one with "
            f"`radas cluster up {name}` (radas.clusters.start_local_cluster(name={name!r}))."
        )
    return clusters[name]


def register_cluster(cluster: ClusterConfig) -> Path:
    """Add or replace ``cluster`` in the config file, keeping everything else in it."""
    validate_cluster_name(cluster.name)
    table = tomlkit.table()
    for key, value in asdict(cluster).items():
        if key != "name" and value is not None and value != "":
            table[key] = value
    with updating_config(ClusterConfigError) as document:
        document.setdefault("clusters", tomlkit.table(is_super_table=True))[cluster.name] = table
    return config_path()


def unregister_cluster(name: str) -> bool:
    """Remove ``name`` from the config file; False when it was not there."""
    with updating_config(ClusterConfigError) as document:
        clusters = document.get("clusters", {})
        if name not in clusters:
            return False
        del clusters[name]
    return True


def _cluster_from_table(name: str, table: dict[str, Any]) -> ClusterConfig:
    where = f"[clusters.{name}] in {config_path()}"
    refuse_secrets(
        table,
        where=where,
        what="a secret",
        advice="Never put the token in the config: remove it and name where it lives with "
        'token_env = "VAR" or token_file = "/path/to/token".',
        error=ClusterConfigError,
    )
    valid = {f.name for f in fields(ClusterConfig)} - {"name"}
    unknown = sorted(set(table) - valid)
    if unknown:
        raise ClusterConfigError(
            f"{where} has unknown key(s) {unknown}; valid keys: {', '.join(sorted(valid))}."
        )
    values = {key: plain(value) for key, value in table.items()}
    results_uri = "://" in str(values.get("results_root", ""))
    missing = [
        key
        for key in REQUIRED_KEYS
        if key not in values and not (results_uri and key in DATA_ROOT_KEYS)
    ]
    if missing:
        raise ClusterConfigError(f"{where} is missing {', '.join(missing)}.")
    for item in fields(ClusterConfig):
        if item.name in values:
            _check_value(where, item.name, values[item.name])
    values["address"] = _job_server_url(where, values["address"])
    _check_roots_absolute(where, values)
    _check_results_store(where, values)
    if values.get("cpus_per_node", 1) <= 0:  # (absent: the cluster's own)
        raise ClusterConfigError(f"{where}: cpus_per_node must be positive.")
    return ClusterConfig(name=name, **values)


def _check_value(where: str, key: str, value: Any) -> None:
    """A ClusterConfigError naming ``key`` when ``value`` has the wrong type or is empty."""
    if key in NUMBER_KEYS:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < 0:
            raise ClusterConfigError(
                f"{where}: {key} = {value!r} is not valid; it must be a non-negative number, "
                f"e.g. {key} = 8."
            )
    elif key == "managed_by_radas":
        if not isinstance(value, bool):
            raise ClusterConfigError(f"{where}: {key} must be true or false, not {value!r}.")
    elif not isinstance(value, str) or (not value.strip() and key not in _OPTIONAL_TEXT):
        example = "http://10.0.0.5:8265" if key == "address" else "/mnt/shared/..."
        raise ClusterConfigError(
            f"{where}: {key} = {value!r} is not valid; it must be a non-empty string in "
            f'quotes, e.g. {key} = "{example}".'
        )


def _check_roots_absolute(where: str, values: dict[str, Any]) -> None:
    """A root that is a path is absolute: a relative one would be resolved against each
    process's working directory (the client's, the job driver's, every trial's)."""
    for key in ("results_root", *DATA_ROOT_KEYS, "artifact_root"):
        root = values.get(key)
        if not root or "://" in root or root.startswith("~"):
            continue
        if not posixpath.isabs(root):
            raise ClusterConfigError(
                f"{where}: {key} = {root!r} is a relative path, which the client, the job "
                "and every trial would each resolve against their own working directory. "
                f'Give an absolute path shared by this machine and every node, e.g. {key} = "'
                f'/mnt/shared/{root}", or an object store URI (s3://bucket/prefix).'
            )


def _check_results_store(where: str, values: dict[str, Any]) -> None:
    """A URI results_root names a store radas can use; results_endpoint_url only with s3://."""
    root, endpoint = values["results_root"], values.get("results_endpoint_url")
    scheme = urlsplit(root).scheme if "://" in root else ""
    if scheme and (scheme not in RESULTS_URI_SCHEMES or not urlsplit(root).netloc):
        raise ClusterConfigError(
            f"{where}: results_root = {root!r} is not a results store radas can use: give a "
            'path shared by this machine and every node (results_root = "/mnt/shared/ray-'
            'results") or an object store URI with a bucket (results_root = "s3://bucket/'
            'prefix", or gs://).'
        )
    if endpoint is None:
        return
    if scheme != "s3":
        raise ClusterConfigError(
            f"{where}: results_endpoint_url is for an S3-compatible server holding an s3:// "
            f"results_root, but results_root is {root!r}. Remove results_endpoint_url, or "
            'use results_root = "s3://bucket/prefix".'
        )
    if not re.match(r"https?://[^/]", endpoint):
        raise ClusterConfigError(
            f"{where}: results_endpoint_url = {endpoint!r} is not an http(s) URL; give the "
            'S3-compatible server\'s address, e.g. results_endpoint_url = "http://10.0.0.9:9000".'
        )


def _job_server_url(where: str, address: str) -> str:
    """``address`` as an http(s) URL of the job server: ``host:port`` gets ``http://``."""
    url = address.strip()
    if "://" not in url:
        url = f"http://{url}"
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        valid = False
    if not valid:
        raise ClusterConfigError(
            f"{where}: address = {address!r} is not a Ray job server address. Give the head's "
            'dashboard URL, e.g. address = "http://10.0.0.5:8265" (not a ray:// client or '
            "GCS address)."
        )
    return url.rstrip("/")


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
