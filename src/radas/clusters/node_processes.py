"""The processes of a local cluster's nodes, started and ended by process group.

Each node is one ``ray start --block`` in a process group of its own (``spawn``), on free
ports of 127.0.0.1 (``head_command``, ``free_port_flags``), with a Ray temp dir of its own
(``node_temp_dir``). Ending one is ending its group (``stop_group``): never a process chosen
by name, and never a group whose leader's pid now runs something else than ``ray start``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

from radas.core.poll import wait_until
from radas.storage.home import radas_home

# A local cluster stays on the loopback interface. Ray replaces 127.0.0.1 by the machine's
# network address unless its "cluster mode" is off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, set
# for every process of the cluster); but `ray start` itself refuses extra nodes with cluster
# mode off, so its launcher (ray_compat.private.LOOPBACK_RAY_START) turns it back on and keeps
# --node-ip-address as given.


def head_command(ports: list[int], temp_dir: str | Path, *flags: str) -> list[str]:
    """``ray start --head --block`` on 127.0.0.1 with the GCS and dashboard (job server) on
    ``ports``, free ports for the rest, and ``flags`` (``--num-cpus=2``, ...)."""
    return [
        *ray_command(),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--port={ports[0]}",
        f"--dashboard-port={ports[1]}",
        *flags,
        "--include-dashboard=true",
        f"--temp-dir={temp_dir}",
        *free_port_flags(worker=False),
        "--disable-usage-stats",
    ]


def ray_command() -> list[str]:
    from radas.ray_compat.private import LOOPBACK_RAY_START

    return [sys.executable, "-c", LOOPBACK_RAY_START]


def node_temp_dir(name: str, node: str) -> str:
    """Each node its own Ray temp dir (like separate machines: a node that dies cannot take
    another node's runtime-env files with it). Short, for Ray's socket path length limit."""
    digest = hashlib.sha1(f"{radas_home()}/{name}".encode()).hexdigest()[:8]
    return str(Path(tempfile.gettempdir()) / f"radas-{digest}-{node}")


def remove_node_temp_dirs(name: str) -> None:
    """Remove the temp dirs of every node cluster ``name`` had (its processes ended): Ray's
    session files and logs, and the jobs' unpacked working dirs."""
    head = Path(node_temp_dir(name, "head"))
    for folder in head.parent.glob(head.name.removesuffix("head") + "*"):
        shutil.rmtree(folder, ignore_errors=True)


def spawn(command: list[str], env: dict[str, str], log: Path) -> int:
    full_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    full_env.update(env)
    with log.open("ab") as stream:
        process = subprocess.Popen(
            command,
            env=full_env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group
        )
    return process.pid


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_flags(worker: bool) -> list[str]:
    """Ports Ray would otherwise take at fixed defaults (clashing with a second cluster)."""
    names = [
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
    ]
    if not worker:
        names.append("--ray-client-server-port")
    return [f"{flag}={port}" for flag, port in zip(names, free_ports(len(names)), strict=True)]


def is_ray_start(pid: int) -> bool:
    try:
        process = psutil.Process(pid)
        return process.is_running() and "ray.scripts.scripts" in " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # the group radas created with start_new_session (pgid == pid)


def stop_group(pid: int, timeout_s: float = 5.0, check: bool = True) -> None:
    """SIGTERM the process group ``pid``, SIGKILL it after ``timeout_s``; with ``check``,
    only when ``pid`` is still the `ray start` radas started (not a recycled pid)."""
    if check and not is_ray_start(pid):
        return
    kill_group(pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):  # then it is killed
        wait_until(
            lambda: not group_alive(pid), timeout_s, what=f"group {pid} to exit", max_delay_s=0.2
        )
    kill_group(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # reap it when this process started it
        os.waitpid(pid, 0)


def group_alive(pgid: int) -> bool:
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.info["pid"]) == pgid and process.status() != "zombie":
                return True
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return False
