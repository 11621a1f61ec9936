"""Which named clusters are online, and what they have free right now.

Memory is two numbers, because Ray has two: ``memory`` is Ray's logical resource, which radas
reserves for each trial in proportion to its CPUs (``radas.resources``), so while trials run
it is mostly reserved; what is *unreserved* is what new trials can still ask for. The node's
*physically free* RAM (what its operating system can still give, as each node's dashboard
agent measures it) is what the running trials leave unused. "0.0/15.6 GiB" while trials run
meant the first, read as if it were the second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import requests

from radas.clusters.config import ClusterConfig, config_path, load_clusters
from radas.clusters.shape import ClusterShape, Sizing, from_reports, sizing
from radas.clusters.shape_record import recorded
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
    # its node types, running and launching now (radas.clusters.shape); None when offline
    shape: ClusterShape | None = None
    types_read_at: float | None = None  # when a radas job last read the types declared

    @property
    def name(self) -> str:
        return self.config.name

    def sizing(self) -> Sizing:
        """What trials on this cluster are sized from: its largest node type, with the
        config's overrides."""
        where = f"cluster:{self.name}"
        return sizing(self.shape or ClusterShape(()), self.config.overrides(), where)

    @property
    def gpu_per_cpu(self) -> float:
        """GPUs that come with one CPU of a trial (``cpu_per_trial * gpu_per_cpu`` GPUs)."""
        capacity = self.sizing().capacity
        return capacity.gpus / capacity.cpus if capacity and capacity.cpus else 0.0

    def describe(self) -> str:
        c = self.config
        lines = [f"{c.name}  [status: {'online' if self.online else 'offline'}]  {c.address}"]
        if c.description:
            lines.append(f"  {c.description}")
        if c.when_to_use:
            lines.append(f"  When to use: {c.when_to_use}")
        if not self.online:
            lines.append(f"  Offline: {self.problem}")
            lines.append(f"  Use run_with='cluster:{c.name}'.")
            return "\n".join(lines)
        lines.append(f"  Free now: {self._free_text()} on {self.nodes} node(s)")
        shape = self.shape or ClusterShape(())
        if shape.autoscaling:
            lines.append(f"  Node types ({self._types_source()}):")
            lines += [f"    {node_type.describe()}" for node_type in shape.node_types]
            lines += [f"  Launch failed: {failure}" for failure in shape.failures]
        capacity = self.sizing().capacity
        origin = "set in the radas config" if c.overrides().any() else "its largest node type"
        sized = (
            f"{capacity.describe()} ({origin}); gpu_per_cpu={self.gpu_per_cpu:g}"
            if capacity
            else "not known until a radas job reads the node types on the head"
        )
        lines.append(f"  Trials sized from: {sized}. Use run_with='cluster:{c.name}'.")
        return "\n".join(lines)

    def _types_source(self) -> str:
        if self.types_read_at is None:
            return (
                "the autoscaler's report; each type's resources and bounds are read by the "
                "first radas job"
            )
        age = max(0.0, time.time() - self.types_read_at)
        return f"declared types as the last radas job read them {_age(age)} ago, counts now"

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
                    "autoscaling": bool(s.shape and s.shape.autoscaling),
                    "launching_nodes": sum(s.shape.launching().values()) if s.shape else 0,
                    "node_types": _types_text(s),
                    "gpu_per_cpu": s.gpu_per_cpu if s.online else None,
                    "description": s.config.description,
                    "when_to_use": s.config.when_to_use,
                }
                for s in self.clusters
            ]
        )

    def node_types(self) -> pd.DataFrame:
        """One row per node type of each online cluster: running, launching, max_workers
        (None: no bound known) and its resources each."""
        rows = []
        for status in self.clusters:
            for node_type in status.shape.node_types if status.shape else ():
                rows.append(
                    {
                        "cluster": status.name,
                        "node_type": node_type.name,
                        "running": node_type.running,
                        "launching": node_type.launching,
                        "min_workers": node_type.min_workers,
                        "max_workers": node_type.max_workers,
                        "cpus": node_type.cpus,
                        "gpus": node_type.gpus,
                        "memory_gb": _gb(node_type.resources.get("memory")),
                    }
                )
        return pd.DataFrame(rows)


def _types_text(status: ClusterStatus) -> str | None:
    if status.shape is None or not status.shape.autoscaling:
        return None
    return "; ".join(node_type.describe() for node_type in status.shape.node_types)


def get_cluster_availability(timeout_s: float = 3.0) -> AvailabilityReport:
    """Every configured cluster, online or offline, with its live free resources.

    >>> print(get_cluster_availability())  # doctest: +SKIP
    """
    return AvailabilityReport([probe(c, timeout_s) for c in load_clusters().values()])


def probe(cluster: ClusterConfig, timeout_s: float = 3.0) -> ClusterStatus:
    # here, not at the top: radas.clusters (which imports this module) is not yet
    # initialized when the job client's module imports radas.clusters.config
    from radas.backends.job_client import translated

    try:
        token = cluster.resolve_token()
        # the job server's error table (backends._job_client), as for every call radas makes
        with translated(cluster, "reading its nodes and resources", timeout_s, bool(token)):
            nodes = _get(cluster.address, "/nodes?view=summary", token, timeout_s)["summary"]
            status = _get(cluster.address, "/api/cluster_status", token, timeout_s)
    except ClusterError as err:
        return ClusterStatus(cluster, online=False, problem=str(err))
    alive = [node for node in nodes if node.get("raylet", {}).get("state") == "ALIVE"]
    shape, read_at = cluster_shape(cluster, alive, status)
    total: dict[str, float] = {}
    for node in alive:
        for key, value in node["raylet"].get("resourcesTotal", {}).items():
            total[key] = total.get(key, 0.0) + value
    if "memory" in total:
        total["memory"] = _memory_per_machine(alive)
    usage = (status.get("clusterStatus") or {}).get("loadMetricsReport", {}).get("usage", {})
    # Ray's monitor reports usage every few seconds; until its first report, free is unknown.
    free = {key: max(0.0, total[key] - usage[key][0]) for key in total if key in usage}
    return ClusterStatus(
        cluster,
        online=True,
        nodes=len(alive),
        total=total,
        free=free,
        physical_memory=_physical_memory(alive),
        shape=shape,
        types_read_at=read_at,
    )


def cluster_shape(
    cluster: ClusterConfig, alive: list[dict[str, Any]], status: dict[str, Any]
) -> tuple[ClusterShape, float | None]:
    """The cluster's shape as the client can see it: the nodes alive and the autoscaler's
    report (both from the job server), with the node types the last radas job on it read
    (``shape.recorded``: the job server does not serve the autoscaler's config). Returns the
    shape and when the types were read (None: not yet)."""
    nodes = [
        {
            "resources": node["raylet"].get("resourcesTotal", {}),
            "node_id": node["raylet"].get("nodeId"),
            "ip": node.get("ip"),
        }
        for node in alive
    ]
    report = status.get("clusterStatus")
    if not (report or {}).get("autoscalerReport"):
        return from_reports(nodes, None, None), None
    previous = recorded(cluster.results_root)
    if previous is None or not previous[0].autoscaling or not previous[0].declared_types():
        return from_reports(nodes, report, None), None
    shape, read_at = previous
    return from_reports(nodes, report, shape.declared_types(), shape.source), read_at


def _memory_per_machine(nodes: list[dict[str, Any]]) -> float:
    """Ray's ``memory`` resource of the nodes, at most each machine's RAM: every node started
    on one machine claims a share of that machine's RAM as if it were alone (three nodes on a
    23.5 GiB machine declared 64 GiB). Nodes whose agent has not reported the RAM yet count
    as declared."""
    declared: dict[str, float] = {}
    ram: dict[str, float] = {}
    for index, node in enumerate(nodes):
        machine = str(node.get("hostname") or node.get("ip") or f"node {index}")
        memory = node.get("raylet", {}).get("resourcesTotal", {}).get("memory", 0.0)
        declared[machine] = declared.get(machine, 0.0) + memory
        mem = node.get("mem") or []
        if len(mem) >= 2:
            ram[machine] = float(mem[0])
    return float(sum(min(memory, ram.get(m, memory)) for m, memory in declared.items()))


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


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f}"


def _gb(value: float | None) -> float | None:
    return None if value is None else round(value / 2**30, 2)


def alive_nodes(address: str, token: str | None, timeout_s: float = 3.0) -> int:
    """Nodes alive at ``address``; 0 while its dashboard does not answer (a starting head)."""
    from radas.backends.job_client import HTTPStatusError

    try:
        nodes = _get(address, "/nodes?view=summary", token, timeout_s)["summary"]
    except (ClusterError, HTTPStatusError, requests.RequestException, ValueError):
        return 0
    return sum(1 for node in nodes if node.get("raylet", {}).get("state") == "ALIVE")


def _get(address: str, path: str, token: str | None, timeout_s: float) -> Any:
    """The ``data`` of the dashboard's answer to GET ``path``. What fails in transport, an
    error status or an answer that is not JSON is raised as is, for ``translated``. The whole
    request ends within ``timeout_s`` (a server trickling its answer is cut there)."""
    from radas.backends.job_client import HTTPStatusError
    from radas.ray_compat.job_sdk import RequestDeadline

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with RequestDeadline(timeout_s, f"GET {path}") as deadline:
        response = requests.get(
            f"{address.rstrip('/')}{path}", headers=headers, timeout=timeout_s, hooks=deadline.hooks
        )
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
