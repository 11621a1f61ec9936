"""The node provider of the autoscaling test bed (tests/support/autoscaling_bed.py), loaded by Ray's
autoscaler (its monitor process, on the head) as an ``external`` provider.

It is Ray's own fake multi-node provider (``fake_multinode``: every launched node is a real set
of Ray processes on this machine) with what a real machine has and Ray's fake lacks:

- each node binds to 127.0.0.1 and joins the head's GCS on its free port (Ray's fake uses this
  machine's outward address and port 6379);
- each node has a temp folder of its own, as a machine has its own disk (with the head's
  folder shared, a node's start or end removed a job's working directory under a running
  driver: ``FileNotFoundError`` from ``os.getcwd()``);
- every process of every node is written to ``state_file`` (one JSON line a node), so the bed
  ends them all and a test can take a node away as a cloud provider would (preemption);
- a launch fails with a provider error (``NodeLaunchException``, as Ray's AWS provider raises
  for a quota or capacity error) while the file ``fail_launch_file`` exists, and takes
  the seconds written in ``launch_delay_file`` first while that exists (a cloud machine boots
  for a minute; a launch here takes a few seconds).

Only Ray is imported here: the monitor process has nothing of radas.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import ray
import ray._private.ray_constants as ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.node_launch_exception import NodeLaunchException
from ray.autoscaler.tags import (
    NODE_KIND_WORKER,
    STATUS_UP_TO_DATE,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)


class LoopbackFakeProvider(FakeMultiNodeProvider):
    def __init__(self, provider_config, cluster_name):
        super().__init__(provider_config, cluster_name)
        self._state_file = Path(provider_config["state_file"])
        self._temp_root = Path(provider_config["temp_root"])
        self._fail_file = Path(provider_config["fail_launch_file"])
        self._delay_file = Path(provider_config["launch_delay_file"])

    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        if self._fail_file.exists():  # as Ray's AWS provider reports a refused launch
            raise NodeLaunchException(
                "QuotaExceeded", self._fail_file.read_text().strip() or "launch refused", None
            )
        if self._delay_file.exists():
            time.sleep(float(self._delay_file.read_text().strip() or 0))
        resources = copy.deepcopy(resources)
        with self.lock:
            node_type = tags[TAG_RAY_USER_NODE_TYPE]
            next_id = self._next_hex_node_id()
            temp_dir = self._temp_root / next_id[-5:]
            ray_params = ray._private.parameter.RayParams(
                node_ip_address="127.0.0.1",
                min_worker_port=0,
                max_worker_port=0,
                dashboard_port=None,
                dashboard_agent_listen_port=0,
                metrics_agent_port=0,
                metrics_export_port=0,
                runtime_env_agent_port=0,
                num_cpus=resources.pop("CPU", 0),
                num_gpus=resources.pop("GPU", 0),
                object_store_memory=resources.pop("object_store_memory", None),
                resources=resources,
                labels=labels,
                redis_address=self._gcs_address,
                gcs_address=self._gcs_address,
                temp_dir=str(temp_dir),
                env_vars={
                    "RAY_OVERRIDE_NODE_ID_FOR_TESTING": next_id,
                    "RAY_CLOUD_INSTANCE_ID": next_id,
                    "RAY_NODE_TYPE_NAME": node_type,
                    ray_constants.RESOURCES_ENVIRONMENT_VARIABLE: json.dumps(resources),
                    ray_constants.LABELS_ENVIRONMENT_VARIABLE: json.dumps(labels),
                },
            )
            node = ray._private.node.Node(
                ray_params, head=False, shutdown_at_exit=False, spawn_reaper=False
            )
            all_tags = {
                TAG_RAY_NODE_KIND: NODE_KIND_WORKER,
                TAG_RAY_USER_NODE_TYPE: node_type,
                TAG_RAY_NODE_NAME: next_id,
                TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE,
            }
            all_tags.update(tags)
            self._nodes[next_id] = {"tags": all_tags, "node": node}
            pids = [
                info.process.pid
                for infos in node.all_processes.values()
                for info in infos
                if info.process is not None
            ]
            line = {"node_id": next_id, "type": node_type, "pids": pids, "temp_dir": str(temp_dir)}
            with self._state_file.open("a") as stream:
                stream.write(json.dumps(line) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
