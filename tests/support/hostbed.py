"""A multi-host test bed on one machine: each Ray node on a simulated host of its own.

``host_bed()`` builds, and always tears down again:

- a Linux bridge ``rdb<N>br`` with ``198.18.<N>.1/24`` (RFC 2544's range for tests) in the root
  namespace, where the client (this process) stays;
- per host (``head``, ``worker1``, ...) a network namespace ``rdb<N>-<host>`` whose ``eth0``
  (``198.18.<N>.<10+i>``) is a veth pair on that bridge, ``lo`` up, no default route: a host
  can reach the others and the bridge address, nothing else;
- per host a mount namespace (``unshare --mount --propagation private``, held by a "keeper"
  process whose pid we keep) with tmpfs over ``/tmp`` (so its Ray temp dir and token are its
  own), ``/dev/shm`` and the client's RADAS_HOME, config, working directory and any ``hide``
  path. The Python environment stays visible, read-only (the same image on every host),
  also where it lives under the client's /tmp (a checkout cloned there);
- an S3 server (moto) on the bridge address, with a bucket, as everyone's object store;
- ``ray start --head`` (token auth, the token made in the head's private /tmp and copied into
  a 0600 file of the client, as a user would) and ``ray start --address`` on each worker.

Before any traffic it checks, with ``ip route get``, that every address goes through its own
bridge; any failure in set-up tears down what was built and raises ``HostBedError``.
``HostBedUnavailable`` (a subclass) says why the bed cannot run here (not root, no ``ip``).

    with host_bed() as bed:                       # head + 2 workers
        bed.run(bed.workers[0], "hostname -I")    # a command on a host
        bed.write_cluster_config(config_path, "multi")
        bed.link_down(bed.workers[0])             # cut a worker off

Hosts see no variable of the client; each has the AWS test credentials, ``HOME=/tmp/home``
and the venv's ``python`` first on PATH. The cluster's roots (``write_cluster_config``) are
paths on the hosts, private to each: results a trial writes there are not on the client.
The head's GCS marks a silent node dead after ~3 s (``FAST_DEATH``; Ray's default ~30 s).

Tests use the session-wide fixture ``multi_host_bed`` (tests/support/hostbed_fixtures.py);
bench/ imports this module as ``support.hostbed`` (``sys.path.insert(0, "tests")``).
``python scripts/host-bed.py`` brings a bed up by hand; ``--cleanup`` removes what a
hard-killed bed left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

PREFIX = "rdb"  # every bridge, veth and namespace the bed makes starts with rdb<N>
NETWORK = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544: benchmarking, never routed
GCS_PORT = 6379  # fixed ports are fine: every host has its own network namespace
DASHBOARD_PORT = 8265
HOST_TOKEN_PATH = "/tmp/ray-auth-token"  # in each host's private /tmp
HOST_HOME = "/tmp/home"
DEADLINE_S = 180.0
UNSHARE_MOUNT = ["unshare", "--mount", "--propagation", "private"]
# GCS marks a silent node dead after period * threshold (Ray's defaults take ~30 s)
FAST_DEATH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class HostBedError(RuntimeError):
    """The bed could not be built (what was built is torn down again)."""


class HostBedUnavailable(HostBedError):
    """This machine cannot run the bed (not root, no ``ip``/``unshare``/``nsenter``)."""


@dataclass
class Host:
    """One simulated host: its namespaces, address and Ray node."""

    name: str
    ip: str
    netns: str
    veth: str  # the root-namespace end, on the bridge
    keeper_pid: int = 0  # holds the mount namespace: nsenter -t keeper_pid -m -n
    node_pid: int = 0  # `ray start --block` (its own process group)
    log: Path = Path()
    _node: subprocess.Popen[bytes] | None = field(default=None, repr=False)


@dataclass
class HostBed:
    """What a running bed offers its tests (and bench/)."""

    address: str  # the head's job server, http://198.18.N.10:8265
    gcs_address: str
    token_file: Path  # the client's copy of the head's token (mode 0600)
    s3_endpoint_url: str  # moto on the bridge address
    s3_bucket: str
    aws_env: dict[str, str]
    bridge: str
    bridge_ip: str
    hosts: list[Host]
    state_dir: Path  # client-side: logs, the token copy
    num_cpus: float = 1
    started_s: float = 0.0  # set-up time, to all nodes alive
    _host_env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def head(self) -> Host:
        return self.hosts[0]

    @property
    def workers(self) -> list[Host]:
        return self.hosts[1:]

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def host(self, name: str) -> Host:
        return next(host for host in self.hosts if host.name == name)

    def run(
        self, host: Host, command: str, *, input: str | None = None, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sh -c command`` on ``host`` (its network and mount namespaces, its env)."""
        return subprocess.run(
            [*_enter(host), "sh", "-c", command],
            input=input,
            capture_output=True,
            text=True,
            env=self._host_env,
            timeout=timeout_s,
            cwd="/",
        )

    def s3_client(self) -> Any:
        """A boto3 S3 client of the client, on the bed's S3 server (through the bridge)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint_url, **_boto_credentials())

    def popen(self, host: Host, command: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``sh -c command`` on ``host`` in the background (killed at teardown with
        everything else on the host)."""
        return subprocess.Popen(
            [*_enter(host), "sh", "-c", command], env=self._host_env, cwd="/", **kwargs
        )

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def node_states(self, timeout_s: float = 5.0) -> dict[str, str]:
        """Each node's IP -> ALIVE/DEAD, from Ray's state API (the latest node per IP)."""
        response = requests.get(
            f"{self.address}/api/v0/nodes",
            params={"limit": "100", "detail": "1"},
            headers=self.headers(),
            timeout=timeout_s,
        )
        response.raise_for_status()
        nodes = response.json()["data"]["result"]["result"]
        states: dict[str, str] = {}
        for node in sorted(nodes, key=lambda node: node.get("start_time_ms") or 0):
            states[node["node_ip"]] = node["state"]
        return states

    def wait_for_states(
        self, expected: dict[str, str], timeout_s: float = DEADLINE_S
    ) -> dict[str, str]:
        """Poll the state API until every IP in ``expected`` has its state; the states."""
        return _wait(lambda: _states_if(self, expected), timeout_s, f"nodes to reach {expected}")

    def link_down(self, host: Host) -> None:
        """Cut ``host`` off: its veth goes down on the bridge side."""
        _ip("link", "set", host.veth, "down")

    def link_up(self, host: Host) -> None:
        _ip("link", "set", host.veth, "up")

    def revive(self, host: Host, timeout_s: float = DEADLINE_S) -> None:
        """Bring a cut-off or killed worker back, like a rebooted machine: link up, every
        process on it ended, a fresh `ray start` joined (Ray sees a new node at its IP)."""
        if host is self.head:
            raise HostBedError("the head cannot be revived; build a new bed")
        self.link_up(host)
        leftovers = [p for p in _netns_processes(host.netns) if p.pid != host.keeper_pid]
        for process in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(leftovers, timeout=10)
        if host._node is not None:
            host._node.wait(timeout=10)
        _start_worker(self, host)
        _wait(lambda: _states_if(self, {host.ip: "ALIVE"}), timeout_s, f"{host.name} to rejoin")

    def heal(self) -> list[str]:
        """Revive every worker that is cut off or not alive; their names."""
        states = self.node_states()
        broken = [w for w in self.workers if states.get(w.ip) != "ALIVE" or not _link_up(w)]
        for worker in broken:
            self.revive(worker)
        return [worker.name for worker in broken]

    def kill_raylet(self, host: Host, sig: int = signal.SIGKILL) -> int:
        """Kill the raylet of ``host``; its pid."""
        for process in _netns_processes(host.netns):
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.name() == "raylet":
                    process.send_signal(sig)
                    return process.pid
        raise HostBedError(f"no raylet runs on {host.name}")

    def write_cluster_config(
        self,
        path: str | Path,
        name: str,
        *,
        results_root: str = "/tmp/radas/results",
        data_root: str | None = None,
        cold_data_root: str | None = None,
        artifact_prefix: str = "radas",
        **extra: Any,
    ) -> Any:
        """Register this bed as cluster ``name`` in the radas config file ``path``.

        The roots are paths on the hosts (private to each); artifacts go to the bucket. With
        an object-store ``results_root`` the data roots are left out unless given: radas
        refuses to run a job on a cluster whose path roots the client does not share (issue
        23), and they are private to each host here. ``extra`` sets other ClusterConfig
        fields. Returns the ClusterConfig.
        """
        from radas.clusters.config import ClusterConfig, register_cluster

        uri = "://" in results_root
        if data_root is None:
            data_root = "" if uri else "/tmp/radas/data"
        if cold_data_root is None:
            cold_data_root = "" if uri else "/tmp/radas/cold-data"

        cluster = ClusterConfig(
            **{
                "name": name,
                "address": self.address,
                "description": "A multi-host test bed: one namespace per host.",
                "results_root": results_root,
                "data_root": data_root,
                "cold_data_root": cold_data_root,
                "token_file": str(self.token_file),
                "artifact_root": f"s3://{self.s3_bucket}/{artifact_prefix}",
                "artifact_endpoint_url": self.s3_endpoint_url,
                **extra,
            }
        )
        saved = os.environ.get("RADAS_CONFIG")
        os.environ["RADAS_CONFIG"] = str(path)  # register_cluster writes to $RADAS_CONFIG
        try:
            register_cluster(cluster)
        finally:
            if saved is None:
                os.environ.pop("RADAS_CONFIG")
            else:
                os.environ["RADAS_CONFIG"] = saved
        return cluster

    def _check_nodes(self) -> None:
        """While the bed comes up: fail early when a host's `ray start` has exited."""
        for host in self.hosts:
            if host.node_pid and not _running(host.node_pid):
                raise HostBedError(f"`ray start` on {host.name} exited; {_tail(host.log)}")


def available() -> str | None:
    """Why the bed cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the multi-host bed needs root (network and mount namespaces)"
    missing = [tool for tool in ("ip", "unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"the multi-host bed needs {', '.join(missing)} (iproute2, util-linux)"
    return None


@contextlib.contextmanager
def host_bed(
    workers: int = 2,
    *,
    num_cpus: float = 1,
    hide: Sequence[str | Path] = (),
    head_env: dict[str, str] | None = None,
    head_args: Sequence[str] = (),
    bucket: str = "radas-bed",
) -> Iterator[HostBed]:
    """A head and ``workers`` worker hosts, torn down on exit (also after an exception).

    ``hide``: client paths (besides RADAS_HOME, the radas config and the working directory)
    that no host may see. ``head_env``: extra variables for the head node (default: fast
    node-death detection). ``head_args``: extra ``ray start`` flags for the head.
    """
    reason = available()
    if reason:
        raise HostBedUnavailable(reason)
    started = time.monotonic()
    with contextlib.ExitStack() as undo:
        index, bridge = _add_bridge(undo)
        subnet = ipaddress.IPv4Network(f"198.18.{index}.0/24")
        bridge_ip = str(subnet[1])
        _ip("addr", "add", f"{bridge_ip}/24", "dev", bridge)
        _no_ipv6(bridge)
        _ip("link", "set", bridge, "up")
        names = ["head", *(f"worker{i}" for i in range(1, workers + 1))]
        hosts = [_add_host(undo, index, i, name, bridge, subnet) for i, name in enumerate(names)]
        _check_routes(bridge, bridge_ip, hosts)
        state_dir = Path(tempfile.mkdtemp(prefix=f"radas-hostbed{index}-"))
        undo.callback(shutil.rmtree, state_dir, ignore_errors=True)
        hidden = _client_paths(hide, state_dir)
        for host in hosts:
            host.log = state_dir / f"{host.name}.log"
            host.keeper_pid = _start_keeper(undo, host, hidden, state_dir / f"{host.name}-tmp")
        s3_endpoint_url = _start_s3(undo, bridge_ip, bucket, state_dir)
        host_env = _host_env()
        token_file = state_dir / "head-token"
        bed = HostBed(
            address=f"http://{hosts[0].ip}:{DASHBOARD_PORT}",
            gcs_address=f"{hosts[0].ip}:{GCS_PORT}",
            token_file=token_file,
            s3_endpoint_url=s3_endpoint_url,
            s3_bucket=bucket,
            aws_env=dict(AWS_ENV),
            bridge=bridge,
            bridge_ip=bridge_ip,
            hosts=hosts,
            state_dir=state_dir,
            num_cpus=num_cpus,
            _host_env=host_env,
        )
        undo.callback(_stop_nodes, hosts)
        _start_head(bed, {**FAST_DEATH, **(head_env or {})}, head_args)
        for worker in bed.workers:
            _start_worker(bed, worker)
        all_alive = {host.ip: "ALIVE" for host in hosts}
        _wait(lambda: _states_if(bed, all_alive), DEADLINE_S, "all nodes", bed._check_nodes)
        bed.started_s = time.monotonic() - started
        yield bed


def cleanup_leftovers() -> list[str]:
    """Remove what a bed killed hard left: every namespace (with its processes), veth and
    bridge named rdb<N>..., its S3 server and client-side folder; what went."""
    removed = []
    for state_dir in Path(tempfile.gettempdir()).glob("radas-hostbed[0-9]*-*"):
        with contextlib.suppress(OSError, ValueError, psutil.NoSuchProcess):
            server = psutil.Process(int((state_dir / "s3.pid").read_text()))
            if "moto.server" in server.cmdline():
                server.kill()
                removed.append(f"S3 server {server.pid}")
        shutil.rmtree(state_dir, ignore_errors=True)
        removed.append(f"folder {state_dir}")
    for netns in _netns_names():
        if netns.startswith(PREFIX):
            _remove_netns(netns)
            removed.append(f"netns {netns}")
    for link in json.loads(_ip("-j", "link", "show").stdout or "[]"):
        if link["ifname"].startswith(PREFIX):
            _ip("link", "del", link["ifname"], check=False)
            removed.append(f"link {link['ifname']}")
    if any(entry.startswith("netns") for entry in removed):
        _unmount_netns_dir(remove=False)
    return removed


# --- set-up steps, each registering its own undo ------------------------------------------


def _add_bridge(undo: contextlib.ExitStack) -> tuple[int, str]:
    """The first free 198.18.N.0/24 whose bridge name is free too (creating it claims N)."""
    used = _used_networks()
    for index in range(1, 255):
        subnet = ipaddress.ip_network(f"198.18.{index}.0/24")
        if any(subnet.overlaps(network) for network in used):
            continue
        bridge = f"{PREFIX}{index}br"
        if _ip("link", "add", bridge, "type", "bridge", check=False).returncode != 0:
            continue  # another bed has it
        if not _is_mount_point("/run/netns"):  # `ip netns add` mounts it: undo that last
            undo.callback(_unmount_netns_dir, remove=not Path("/run/netns").exists())
        undo.callback(_ip, "link", "del", bridge, check=False)
        return index, bridge
    raise HostBedError("no free 198.18.N.0/24 for a bridge")


def _add_host(
    undo: contextlib.ExitStack,
    index: int,
    position: int,
    name: str,
    bridge: str,
    subnet: ipaddress.IPv4Network,
) -> Host:
    host = Host(
        name=name,
        ip=str(subnet[10 + position]),
        netns=f"{PREFIX}{index}-{name}",
        veth=f"{PREFIX}{index}h{position}",
    )
    _ip("netns", "add", host.netns)
    undo.callback(_remove_netns, host.netns)
    _ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
    undo.callback(_ip, "link", "del", host.veth, check=False)
    _no_ipv6(host.veth)
    _no_ipv6("eth0", host.netns)
    _ip("link", "set", host.veth, "master", bridge, "up")
    _ip("-n", host.netns, "addr", "add", f"{host.ip}/{subnet.prefixlen}", "dev", "eth0")
    _ip("-n", host.netns, "link", "set", "lo", "up")
    _ip("-n", host.netns, "link", "set", "eth0", "up")
    return host


def _check_routes(bridge: str, bridge_ip: str, hosts: list[Host]) -> None:
    """Before any traffic: every host address leaves the root namespace through our bridge,
    the bridge address is ours, and inside each host everything goes out its own eth0."""
    addresses = json.loads(_ip("-j", "addr", "show", "dev", bridge).stdout)
    if bridge_ip not in [a["local"] for a in addresses[0].get("addr_info", [])]:
        raise HostBedError(f"{bridge_ip} is not on {bridge}")
    for host in hosts:
        _expect_route([], host.ip, bridge)
        for other in [bridge_ip, *(h.ip for h in hosts if h is not host)]:
            _expect_route(["-n", host.netns], other, "eth0")


def _expect_route(namespace: list[str], address: str, device: str) -> None:
    route = json.loads(_ip(*namespace, "-j", "route", "get", address).stdout)[0]
    if route.get("dev") != device or route.get("gateway"):
        where = f" in {namespace[1]}" if namespace else ""
        raise HostBedError(f"{address} routes via {route}{where}, not directly via {device}")


def _client_paths(hide: Sequence[str | Path], state_dir: Path) -> list[Path]:
    """Client paths no host may see: RADAS_HOME, the config's folder, the working directory,
    the bed's own state and ``hide``."""
    from radas.clusters.config import config_path
    from radas.storage.dirs import radas_home

    candidates = [radas_home(), config_path().parent, Path.cwd(), state_dir, *map(Path, hide)]
    system = [Path(p) for p in ("/tmp", "/dev", "/proc", "/sys", "/run")]
    paths: list[Path] = []
    for candidate in candidates:
        path = Path(candidate).expanduser().resolve()
        if any(s == path or s.is_relative_to(path) for s in system):
            raise HostBedError(f"cannot hide {path} from the hosts: it holds {system}")
        if path.exists() and not path.is_relative_to("/tmp"):  # /tmp is private anyway
            paths.append(path)
    # outermost first; a path inside another hidden one is hidden with it
    paths = sorted(set(paths), key=lambda p: len(p.parts))
    return [p for p in paths if not any(p != q and p.is_relative_to(q) for q in paths)]


def _keeper_script(hidden: list[Path], stash: Path) -> str:
    """Shell run in a host's new mount namespace: private /tmp, /dev/shm and hidden paths,
    the Python environment read-only (brought back where a hidden path covered it).

    The new /tmp is made on ``stash`` (an empty client folder outside it) and moved over
    /tmp only once the parts of the environment that live under /tmp (a checkout cloned
    there) are bound into it: a tmpfs mounted over /tmp first would hide them for good.
    """
    keep = sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})
    q = shlex.quote
    lines = ["set -e", f"mount -t tmpfs -o mode=1777 rdb-tmp {q(str(stash))}"]
    for path in keep:
        if path.is_relative_to("/tmp"):
            inside = q(str(stash / path.relative_to("/tmp")))
            lines.append(f"mkdir -p {inside} && mount --rbind {q(str(path))} {inside}")
    lines += [
        f"mount --move {q(str(stash))} /tmp",
        "mount -t tmpfs -o mode=1777 rdb-shm /dev/shm",
        f"mkdir -p {HOST_HOME} /tmp/.keep",
    ]
    covered = [(i, k) for i, k in enumerate(keep) if any(k.is_relative_to(h) for h in hidden)]
    for i, path in covered:
        lines.append(f"mkdir /tmp/.keep/{i} && mount --rbind {q(str(path))} /tmp/.keep/{i}")
    for path in hidden:
        if path.is_dir():
            lines.append(f"mount -t tmpfs -o mode=0755,size=1m rdb-hide {q(str(path))}")
        else:
            lines.append(f"mount --bind /dev/null {q(str(path))}")
    for i, path in covered:
        lines.append(f"mkdir -p {q(str(path))}")
        lines.append(f"mount --rbind /tmp/.keep/{i} {q(str(path))}")
        lines.append(f"umount -l /tmp/.keep/{i}")
    for path in keep:
        lines.append(f"mount --bind {q(str(path))} {q(str(path))}")
        lines.append(f"mount -o remount,bind,ro {q(str(path))}")
    lines += ["rm -rf /tmp/.keep", "cd /tmp", "echo ready", "exec sleep infinity"]
    return "\n".join(lines)


def _start_keeper(undo: contextlib.ExitStack, host: Host, hidden: list[Path], stash: Path) -> int:
    stash.mkdir()
    script = _keeper_script(hidden, stash)
    keeper = subprocess.Popen(
        ["ip", "netns", "exec", host.netns, *UNSHARE_MOUNT, "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd="/",
        start_new_session=True,
    )
    undo.callback(_stop_process, keeper)
    assert keeper.stdout is not None
    if keeper.stdout.readline().strip() != "ready":
        _, error = keeper.communicate(timeout=10)
        raise HostBedError(f"the mount namespace of {host.name} failed: {error}")
    return keeper.pid


def _start_s3(undo: contextlib.ExitStack, bridge_ip: str, bucket: str, state_dir: Path) -> str:
    """moto's S3 server on the bridge address (a free port there), with ``bucket``."""
    import socket

    with socket.socket() as probe:
        probe.bind((bridge_ip, 0))
        port = probe.getsockname()[1]
    endpoint_url = f"http://{bridge_ip}:{port}"
    with (state_dir / "s3.log").open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", bridge_ip, "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    undo.callback(_stop_process, server)
    (state_dir / "s3.pid").write_text(str(server.pid))  # for cleanup_leftovers
    import boto3
    from botocore.exceptions import EndpointConnectionError

    client = boto3.client("s3", endpoint_url=endpoint_url, **_boto_credentials())

    def create_bucket() -> bool:
        if server.poll() is not None:
            raise HostBedError(f"moto exited; {_tail(state_dir / 's3.log')}")
        try:
            client.create_bucket(Bucket=bucket)
            return True
        except EndpointConnectionError:
            return False

    _wait(create_bucket, 60.0, f"moto's S3 server at {endpoint_url}")
    return endpoint_url


def _host_env() -> dict[str, str]:
    """A host's environment: none of the client's, the same Python on PATH, its own home."""
    path = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
    return {
        "PATH": f"{path}:/sbin:/bin",
        "HOME": HOST_HOME,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": HOST_TOKEN_PATH,
        "RAY_USAGE_STATS_ENABLED": "0",
        **AWS_ENV,  # each machine's own S3 credentials, as an admin would set them
    }


def _start_head(bed: HostBed, env: dict[str, str], extra: Sequence[str]) -> None:
    """The head's token is made on the head; the client gets a copy, as a user would."""
    head = bed.head
    make_token = "import secrets; print(secrets.token_hex(32))"
    made = bed.run(head, f"umask 077 && python -c '{make_token}' > {HOST_TOKEN_PATH}")
    copied = bed.run(head, f"cat {HOST_TOKEN_PATH}")
    if made.returncode != 0 or not copied.stdout.strip():
        raise HostBedError(f"cannot make the token on the head: {made.stderr}{copied.stderr}")
    bed.token_file.touch(mode=0o600)
    bed.token_file.write_text(copied.stdout)
    command = [
        "ray",
        "start",
        "--head",
        "--block",
        f"--node-ip-address={head.ip}",
        f"--port={GCS_PORT}",
        f"--dashboard-host={head.ip}",
        f"--dashboard-port={DASHBOARD_PORT}",
        "--include-dashboard=true",
        *_node_flags(bed),
        *extra,
    ]
    head.node_pid = _start_node(bed, head, command, env)
    _wait(lambda: _job_server_ready(bed), DEADLINE_S, "the head's job server", bed._check_nodes)


def _job_server_ready(bed: HostBed) -> bool:
    try:
        response = requests.get(f"{bed.address}/api/version", headers=bed.headers(), timeout=2)
    except requests.RequestException:
        return False
    return response.status_code == 200


def _start_worker(bed: HostBed, worker: Host) -> None:
    copied = bed.run(
        worker, f"umask 077 && cat > {HOST_TOKEN_PATH}", input=bed.token_file.read_text()
    )
    if copied.returncode != 0:
        raise HostBedError(f"cannot copy the token to {worker.name}: {copied.stderr}")
    command = [
        "ray",
        "start",
        f"--address={bed.gcs_address}",
        "--block",
        f"--node-ip-address={worker.ip}",
        *_node_flags(bed),
    ]
    worker.node_pid = _start_node(bed, worker, command, {})


def _node_flags(bed: HostBed) -> list[str]:
    return [
        f"--num-cpus={bed.num_cpus:g}",
        "--object-store-memory=100000000",
        "--temp-dir=/tmp/ray",
        "--disable-usage-stats",
    ]


def _start_node(
    bed: HostBed,
    host: Host,
    command: list[str],
    env: dict[str, str],
) -> int:
    with host.log.open("ab") as log:
        node = subprocess.Popen(
            [*_enter(host), *command],
            env={**bed._host_env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,  # its own process group
        )
    host._node = node
    return node.pid


# --- teardown ------------------------------------------------------------------------------


def _stop_nodes(hosts: list[Host]) -> None:
    """SIGKILL every node's process group: nothing on a host outlives the bed (its /tmp goes
    with it), and Ray's SIGTERM shutdown of a multi-node cluster hangs for many seconds."""
    nodes = [host._node for host in hosts if host._node is not None]
    for node in nodes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
    for node in nodes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=10)


def _stop_process(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _remove_netns(netns: str) -> None:
    """Kill every process still in the namespace (all ours: we made it), then delete it."""
    for process in _netns_processes(netns):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(_netns_processes(netns), timeout=10)
    _ip("netns", "del", netns, check=False)


def _unmount_netns_dir(remove: bool) -> None:
    """`ip netns add` made /run/netns a mount point; undo that once no namespace is left."""
    for _ in range(5):  # it can be mounted more than once
        if _netns_names() or not _is_mount_point("/run/netns"):
            break
        subprocess.run(["umount", "/run/netns"], check=False)
    if remove:
        with contextlib.suppress(OSError):
            Path("/run/netns").rmdir()


# --- small helpers -------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise HostBedError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")
    return result


def _no_ipv6(interface: str, netns: str | None = None) -> None:
    """IPv4 only: no link-local IPv6 chatter (router solicitations, DAD) on the bed's links."""
    setting = f"/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"
    command = ["sh", "-c", f"[ ! -e {setting} ] || echo 1 > {setting}"]
    where = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*where, *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise HostBedError(f"cannot turn IPv6 off on {interface}: {done.stderr.strip()}")


def _enter(host: Host) -> list[str]:
    return ["nsenter", "-t", str(host.keeper_pid), "-m", "-n", "--wd=/tmp", "--"]


def _is_mount_point(path: str) -> bool:
    """Also true for a bind mount of a folder onto itself (which Path.is_mount misses)."""
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return any(line.split()[1] == path for line in lines)


def _netns_names() -> list[str]:
    listed = _ip("-j", "netns", "list", check=False).stdout.strip()
    return [entry["name"] for entry in json.loads(listed or "[]")]


def _netns_processes(netns: str) -> list[psutil.Process]:
    listed = _ip("netns", "pids", netns, check=False).stdout.split()
    processes = []
    for pid in listed:
        with contextlib.suppress(psutil.NoSuchProcess):
            processes.append(psutil.Process(int(pid)))
    return processes


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every IPv4 network on an interface or in a route of the root namespace."""
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for link in json.loads(_ip("-j", "-4", "addr", "show").stdout or "[]"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", False))
    for route in json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        if route.get("dst", "default") != "default":
            used.append(ipaddress.ip_network(route["dst"], strict=False))
    return used


def _link_up(host: Host) -> bool:
    link = json.loads(_ip("-j", "link", "show", host.veth).stdout)[0]
    return "UP" in link.get("flags", [])


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _states_if(bed: HostBed, expected: dict[str, str]) -> dict[str, str] | None:
    try:
        states = bed.node_states()
    except (requests.RequestException, KeyError, ValueError):
        return None
    matched = all(states.get(ip) == state for ip, state in expected.items())
    return states if matched else None


def _wait(
    condition: Callable[[], Any],
    timeout_s: float,
    what: str,
    check: Callable[[], None] | None = None,
) -> Any:
    """Poll ``condition`` until it is truthy (its value), calling ``check`` between tries."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise HostBedError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.5)


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


def _tail(log: Path, chars: int = 2000) -> str:
    text = log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"
    return f"the end of {log}:\n{text}"
