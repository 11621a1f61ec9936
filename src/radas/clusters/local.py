"""A real Ray cluster on this machine, registered as a named radas cluster.

``start_local_cluster("dev")`` runs ``ray start --head --block`` (bound to 127.0.0.1, free
ports, job server, token authentication with a token of its own) in its own process group,
optionally with worker nodes, and registers it in the radas config; ``stop_local_cluster``
(``local_stop``) ends exactly those process groups (``node_processes``). Its results, data
and token live under ``$RADAS_HOME/clusters/<name>/``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from radas.clusters.config import (
    ClusterConfig,
    register_cluster,
    validate_cluster_name,
)
from radas.clusters.node_processes import (
    free_port_flags,
    free_ports,
    head_command,
    is_alive,
    is_ray_start,
    kill_group,
    node_temp_dir,
    ray_command,
    remove_node_temp_dirs,
    spawn,
    stop_group,
)
from radas.core.console import print_info
from radas.core.poll import wait_until
from radas.errors import ClusterError, InvalidArgumentError
from radas.storage.home import radas_home

STARTUP_TIMEOUT_S = 120.0
_ANSI_CODE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class NodeProcess:
    pid: int
    num_cpus: float
    num_gpus: float = 0
    log: str = ""


@dataclass
class LocalCluster:
    """A running local cluster: its addresses and the process groups radas started."""

    name: str
    address: str
    gcs_address: str
    head: NodeProcess
    workers: list[NodeProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return cluster_dir(self.name)

    @property
    def token_file(self) -> Path:
        return self.state_dir / "auth_token"

    def add_worker_node(self, num_cpus: float = 1, num_gpus: float = 0) -> NodeProcess:
        """Start one more node (``ray start --address``) and wait until the cluster sees it."""
        num_cpus, num_gpus = _whole("worker_cpus", num_cpus), _whole("num_gpus", num_gpus)
        index = len(self.workers) + 1
        log = self.state_dir / f"worker-{index}.log"
        command = [
            *ray_command(),
            "start",
            f"--address={self.gcs_address}",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            f"--num-gpus={num_gpus}",
            f"--temp-dir={node_temp_dir(self.name, f'w{index}')}",
            *free_port_flags(worker=True),
            "--disable-usage-stats",
        ]
        node = NodeProcess(spawn(command, self.env, log), num_cpus, num_gpus, str(log))
        self.workers.append(node)
        self._save()
        _wait_for_nodes(self, expected=1 + len(self.workers), process=node)
        return node

    def kill_worker_node(self, node: NodeProcess, sig: int = signal.SIGKILL) -> None:
        """Kill one worker node the way a lost machine goes: its process group and every
        process it started (Ray starts its worker processes outside the node's group, and
        they would otherwise run on), to test what survives a lost node."""
        try:
            started = psutil.Process(node.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        kill_group(node.pid, sig)
        for process in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(sig)
        self.workers = [w for w in self.workers if w.pid != node.pid]
        self._save()

    def stop(self) -> None:
        """Stop every node, then every job driver they leave behind (Ray starts each driver
        in a session of its own, which outlives the node for a moment or for good); the
        nodes' temp dirs go with them (``_end_processes``). The results stay."""
        self._end_processes()
        print_info(f"local cluster {self.name!r} stopped (its results are kept)")

    def _end_processes(self) -> None:
        """End the nodes, then the job drivers they leave, and remove the nodes' temp dirs
        (Ray's session files and logs, the jobs' unpacked working dirs: ``radas logs`` reads
        a job's log only while its cluster runs; a node that did not start has the end of its
        ``ray start`` log quoted in the error, from the cluster's folder, which stays)."""
        jobs = self.job_process_groups()
        for node in [*self.workers, self.head]:
            stop_group(node.pid)
        for group in [*jobs, *self.job_process_groups()]:
            stop_group(group, timeout_s=2.0, check=False)
        self._forget_nodes()

    def _forget_nodes(self) -> None:
        """Once its processes ended: the record of the running nodes, and their temp dirs."""
        (self.state_dir / "state.json").unlink(missing_ok=True)
        remove_node_temp_dirs(self.name)

    def job_process_groups(self) -> list[int]:
        """Process groups of the jobs running on this cluster's nodes (drivers and their
        workers): the processes whose working directory is in a node's temp dir, where Ray
        unpacks each job's working_dir."""
        roots = [node_temp_dir(self.name, "head")]
        roots += [node_temp_dir(self.name, f"w{i}") for i in range(1, len(self.workers) + 1)]
        groups = set()
        for process in psutil.process_iter(["pid"]):
            try:
                cwd = process.cwd()
                if any(cwd == root or cwd.startswith(root + os.sep) for root in roots):
                    groups.add(os.getpgid(process.pid))
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        node_groups = {node.pid for node in [self.head, *self.workers]}
        return sorted(groups - node_groups)

    def _save(self) -> None:
        state = {
            "name": self.name,
            "address": self.address,
            "gcs_address": self.gcs_address,
            "head": asdict(self.head),
            "workers": [asdict(worker) for worker in self.workers],
            "env": self.env,
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))


def cluster_dir(name: str) -> Path:
    return radas_home() / "clusters" / validate_cluster_name(name)


def start_local_cluster(
    name: str = "local",
    *,
    num_cpus: float | None = None,
    num_gpus: float = 0,
    worker_nodes: int = 0,
    worker_cpus: float = 1,
    memory_gb: float | None = None,
    env: dict[str, str] | None = None,
    description: str = "A Ray cluster on this machine, started by radas.",
    when_to_use: str = "Trying the cluster workflow locally; small CPU experiments.",
) -> LocalCluster:
    """Start a Ray head (plus ``worker_nodes`` nodes) on 127.0.0.1 and register it as ``name``.

    ``env`` is added to every node's environment (e.g. Ray's memory monitor settings).

    >>> cluster = start_local_cluster("dev", num_cpus=2)  # doctest: +SKIP
    >>> run_experiment_sync(..., run_with="cluster:dev")  # doctest: +SKIP
    >>> cluster.stop()  # doctest: +SKIP
    """
    _refuse_start(name, num_cpus, worker_nodes, worker_cpus)
    num_cpus = _whole("num_cpus", num_cpus or os.cpu_count() or 1)
    num_gpus = _whole("num_gpus", num_gpus)
    worker_cpus = _whole("worker_cpus", worker_cpus)
    state_dir = cluster_dir(name)
    state_dir.mkdir(parents=True, exist_ok=True)
    token_file = _token_file(state_dir)
    node_env = _node_env(token_file, env)
    ports = free_ports(2)
    gcs_address, address = f"127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    log = state_dir / "head.log"
    command = head_command(
        ports, node_temp_dir(name, "head"), f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"
    )
    head = NodeProcess(spawn(command, node_env, log), num_cpus, num_gpus, str(log))
    cluster = LocalCluster(name, address, gcs_address, head, env=node_env)
    cluster._save()
    _wait_until_started(cluster, worker_nodes, worker_cpus)
    # no per-node numbers: radas reads the cluster's nodes (memory_gb, when given, is the
    # override of Ray's memory resource per node)
    register_cluster(
        ClusterConfig(
            name=name,
            address=address,
            description=description,
            when_to_use=when_to_use,
            results_root=str(state_dir / "ray-results"),
            data_root=str(state_dir / "data"),
            cold_data_root=str(state_dir / "cold-data"),
            token_file=str(token_file),
            memory_per_node_gb=memory_gb,
            managed_by_radas=True,
        )
    )
    print_info(
        f"local cluster {name!r} is up at {address} ({num_cpus:g} CPUs on the head"
        f"{f', {worker_nodes} worker node(s)' if worker_nodes else ''}); "
        f"use run_with='cluster:{name}'"
    )
    return cluster


def _refuse_start(name: str, num_cpus: float | None, worker_nodes: int, worker_cpus: float) -> None:
    """Refuse a second cluster of the same name and counts that make no node."""
    running = find_local_cluster(name)
    if running is not None:
        raise ClusterError(
            f"A local cluster named {name!r} is already running at {running.address}. Use it, "
            f"or stop it first: `radas cluster down {name}`."
        )
    if worker_nodes < 0 or (num_cpus is not None and num_cpus <= 0) or worker_cpus <= 0:
        raise InvalidArgumentError(
            "num_cpus and worker_cpus must be positive and worker_nodes >= 0 "
            f"(got num_cpus={num_cpus}, worker_cpus={worker_cpus}, worker_nodes={worker_nodes})."
        )


def _token_file(state_dir: Path) -> Path:
    """The cluster's Ray token file, made (readable by its owner only) on its first start."""
    token_file = state_dir / "auth_token"
    if not token_file.exists():
        token_file.touch(mode=0o600)
        token_file.write_text(secrets.token_hex(32))
    return token_file


def _node_env(token_file: Path, env: dict[str, str] | None) -> dict[str, str]:
    """What every node's environment gets: loopback only, token authentication, this
    environment's Python, and the user's ``env``."""
    return {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # loopback only, see node_processes
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token_file),
        # the job driver runs `python`: make it this environment's Python
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }


def _wait_until_started(cluster: LocalCluster, worker_nodes: int, worker_cpus: float) -> None:
    """Wait for the head's job server and node, then start the worker nodes; a cluster that
    does not start has its processes ended."""
    try:
        _wait_for_job_server(cluster)
        _wait_for_nodes(cluster, expected=1, process=cluster.head)
        for _ in range(worker_nodes):
            cluster.add_worker_node(num_cpus=worker_cpus)
    except ClusterError as err:
        cluster._end_processes()  # nothing ran on it: no word about results
        raise ClusterError(f"Local cluster {cluster.name!r} did not start: {err}") from err
    except BaseException:
        cluster._end_processes()
        raise


def _whole(name: str, count: float) -> int:
    """A node's CPU or GPU count as `ray start` takes it: a whole number (2.0 -> 2)."""
    if not math.isfinite(count):
        raise InvalidArgumentError(
            f"{name}={count:g} is not a number of CPUs or GPUs: give a whole number, e.g. "
            f"{name}={1 if name != 'num_gpus' else 0}."
        )
    if count < 0 or count != int(count):
        raise InvalidArgumentError(
            f"{name}={count:g}: a node of a local cluster has a whole number of CPUs and GPUs "
            f"(`ray start` takes no fractions); use e.g. {name}={max(1, round(count))}. "
            "Trials can still ask for fractions of them (cpu_per_trial=0.5)."
        )
    return int(count)


def find_local_cluster(name: str) -> LocalCluster | None:
    """The running local cluster called ``name`` (started by radas), or None. A recorded
    cluster whose head died has what it left running ended (``end_leftovers``)."""
    cluster = recorded_cluster(name)
    if cluster is None:
        return None
    if not is_ray_start(cluster.head.pid):
        end_leftovers(cluster)
        return None
    return cluster


def recorded_cluster(name: str) -> LocalCluster | None:
    """The local cluster ``name`` as radas recorded it when it started it; None if none is."""
    state_file = cluster_dir(name) / "state.json"
    if not state_file.exists():
        return None
    state: dict[str, Any] = json.loads(state_file.read_text())
    return LocalCluster(
        name=state["name"],
        address=state["address"],
        gcs_address=state["gcs_address"],
        head=NodeProcess(**state["head"]),
        workers=[NodeProcess(**worker) for worker in state["workers"]],
        env=state.get("env", {}),
    )


def end_leftovers(cluster: LocalCluster) -> list[str]:
    """After the head of ``cluster`` died (SIGKILL, a crash, a reboot): end what its nodes and
    jobs left running, and forget the cluster's record. Returns the processes ended, as
    ``"<pid> (<name>)"``.

    Only processes of the cluster, never chosen by name: the members of the process groups
    radas created for its nodes (Ray's dashboard and runtime-env agents outlive a SIGKILLed
    ``ray start`` there), and its job drivers and workers (working directory in a node's temp
    dir). The system gives a group's id to no new process while the group has members, so a
    group whose leader (the ``ray start`` radas spawned) is gone holds only the node's
    processes; a group whose leader's pid runs something else than ``ray start`` belongs to
    someone else and is left alone."""
    nodes = [cluster.head, *cluster.workers]
    node_groups = {node.pid for node in nodes if is_ray_start(node.pid) or not is_alive(node.pid)}
    groups = node_groups | set(cluster.job_process_groups())
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        try:
            if (
                os.getpgid(process.pid) in groups
                and process.status() != psutil.STATUS_ZOMBIE
                and process.pid != os.getpid()
            ):
                found.append(process)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    for process in found:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(found, timeout=2.0)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=2.0)
    cluster._forget_nodes()
    return [f"{process.pid} ({process.info['name']})" for process in found]


def _wait_for_job_server(cluster: LocalCluster) -> None:
    from radas.backends.ray_jobs import connect

    config = ClusterConfig(
        name=cluster.name,
        address=cluster.address,
        results_root="",
        data_root="",
        cold_data_root="",
        token_file=str(cluster.token_file),
    )
    last_error: list[ClusterError] = []

    def answers() -> bool:
        _check_alive(cluster.head)
        try:
            connect(config, timeout_s=2.0)
        except ClusterError as err:
            last_error[:] = [err]
            return False
        return True

    try:
        wait_until(answers, STARTUP_TIMEOUT_S, what=f"the job server of {cluster.name!r}")
    except TimeoutError:
        raise last_error[0] from None


def _wait_for_nodes(cluster: LocalCluster, expected: int, process: NodeProcess) -> None:
    from radas.clusters.availability import alive_nodes

    def joined() -> bool:
        if alive_nodes(cluster.address, cluster.token_file.read_text().strip()) >= expected:
            return True
        _check_alive(process)
        return False

    wait_until(
        joined,
        STARTUP_TIMEOUT_S,
        what=f"a node of {cluster.name!r} to join (see {process.log})",
        error=ClusterError,
    )


def _check_alive(node: NodeProcess) -> None:
    """Raise if the node radas just spawned has exited. Asked by its pid being alive, not by
    its command line: right after the fork a busy machine may not have run its `exec` yet,
    and the child still shows this process's command line."""
    if not is_alive(node.pid):
        tail = Path(node.log).read_text(errors="replace")[-2000:] if Path(node.log).exists() else ""
        tail = _ANSI_CODE.sub("", tail)  # Ray colours its log even into a file
        raise ClusterError(f"`ray start` exited; the end of {node.log}:\n{tail}")
