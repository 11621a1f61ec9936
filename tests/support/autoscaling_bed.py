"""A Ray cluster that scales from zero, on this machine: a real head running Ray's own autoscaler
(v1, the cluster launcher's) with the fake multi-node provider of
tests/support/fake_node_provider.py.

The head has 0 CPUs (as Ray and KubeRay recommend for a cloud head); worker types start at
``min_workers`` (0 by default) and the autoscaler launches real Ray nodes when trials ask for
them and removes them after ``idle_timeout_minutes``. Every process of the head and of every
node it launched belongs to the bed and ends with ``stop()`` (never ``ray stop``, never
``AutoscalingCluster.start()``: they end every Ray process on the machine).

Before a test uses it, ``prove()`` shows the bed works on its own, with Ray's plain API: a
1-CPU task makes the autoscaler launch a worker and runs there. A failing test after that is
radas's, not the bed's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from radas.clusters import local, node_processes
from radas.clusters.config import ClusterConfig, register_cluster
from radas.core.poll import wait_until

SUPPORT_DIR = Path(__file__).resolve().parent  # where Ray's monitor finds fake_node_provider
HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head's type


@dataclass
class NodeType:
    resources: dict[str, float]
    max_workers: int = 2
    min_workers: int = 0


@dataclass
class AutoscalingBed:
    name: str
    root: Path
    address: str
    gcs_address: str
    head: local.NodeProcess
    token_file: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.root / "nodes.jsonl"

    @property
    def fail_launch_file(self) -> Path:
        return self.root / "fail-launch"

    @property
    def launch_delay_file(self) -> Path:
        return self.root / "launch-delay"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def launched(self) -> list[dict[str, Any]]:
        """Every node the autoscaler launched so far (alive or not), oldest first."""
        if not self.state_file.exists():
            return []
        lines = self.state_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def alive_workers(self) -> list[str]:
        """Node ids of the launched nodes whose raylet is alive now (by their processes)."""
        return [node["node_id"] for node in self.launched() if _any_alive(node["pids"])]

    def kill_node(self, node_id: str) -> None:
        """Take a launched node away as a provider reclaiming a spot machine would: every
        process it has (its workers, trials included) ends at once."""
        for node in self.launched():
            if node["node_id"] == node_id:
                _kill_tree(node["pids"])

    def ray_env(self) -> dict[str, str]:
        """What a client process needs to connect to the head with ``ray.init``."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file)}

    def prove(self, timeout_s: float = 240.0) -> float:
        """A plain Ray job (Ray's own JobSubmissionClient) whose 1-CPU task makes the autoscaler
        launch a worker from zero and runs there; returns the job's seconds."""
        import subprocess

        task = self.root / "prove_task.py"
        task.write_text(
            "import ray\nray.init()\n"
            "@ray.remote(num_cpus=1)\n"
            "def where():\n    return ray.get_runtime_context().get_node_id()\n"
            "print('RAN-ON', ray.get(where.remote()))\n"
        )
        script = (
            "import time\n"
            "from ray.job_submission import JobSubmissionClient\n"
            f"client = JobSubmissionClient({self.address!r})\n"
            f"job = client.submit_job(entrypoint='python {task}')\n"
            "while not client.get_job_status(job).is_terminal():\n"
            "    time.sleep(0.5)\n"
            "print('STATUS', client.get_job_status(job))\n"
            "print(client.get_job_logs(job))\n"
        )
        env = {**os.environ, **self.ray_env()}
        env.pop("RAY_ADDRESS", None)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-c", script],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
            out, err = done.stdout, done.stderr
        except subprocess.TimeoutExpired as timeout:
            out, err = str(timeout.stdout or ""), str(timeout.stderr or "")
        if "STATUS SUCCEEDED" not in out or "RAN-ON" not in out:
            raise RuntimeError(
                f"the autoscaling bed did not run a plain job:\n{out[-2000:]}\n{err[-3000:]}\n"
                f"{self.monitor_log()[-3000:]}"
            )
        node_id = out.split("RAN-ON", 1)[1].split()[0]
        if node_id not in {node["node_id"] for node in self.launched()}:
            raise RuntimeError(f"the plain job's task ran on {node_id}, not on a launched node")
        return time.monotonic() - started

    def monitor_log(self) -> str:
        logs = sorted((self.root / "head-tmp").glob("session_*/logs/monitor.log"))
        return logs[-1].read_text(errors="replace") if logs else ""

    def wait_scaled_to(self, count: int, timeout_s: float = 180.0) -> None:
        wait_until(
            lambda: len(self.alive_workers()) == count,
            timeout_s,
            what=f"{count} launched worker(s) alive",
        )

    def stop(self) -> None:
        """End the head's process group, every process of every launched node, and what
        jobs left behind in the bed's folders."""
        for node in self.launched():
            _kill_tree(node["pids"])
        node_processes.stop_group(self.head.pid, check=False)
        for node in self.launched():
            _kill_tree(node["pids"])
        roots = [str(self.root)]
        mine = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
        for process in psutil.process_iter(["pid"]):
            if process.pid in mine:
                continue
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                cwd = process.cwd()
                if any(cwd == root or cwd.startswith(root + os.sep) for root in roots):
                    process.kill()


def start_autoscaling_bed(
    name: str,
    root: Path,
    worker_types: dict[str, NodeType],
    *,
    idle_timeout_minutes: float = 0.25,
    head_resources: dict[str, float] | None = None,
    env: dict[str, str] | None = None,
    register: dict[str, Any] | None = None,
) -> AutoscalingBed:
    """Start the head (0 CPUs) with Ray's autoscaler and register the cluster in the radas config
    as ``name`` (with ``register``'s keys added: cpus_per_node etc. are *not* given unless
    there)."""
    root.mkdir(parents=True, exist_ok=True)
    token_file = root / "auth_token"
    token_file.write_text(os.urandom(16).hex())
    token_file.chmod(0o600)
    gcs_port, dashboard_port = node_processes.free_ports(2)
    gcs_address = f"127.0.0.1:{gcs_port}"
    types: dict[str, Any] = {
        HEAD_TYPE: {
            "resources": {"CPU": 0, **(head_resources or {})},
            "node_config": {},
            "max_workers": 0,
        },
    }
    for type_name, node_type in worker_types.items():
        types[type_name] = {
            "resources": node_type.resources,
            "node_config": {},
            "min_workers": node_type.min_workers,
            "max_workers": node_type.max_workers,
        }
    config = {
        "cluster_name": name,
        "max_workers": sum(t.max_workers for t in worker_types.values()),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {
            "type": "external",
            "module": "fake_node_provider.LoopbackFakeProvider",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
            "state_file": str(root / "nodes.jsonl"),
            "temp_root": str(root / "nodes"),
            "fail_launch_file": str(root / "fail-launch"),
            "launch_delay_file": str(root / "launch-delay"),
        },
        "available_node_types": types,
        "head_node_type": HEAD_TYPE,
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "auth": {"ssh_user": "nobody"},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "rsync_exclude": [],
        "rsync_filter": [],
    }
    config_file = root / "autoscaler.yaml"
    config_file.write_text(yaml.safe_dump(config))
    node_env = {
        "RAY_FAKE_CLUSTER": "1",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(SUPPORT_DIR), os.environ.get("PYTHONPATH")])
        ),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    head_cpus = 0
    command = node_processes.head_command(
        [gcs_port, dashboard_port],
        root / "head-tmp",
        f"--num-cpus={head_cpus}",
        f"--autoscaling-config={config_file}",
    )
    if head_resources:
        command.append(f"--resources={json.dumps(head_resources)}")
    log = root / "head.log"
    head = local.NodeProcess(node_processes.spawn(command, node_env, log), head_cpus, 0, str(log))
    bed = AutoscalingBed(
        name,
        root,
        f"http://127.0.0.1:{dashboard_port}",
        gcs_address,
        head,
        token_file,
        env=node_env,
    )
    try:
        wait_until(
            lambda: _answers(bed),
            120,
            what=f"the job server of the autoscaling bed (see {log})",
        )
    except BaseException:
        bed.stop()
        raise
    register_cluster(
        ClusterConfig(
            name=name,
            address=bed.address,
            description="A cluster that scales from zero (Ray's autoscaler, fake provider).",
            results_root=str(root / "ray-results"),
            data_root=str(root / "data"),
            cold_data_root=str(root / "cold-data"),
            token_file=str(token_file),
            **(register or {}),
        )
    )
    return bed


def _answers(bed: AutoscalingBed) -> bool:
    from radas.clusters.availability import alive_nodes

    if not node_processes.is_alive(bed.head.pid):
        raise RuntimeError(f"the bed's head exited:\n{Path(bed.head.log).read_text()[-3000:]}")
    return alive_nodes(bed.address, bed.token) >= 1


def _any_alive(pids: list[int]) -> bool:
    return any(node_processes.is_alive(pid) for pid in pids)


def _kill_tree(pids: list[int]) -> None:
    processes = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            processes += [process, *process.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


def wait_seconds_for(predicate, timeout_s: float, what: str) -> float:
    """Seconds until ``predicate()`` held (raises TimeoutError after ``timeout_s``)."""
    started = time.monotonic()
    wait_until(predicate, timeout_s, what=what)
    return time.monotonic() - started


@contextlib.contextmanager
def proved_bed(name: str, worker_types: dict[str, NodeType], **options: Any):
    """A bed in a fresh short folder under /tmp (Ray's socket paths are limited), proved with
    a plain job first, stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix=f"bed-{name}-", dir="/tmp"))
    bed = start_autoscaling_bed(name, root, worker_types, **options)
    try:
        bed.prove()
        yield bed
    finally:
        bed.stop()
        shutil.rmtree(root, ignore_errors=True)
