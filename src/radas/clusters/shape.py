"""A cluster's shape: the kinds of nodes it has or can launch, and what is launching now.

A cluster from Ray's cluster launcher (``ray up``) or KubeRay scales: a small head (often 0
CPUs), worker *node types* that start at ``min_workers`` (often 0) and grow to
``max_workers`` when trials ask for them. So radas sizes trials from the largest node *type*,
not from the nodes alive now (before the first trial there may be none), refuses a request
only when no type can hold it, and says what it waits for while nodes launch. A cluster
without an autoscaler has the nodes alive now, one "type" per distinct size, as before.

Where the types come from, first found wins:

1. the node types a platform published in the GCS (KubeRay, autoscaler v2);
2. the autoscaling config of Ray's v1 autoscaler on the head (the driver of a radas job runs
   there); its types' ``resources`` as declared (give them: a type with none declared is known
   only once a node of it runs);
3. the nodes alive now (no autoscaler).

The autoscaler's own report (running, launching, failed launches per type) comes with every
read. Everything Ray-internal is read through ``radas.ray_compat.autoscaler``; here are plain data.

The config's ``cpus_per_node`` / ``gpus_per_node`` / ``memory_per_node_gb`` override what the
cluster says (``Overrides``); radas says so when the two disagree.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from radas.errors import ResourceRequestError
from radas.resources import NodeCapacity, check_fits, trial_resources

# a node type of Ray's read-only provider (one per node), as Ray names it and as the dashboard
# spells it in camelCase
_READONLY_TYPE = re.compile(r"node_?[0-9a-fA-F]{56}")
OVERRIDES_ENV = "RADAS_NODE_OVERRIDES"  # the config's per-node numbers, for the job's driver


@dataclass(frozen=True)
class NodeType:
    """One kind of node: its resources (Ray's names: CPU, GPU, memory in bytes, custom ones),
    how many run and launch now, and the bounds the autoscaler keeps (None: no bound known)."""

    name: str
    resources: dict[str, float]
    running: int = 0
    launching: int = 0
    min_workers: int = 0
    max_workers: int | None = None

    @property
    def cpus(self) -> float:
        return float(self.resources.get("CPU", 0.0))

    @property
    def gpus(self) -> float:
        return float(self.resources.get("GPU", 0.0))

    @property
    def can_exist(self) -> bool:
        """Whether a node of this type runs or can be launched."""
        return self.running > 0 or self.launching > 0 or (self.max_workers or 0) > 0

    def capacity(self) -> NodeCapacity:
        return NodeCapacity(self.cpus, self.gpus, float(self.resources.get("memory", 0.0)))

    def holds(self, request: dict[str, float]) -> bool:
        """Whether one node of this type can hold a trial asking for ``request`` (Ray's
        resource names). Memory counts only where the type's memory is known."""
        for name, amount in request.items():
            if name == "memory" and "memory" not in self.resources:
                continue
            if amount > self.resources.get(name, 0.0) + 1e-9:
                return False
        return True

    def describe(self) -> str:
        """``cpu2: 1 running, 1 launching, up to 2 (2 CPUs, 0 GPUs each)``"""
        counts = [f"{self.running} running"]
        if self.launching:
            counts.append(f"{self.launching} launching")
        if self.max_workers is not None and (self.max_workers or not self.running):
            counts.append(f"up to {self.max_workers}")
        return f"{self.name}: {', '.join(counts)} ({_resources_text(self.resources)} each)"


@dataclass(frozen=True)
class ClusterShape:
    """The node types of a cluster and what its autoscaler reports now.

    >>> shape = ClusterShape(
    ...     (NodeType("head", {"CPU": 0}, running=1), NodeType("cpu2", {"CPU": 2}, max_workers=2)),
    ...     autoscaling=True,
    ... )
    >>> shape.largest()
    NodeCapacity(cpus=2.0, gpus=0.0, memory_bytes=0.0)
    """

    node_types: tuple[NodeType, ...]
    autoscaling: bool = False
    failures: tuple[str, ...] = ()  # launch failures the autoscaler reported, newest last
    source: str = "the nodes alive now"

    def usable(self) -> list[NodeType]:
        """The types trials can run on: with CPUs, running or allowed to launch."""
        return [t for t in self.node_types if t.can_exist and t.cpus > 0]

    def largest_type(self) -> NodeType | None:
        """The type with the most CPUs, then GPUs; None when no type is known."""
        usable = self.usable()
        if not usable:
            return None
        return max(usable, key=lambda t: (t.cpus, t.gpus))

    def largest(self) -> NodeCapacity | None:
        """The largest node type's capacity, with the least memory among the types of that
        size (machines of one kind differ a little in what Ray measures)."""
        top = self.largest_type()
        if top is None:
            return None
        same = [t for t in self.usable() if (t.cpus, t.gpus) == (top.cpus, top.gpus)]
        memories = [t.resources["memory"] for t in same if "memory" in t.resources]
        return NodeCapacity(top.cpus, top.gpus, float(min(memories)) if memories else 0.0)

    def check_request(self, request: dict[str, float], where: str) -> None:
        """Refuse a trial request that no node type can hold, naming the request and the types
        (Ray would keep such a trial pending for ever). ``request`` in radas's names (cpu,
        gpu, memory: ``resources.trial_resources``)."""
        request = _ray_names(request)
        if not self.usable() or any(t.holds(request) for t in self.usable()):
            return
        raise ResourceRequestError(
            f"Each trial would ask for {_resources_text(request)}, and no node "
            f"type of {where} can hold that: {self.types_text()}. Lower cpu_per_trial, or "
            "use a cluster with bigger nodes (`radas clusters` lists them)."
        )

    def types_text(self) -> str:
        return "; ".join(t.describe() for t in self.node_types if t.resources or t.running)

    def launching(self) -> dict[str, int]:
        return {t.name: t.launching for t in self.node_types if t.launching}

    def waiting_text(self) -> str | None:
        """What pending trials wait for now, for the progress line; None when nothing."""
        launching = self.launching()
        failed = (
            f"the autoscaler's last launch failed: {self.failures[-1]}" if self.failures else ""
        )
        if launching:
            nodes = ", ".join(f"{count} × {name}" for name, count in launching.items())
            return f"waiting for {nodes} the autoscaler is launching" + (
                f" ({failed})" if failed else ""
            )
        return failed or None

    def declared_types(self) -> list[dict[str, Any]] | None:
        """The types whose resources are known, as ``from_reports`` takes them declared;
        None when there are none (the client adds the autoscaler's counts of now)."""
        keys = ("name", "resources", "min_workers", "max_workers")
        declared = [{key: getattr(t, key) for key in keys} for t in self.node_types if t.resources]
        return declared or None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterShape:
        types = tuple(NodeType(**t) for t in data["node_types"])
        rest: dict[str, Any] = {
            k: tuple(v) if k == "failures" else v for k, v in data.items() if k != "node_types"
        }
        return cls(types, **rest)


@dataclass(frozen=True)
class Overrides:
    """The per-node numbers the radas config gives for a cluster (None: not given)."""

    cpus: float | None = None
    gpus: float | None = None
    memory_gb: float | None = None

    def any(self) -> bool:
        return any(value is not None for value in (self.cpus, self.gpus, self.memory_gb))

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Overrides:
        text = os.environ.get(OVERRIDES_ENV)
        return cls(**json.loads(text)) if text else cls()


@dataclass(frozen=True)
class Sizing:
    """The capacity trials are sized from, and a note saying where it came from when that is
    worth saying (an autoscaling cluster, or the config disagreeing with the cluster)."""

    capacity: NodeCapacity | None  # None: not known (an autoscaler whose types were not read)
    note: str | None = None
    shape: ClusterShape = field(default_factory=lambda: ClusterShape(()))

    def check(self, cpu_per_trial: float, where: str) -> None:
        """Refuse ``cpu_per_trial`` when no node type can hold the trial it makes (its CPUs
        above the largest type's, or its GPU share or memory on no type); nothing to check
        while the capacity is not known."""
        if self.capacity is None:
            return
        types = self.shape.types_text() if self.shape.autoscaling else ""
        check_fits(cpu_per_trial, self.capacity, where=where, node_types=types)
        self.shape.check_request(trial_resources(cpu_per_trial, self.capacity), where)


def sizing(shape: ClusterShape, overrides: Overrides, where: str) -> Sizing:
    """Trials are sized from the largest node type; the config's numbers, where given,
    replace the cluster's (and radas says so when they differ)."""
    measured = shape.largest()
    if measured is None and overrides.cpus is None:
        if not shape.autoscaling:
            return Sizing(None, None, shape)
        return Sizing(
            None,
            f"radas could not read the node types of {where}'s autoscaler (only its report: "
            f"{shape.types_text() or 'no node yet'}); each trial asks for cpu_per_trial CPUs "
            "and no GPU. Set cpus_per_node / gpus_per_node / memory_per_node_gb in the radas "
            "config to size trials from a node type.",
            shape,
        )
    base = measured or NodeCapacity(cpus=overrides.cpus or 1.0)
    capacity = NodeCapacity(
        cpus=overrides.cpus if overrides.cpus is not None else base.cpus,
        gpus=overrides.gpus if overrides.gpus is not None else base.gpus,
        memory_bytes=(
            overrides.memory_gb * 2**30 if overrides.memory_gb is not None else base.memory_bytes
        ),
    )
    notes = []
    top = shape.largest_type()
    if shape.autoscaling and top is not None:
        notes.append(
            f"{where} scales with its autoscaler; trials are sized from its largest node type, "
            f"{top.describe()}"
        )
    if measured is not None and overrides.any() and capacity != measured:
        notes.append(
            f"the radas config says {capacity.describe()} per node for {where}, the cluster's "
            f"largest node has {measured.describe()} ({shape.source}): radas uses the config's "
            "numbers (cpus_per_node / gpus_per_node / memory_per_node_gb are overrides; remove "
            "them to use the cluster's)"
        )
    return Sizing(capacity, "; ".join(notes) or None, shape)


# --- reading the shape --------------------------------------------------------------------


def from_reports(
    alive_nodes: list[dict[str, Any]],
    status: dict[str, Any] | None,
    declared_types: list[dict[str, Any]] | None,
    source: str = "",
) -> ClusterShape:
    """The shape from Ray's reports.

    ``alive_nodes``: ``[{"resources": {...}, "node_id": ..., "ip": ...}]``; ``status``: the
    autoscaler's published status (``autoscaler_report`` / ``load_metrics_report``, in Ray's
    snake_case or the dashboard's camelCase), None without an autoscaler;
    ``declared_types``: ``[{"name", "resources", "min_workers", "max_workers"}]`` or None.
    """
    report = _key(status or {}, "autoscaler_report") or {}
    if not declared_types and not _launches_nodes(report):
        return ClusterShape(_types_of_alive(alive_nodes))
    known = {declared["name"] for declared in declared_types or []}
    running = _by_type_name(_key(report, "active_nodes") or {}, known)
    for name, count in _by_type_name(_key(report, "idle_nodes") or {}, known).items():
        running[name] = max(running.get(name, 0), count)
    launching = _by_type_name(_key(report, "pending_launches") or {}, known)
    for pending in _key(report, "pending_nodes") or []:
        if len(pending) >= 2:
            launching[pending[1]] = launching.get(pending[1], 0) + 1
    measured = _resources_by_type(alive_nodes, _key(report, "node_type_mapping") or {})
    types: dict[str, NodeType] = {}
    for declared in declared_types or []:
        name = declared["name"]
        resources = {k: float(v) for k, v in (declared.get("resources") or {}).items()}
        if "memory" in measured.get(name, {}) and "memory" not in resources:
            resources["memory"] = measured[name]["memory"]
        types[name] = NodeType(
            name,
            resources,
            running=int(running.get(name, 0)),
            launching=int(launching.get(name, 0)),
            min_workers=int(declared.get("min_workers") or 0),
            max_workers=declared.get("max_workers"),
        )
    for name in {*running, *launching} - set(types):  # types the report names but no config
        types[name] = NodeType(
            name, {}, running=int(running.get(name, 0)), launching=int(launching.get(name, 0))
        )
    if not declared_types:  # each type's resources as its running nodes have them
        types = {
            name: NodeType(t.name, measured.get(name, {}), t.running, t.launching)
            for name, t in types.items()
        }
    return ClusterShape(
        tuple(types.values()),
        autoscaling=True,
        failures=tuple(_failures(report)),
        source=source or "the autoscaler's report",
    )


def _by_type_name(counts: dict[str, int], known: set[str]) -> dict[str, int]:
    """``counts`` keyed by the node types' own names. The dashboard's JSON has every key in
    camelCase, type names included (``worker_gpu`` -> ``workerGpu``,
    ``ray.dashboard.utils.to_camel_case``); the types' own names come from their config."""
    camel = {_camel_case(name): name for name in known}
    return {name if name in known else camel.get(name, name): n for name, n in counts.items()}


def _camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _launches_nodes(report: dict[str, Any]) -> bool:
    """Whether the autoscaler's report comes from one that launches nodes. A head started
    without an autoscaling config runs Ray's monitor with a read-only provider, which reports
    each alive node as a type of its own, ``node_<node id>``
    (``ray.autoscaler._private.util.format_readonly_node_type``)."""
    names = {
        *(_key(report, "active_nodes") or {}),
        *(_key(report, "idle_nodes") or {}),
        *(_key(report, "pending_launches") or {}),
    }
    return bool(names) and not all(_READONLY_TYPE.fullmatch(name) for name in names)


def types_from_autoscaler_config(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The node types of a v1 autoscaling config (``available_node_types``); the head's
    type has ``max_workers`` 0 in Ray's config but runs one node."""
    head = config.get("head_node_type")
    return [
        {
            "name": name,
            "resources": dict(spec.get("resources") or {}),
            "min_workers": int(spec.get("min_workers") or 0),
            "max_workers": int(spec.get("max_workers", config.get("max_workers", 0)) or 0)
            if name != head
            else 0,
        }
        for name, spec in (config.get("available_node_types") or {}).items()
    ]


def from_ray() -> ClusterShape:
    """The connected cluster's shape, read in the driver (``ray.init`` done)."""
    import ray

    from radas.ray_compat.autoscaler import autoscaler_status, published_node_types

    alive = [
        {
            "resources": node["Resources"],
            "node_id": node["NodeID"],
            "ip": node["NodeManagerAddress"],
        }
        for node in ray.nodes()
        if node.get("Alive")
    ]
    status = autoscaler_status()
    declared = published_node_types()
    source = "the node types published in the cluster's GCS"
    if declared is None and _key(status or {}, "autoscaler_report"):
        declared, source = _declared_by_autoscaler_config()
    return from_reports(alive, status, declared, source)


def _declared_by_autoscaler_config() -> tuple[list[dict[str, Any]] | None, str]:
    import ray
    import yaml

    from radas.ray_compat.autoscaler import autoscaler_config_file

    path = autoscaler_config_file(ray.get_runtime_context().gcs_address)
    if path is None:
        return None, "the autoscaler's report"
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as stream:
            config = yaml.safe_load(stream) or {}
        return types_from_autoscaler_config(config), f"the autoscaler's config {path}"
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        return None, "the autoscaler's report"


def launch_status() -> ClusterShape | None:
    """What the connected cluster's autoscaler reports now (types by name only, no config
    read): for the progress line, every few seconds. None without an autoscaler."""
    from radas.ray_compat.autoscaler import autoscaler_status

    status = autoscaler_status()
    return None if status is None else from_reports([], status, None)


def current_largest_node() -> NodeCapacity | None:
    """The largest node type of the connected cluster, with the config's overrides; None
    when not known."""
    where = os.environ.get("RADAS_CLUSTER", "this machine")
    return sizing(from_ray(), Overrides.from_env(), where).capacity


def _types_of_alive(alive_nodes: list[dict[str, Any]]) -> tuple[NodeType, ...]:
    """One type per distinct (CPUs, GPUs) among the alive nodes, with their least memory."""
    groups: dict[tuple[float, float], list[dict[str, float]]] = {}
    for node in alive_nodes:
        resources = node["resources"]
        size = (resources.get("CPU", 0.0), resources.get("GPU", 0.0))
        groups.setdefault(size, []).append(resources)
    types = []
    for (cpus, gpus), members in groups.items():
        resources = {"CPU": cpus, "GPU": gpus}
        memories = [r["memory"] for r in members if "memory" in r]
        if memories:
            resources["memory"] = min(memories)
        name = f"{cpus:g}cpu" + (f"-{gpus:g}gpu" if gpus else "")
        types.append(NodeType(name, resources, running=len(members)))
    return tuple(types)


def _resources_by_type(
    alive_nodes: list[dict[str, Any]], mapping: dict[str, str]
) -> dict[str, dict[str, float]]:
    """The resources of each type's running nodes (the autoscaler maps node ids or addresses
    to types), with the least memory among them."""
    known: dict[str, dict[str, float]] = {}
    for node in alive_nodes:
        name = mapping.get(node.get("node_id") or "") or mapping.get(node.get("ip") or "")
        if not name:
            continue
        resources = {k: float(v) for k, v in node["resources"].items() if not k.startswith("node:")}
        if name in known and "memory" in known[name]:
            resources["memory"] = min(known[name]["memory"], resources.get("memory", math.inf))
        known[name] = resources
    return known


def _failures(report: dict[str, Any]) -> list[str]:
    texts = []
    availabilities = _key(_key(report, "node_availability_summary") or {}, "node_availabilities")
    for name, record in (availabilities or {}).items():
        if _key(record, "is_available") is False:
            info = _key(record, "unavailable_node_information") or {}
            reason = _key(info, "description") or _key(info, "category") or "failed"
            texts.append(f"{_key(record, 'node_type') or name}: {reason}")
    for failed in _key(report, "failed_nodes") or []:
        if len(failed) >= 2 and not any(t.startswith(f"{failed[1]}:") for t in texts):
            texts.append(f"{failed[1]}: a node failed to start")
    return texts


def _key(data: dict[str, Any], snake: str) -> Any:
    """``data[snake]``, or its camelCase spelling (the dashboard's JSON)."""
    if snake in data:
        return data[snake]
    head, *rest = snake.split("_")
    return data.get(head + "".join(part.title() for part in rest))


def _ray_names(request: dict[str, float]) -> dict[str, float]:
    """radas's request names (cpu, gpu, memory) as Ray's (CPU, GPU, memory)."""
    return {{"cpu": "CPU", "gpu": "GPU"}.get(key, key): value for key, value in request.items()}


def _resources_text(resources: dict[str, float]) -> str:
    parts = [f"{resources.get('CPU', 0):g} CPUs", f"{resources.get('GPU', 0):g} GPUs"]
    if resources.get("memory"):
        parts.append(f"{resources['memory'] / 2**30:.1f} GiB memory")
    hidden = {"CPU", "GPU", "memory", "object_store_memory", "objectStoreMemory"}
    parts += [
        f"{value:g} {name}"
        for name, value in resources.items()
        if name not in hidden and not name.startswith("node:")
    ]
    return ", ".join(parts)
