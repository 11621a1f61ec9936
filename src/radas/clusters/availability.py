"""Which named clusters are online, and what they have free right now.

Memory is two numbers, because Ray has two: ``memory`` is Ray's logical resource, which radas
reserves for each trial in proportion to its CPUs (``radas.resources``), so while trials run
it is mostly reserved; what is *unreserved* is what new trials can still ask for. The node's
*physically free* RAM (what its operating system can still give, as each node's dashboard
agent measures it) is what the running trials leave unused. "0.0/15.6 GiB" while trials run
meant the first, read as if it were the second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import requests

from radas.clusters.config import ClusterConfig, config_path, load_clusters
from radas.errors import ClusterError


@dataclass
class ClusterStatus:
    """One cluster's configuration plus what its job server says now."""

    config: ClusterConfig
    online: bool
    nodes: int = 0
    total: dict[str, float] = field(default_factory=dict)
    free: dict[str, float] = field(default_factory=dict)
    problem: str | None = None
    # RAM of the machines the nodes run on, in bytes: {"total": ..., "available": ...}
    physical_memory: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def describe(self) -> str:
        c = self.config
        lines = [f"{c.name}  [status: {'online' if self.online else 'offline'}]  {c.address}"]
        if c.description:
            lines.append(f"  {c.description}")
        if c.when_to_use:
            lines.append(f"  When to use: {c.when_to_use}")
        if self.online:
            lines.append(f"  Free now: {self._free_text()} on {self.nodes} node(s)")
        else:
            lines.append(f"  Offline: {self.problem}")
        lines.append(
            f"  Per node: {c.cpus_per_node:g} CPUs, {c.gpus_per_node:g} GPUs, "
            f"{c.memory_per_node_gb:g} GiB; gpu_per_cpu={c.gpu_per_cpu:g}. "
            f"Use run_with='cluster:{c.name}'."
        )
        return "\n".join(lines)

    def _free_text(self) -> str:
        if self.free:
            parts = [
                f"{self.free.get(key, 0):g}/{self.total.get(key, 0):g} {label}"
                for key, label in (("CPU", "CPUs"), ("GPU", "GPUs"))
            ]
            if "memory" in self.total:
                parts.append(
                    f"memory {_gib(self.free.get('memory', 0))} of "
                    f"{_gib(self.total['memory'])} GiB unreserved for trials"
                )
        else:  # Ray's monitor reports usage every few seconds
            parts = [f"not reported yet ({self.total.get('CPU', 0):g} CPUs in total)"]
        if self.physical_memory:
            parts.append(
                f"{_gib(self.physical_memory['available'])} of "
                f"{_gib(self.physical_memory['total'])} GiB RAM physically free"
            )
        return ", ".join(parts)


@dataclass
class AvailabilityReport:
    """``str(report)`` is the readable report; ``.clusters`` and ``to_dataframe()`` the data."""

    clusters: list[ClusterStatus]

    def __str__(self) -> str:
        if not self.clusters:
            return (
                f"No clusters configured in {config_path()}. Add [clusters.<name>] tables "
                "there, or start one on this machine with `radas cluster up <name>`."
            )
        header = f"Ray clusters (config: {config_path()})"
        return "\n\n".join([header, *(status.describe() for status in self.clusters)])

    def __getitem__(self, name: str) -> ClusterStatus:
        for status in self.clusters:
            if status.name == name:
                return status
        raise KeyError(name)

    def to_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "cluster": s.name,
                    "status": "online" if s.online else "offline",
                    "address": s.config.address,
                    "nodes": s.nodes,
                    "free_cpus": s.free.get("CPU"),
                    "total_cpus": s.total.get("CPU"),
                    "free_gpus": s.free.get("GPU"),
                    "total_gpus": s.total.get("GPU"),
                    "unreserved_memory_gb": _gb(s.free.get("memory")),
                    "total_memory_gb": _gb(s.total.get("memory")),
                    "free_ram_gb": _gb(s.physical_memory.get("available")),
                    "total_ram_gb": _gb(s.physical_memory.get("total")),
                    "description": s.config.description,
                    "when_to_use": s.config.when_to_use,
                }
                for s in self.clusters
            ]
        )


def get_cluster_availability(timeout_s: float = 3.0) -> AvailabilityReport:
    """Every configured cluster, online or offline, with its live free resources.

    >>> print(get_cluster_availability())  # doctest: +SKIP
    """
    return AvailabilityReport([probe(c, timeout_s) for c in load_clusters().values()])


def probe(cluster: ClusterConfig, timeout_s: float = 3.0) -> ClusterStatus:
    # here, not at the top: radas.clusters (which imports this module) is not yet
    # initialized when the job client's module imports radas.clusters.config
    from radas.backends._job_client import translated

    try:
        token = cluster.resolve_token()
        # the job server's error table (backends._job_client), as for every call radas makes
        with translated(cluster, "reading its nodes and resources", timeout_s, bool(token)):
            nodes = _get(cluster.address, "/nodes?view=summary", token, timeout_s)["summary"]
            status = _get(cluster.address, "/api/cluster_status", token, timeout_s)
    except ClusterError as err:
        return ClusterStatus(cluster, online=False, problem=str(err))
    alive = [node for node in nodes if node.get("raylet", {}).get("state") == "ALIVE"]
    total: dict[str, float] = {}
    for node in alive:
        for key, value in node["raylet"].get("resourcesTotal", {}).items():
            total[key] = total.get(key, 0.0) + value
    usage = (status.get("clusterStatus") or {}).get("loadMetricsReport", {}).get("usage", {})
    # Ray's monitor reports usage every few seconds; until its first report, free is unknown.
    free = {key: total[key] - usage[key][0] for key in total if key in usage}
    return ClusterStatus(
        cluster,
        online=True,
        nodes=len(alive),
        total=total,
        free=free,
        physical_memory=_physical_memory(alive),
    )


def _physical_memory(nodes: list[dict[str, Any]]) -> dict[str, float]:
    """RAM total and available over the machines the nodes run on (a machine holding
    several nodes counted once); empty until every node's agent has reported it."""
    machines: dict[str, list[Any]] = {}
    for node in nodes:
        mem = node.get("mem") or []
        if len(mem) < 2:
            return {}
        machines[str(node.get("hostname") or node.get("ip") or len(machines))] = mem
    return {
        "total": float(sum(mem[0] for mem in machines.values())),
        "available": float(sum(mem[1] for mem in machines.values())),
    }


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f}"


def _gb(value: float | None) -> float | None:
    return None if value is None else round(value / 2**30, 2)


def alive_nodes(address: str, token: str | None, timeout_s: float = 3.0) -> int:
    """Nodes alive at ``address``; 0 while its dashboard does not answer (a starting head)."""
    from radas.backends._job_client import HTTPStatusError

    try:
        nodes = _get(address, "/nodes?view=summary", token, timeout_s)["summary"]
    except (ClusterError, HTTPStatusError, requests.RequestException, ValueError):
        return 0
    return sum(1 for node in nodes if node.get("raylet", {}).get("state") == "ALIVE")


def _get(address: str, path: str, token: str | None, timeout_s: float) -> Any:
    """The ``data`` of the dashboard's answer to GET ``path``. What fails in transport, an
    error status or an answer that is not JSON is raised as is, for ``translated``."""
    from radas.backends._job_client import HTTPStatusError

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(f"{address.rstrip('/')}{path}", headers=headers, timeout=timeout_s)
    if response.status_code != 200:
        raise HTTPStatusError(response.status_code, response.text)
    body = response.json()
    try:
        return body["data"]
    except (KeyError, TypeError) as err:
        raise ClusterError(
            f"{address} answered something other than Ray: it is not a Ray job server "
            "(dashboard) address"
        ) from err
