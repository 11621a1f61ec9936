"""What a cluster's autoscaler and platform published: its status (autoscaler v1 and v2), the
node types, the autoscaler's config file. Read, never patched: on a Ray whose names differ
(``targets.SHAPE_TARGETS``) the readers answer None."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def autoscaler_status() -> dict[str, Any] | None:
    """What Ray's autoscaler (v1, the cluster launcher's and KubeRay's default) last published
    in the connected cluster's GCS: ``{"autoscaler_report": {...}, "load_metrics_report":
    {...}}`` (``ray/autoscaler/_private/monitor.py``, ``Monitor._run``, key
    ``ray_constants.DEBUG_AUTOSCALING_STATUS``; the dashboard serves the same JSON at
    ``/api/cluster_status``); None on a cluster without an autoscaler."""
    import json

    from ray._private import ray_constants
    from ray.experimental import internal_kv

    try:
        raw = internal_kv._internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        if raw:
            return json.loads(raw)
        return _autoscaler_v2_status()
    except Exception:  # an old or damaged record reads as "no autoscaler", never as a crash
        return None


def _autoscaler_v2_status() -> dict[str, Any] | None:
    """Autoscaler v2 (KubeRay's default on recent Ray) publishes no v1 record: its status
    comes from the GCS (``ray.autoscaler.v2.sdk.get_cluster_status``), in v1's shape here."""
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_status
    from ray.autoscaler.v2.utils import is_autoscaler_v2

    if not is_autoscaler_v2(fetch_from_server=True):
        return None
    return v2_status_as_v1(get_cluster_status(ray.get_runtime_context().gcs_address))


def v2_status_as_v1(status: Any) -> dict[str, Any]:
    """A v2 ``ClusterStatus`` (``ray/autoscaler/v2/schema.py``) as v1's ``autoscaler_report``."""

    def by_type(items: list[Any], count: Callable[[Any], int] = lambda _: 1) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in items:
            counts[item.ray_node_type_name] = counts.get(item.ray_node_type_name, 0) + count(item)
        return counts

    launching = by_type(status.pending_launches, lambda request: request.count)
    for name, count in by_type(status.pending_nodes).items():
        launching[name] = launching.get(name, 0) + count
    failed = {
        request.ray_node_type_name: {
            "node_type": request.ray_node_type_name,
            "is_available": False,
            "unavailable_node_information": {
                "category": "LaunchFailed",
                "description": request.details or "the launch failed",
            },
        }
        for request in status.failed_launches
    }
    return {
        "autoscaler_report": {
            "active_nodes": by_type(status.active_nodes),
            "idle_nodes": by_type(status.idle_nodes),
            "pending_launches": launching,
            "node_availability_summary": {"node_availabilities": failed},
            "node_type_mapping": {
                node.node_id: node.ray_node_type_name
                for node in [*status.active_nodes, *status.idle_nodes]
                if node.node_id
            },
        }
    }


def published_node_types() -> list[dict[str, Any]] | None:
    """The node types (name, resources, min and max count) a platform published in the GCS
    (``ray._private.state.GlobalState.get_cluster_config``, KubeRay's and autoscaler v2's
    ``ClusterConfig``); None when nothing was published (Ray's v1 autoscaler does not)."""
    from ray._private.state import state

    try:
        config = state.get_cluster_config()
    except Exception:
        return None
    if config is None or not config.node_group_configs:
        return None
    return [
        {
            "name": group.name,
            "resources": {key: float(value) for key, value in group.resources.items()},
            "min_workers": int(group.min_count),
            "max_workers": None if group.max_count < 0 else int(group.max_count),
        }
        for group in config.node_group_configs
    ]


def autoscaler_config_file(gcs_address: str) -> str | None:
    """The autoscaling config (YAML) of the v1 autoscaler serving ``gcs_address``, when it runs
    on this machine (a job's driver runs on the head): the ``--autoscaling-config`` of Ray's
    monitor process (``ray/autoscaler/_private/monitor.py``, started by ``ray start --head
    --autoscaling-config``; ``ray up`` passes ``~/ray_bootstrap_config.yaml``)."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        command = process.info.get("cmdline") or []
        if not any(part.endswith("autoscaler/_private/monitor.py") for part in command):
            continue
        options = dict(
            part.split("=", 1) for part in command if part.startswith("--") and "=" in part
        )
        if options.get("--gcs-address") == gcs_address and options.get("--autoscaling-config"):
            return options["--autoscaling-config"]
    return None
