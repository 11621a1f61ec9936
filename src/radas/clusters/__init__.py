"""Named Ray clusters: the config file, availability, and a real local cluster helper.

>>> from radas.clusters import get_cluster_availability
>>> print(get_cluster_availability())  # doctest: +SKIP
"""

from radas.clusters.availability import AvailabilityReport, ClusterStatus, get_cluster_availability
from radas.clusters.config import (
    ClusterConfig,
    config_path,
    get_cluster,
    load_clusters,
    register_cluster,
    unregister_cluster,
)
from radas.clusters.local import LocalCluster, find_local_cluster, start_local_cluster
from radas.clusters.local_stop import stop_local_cluster

__all__ = [
    "AvailabilityReport",
    "ClusterConfig",
    "ClusterStatus",
    "LocalCluster",
    "config_path",
    "find_local_cluster",
    "get_cluster",
    "get_cluster_availability",
    "load_clusters",
    "register_cluster",
    "start_local_cluster",
    "stop_local_cluster",
    "unregister_cluster",
]
