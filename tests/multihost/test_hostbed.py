"""The multi-host test bed (tests/support/hostbed.py): hosts that are separate in network and files.

Every test here builds real namespaces, a real bridge, real `ray start` nodes and a real S3
server (moto) on the bridge address; nothing is faked. The client is this process, in the root
namespace, reaching the head only through the bridge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from support.hostbed import PREFIX, HostBed, HostBedError, available, host_bed

pytest_plugins = ["support.hostbed_fixtures"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.cluster,
    pytest.mark.xdist_group("hostbed"),  # one worker: the bed is machine-wide
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

JOB_SCRIPT = """
import json, os
import boto3, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

BUCKET, PREFIX = os.environ["BED_BUCKET"], os.environ["BED_PREFIX"]

def s3():
    return boto3.client("s3", endpoint_url=os.environ["BED_S3"])

@ray.remote(num_cpus=1)
def where():
    ip = ray.util.get_node_ip_address()
    s3().put_object(Bucket=BUCKET, Key=f"{PREFIX}/from/{ip}", Body=ip.encode())
    return ip

ray.init()
nodes = [node for node in ray.nodes() if node["Alive"]]
pinned = [
    where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
    for n in nodes
]
ips = ray.get([task.remote() for task in pinned])
listed = s3().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/from/")["Contents"]
note = s3().get_object(Bucket=BUCKET, Key=f"{PREFIX}/note")["Body"].read().decode()
print("RESULT " + json.dumps({"ips": ips, "keys": [o["Key"] for o in listed], "note": note}))
"""


class _TheTestFailed(Exception):
    """Raised by a test inside a bed; not a RuntimeError, so a HostBedError (one) from the
    bed's set-up is reported as itself instead of as a message that does not match."""


def test_a_test_that_raises_inside_the_bed_leaves_nothing_behind():
    """Namespaces, links, mounts and processes of a bed are gone after an exception in it."""
    before = _system_snapshot()
    with pytest.raises(_TheTestFailed), host_bed(workers=1) as bed:
        made = _bed_objects(bed)
        assert made["netns"] <= set(_netns_names())  # positive control: all there now
        assert made["links"] <= set(_link_names())
        assert all(psutil.pid_exists(pid) for pid in made["pids"])
        assert len(made["pids"]) >= 6, made  # keepers, ray start, gcs, raylet, ..., moto
        raise _TheTestFailed
    _assert_gone(made, before)


def test_a_failed_set_up_leaves_nothing_behind():
    before = _system_snapshot()
    with pytest.raises(HostBedError) as raised:  # noqa: SIM117
        with host_bed(workers=1, head_args=["--no-such-flag"]):
            pytest.fail("the bed must not come up with a bad `ray start` flag")
    message = str(raised.value)
    assert message.startswith("`ray start` on head exited"), message  # not an earlier step
    assert "no-such-flag" in message  # the head's log tail names the cause
    after = _system_snapshot()
    assert after == before


FROM_A_CHECKOUT = """
import json, sys
from support.hostbed import _netns_names, _netns_processes, host_bed

with host_bed(workers=0) as bed:
    head = bed.head
    seen = bed.run(head, "python -c 'import sys, ray; print(sys.prefix, ray.__version__)'")
    ray_cli = bed.run(head, "command -v ray")
    pids = [head.keeper_pid, head.node_pid, *(p.pid for p in _netns_processes(head.netns))]
    made = {"netns": head.netns, "links": [bed.bridge, head.veth], "pids": pids}
    print("BED " + json.dumps({"client": sys.prefix, "host": seen.stdout.split(),
                               "error": seen.stderr, "ray": ray_cli.stdout.strip(), **made}))
print("AFTER " + json.dumps({"netns": [n for n in _netns_names() if n == made["netns"]]}))
"""


def test_the_bed_works_from_a_checkout_and_venv_under_tmp(tmp_path: Path):
    """A clone under /tmp (a CI runner's, a newcomer's): every host gets a private /tmp,
    yet still the venv that lives under the client's /tmp (issue 25 item 6).

    Run from such a clone, the test starts the bed from the suite's own venv. Otherwise the
    repository (venv inside) is bound at a path under /tmp in a mount namespace of the test's
    own, which is what a clone there looks like to Python (``sys.prefix`` under /tmp; the
    venv's scripts still name the Python of the real path, which the hosts see). A head-only
    bed is started from that venv and checked, then checked gone.
    """
    repo = Path(__file__).resolve().parents[2]
    venv = Path(sys.prefix)
    if venv.is_relative_to("/tmp"):  # the suite runs from a clone under /tmp: the case itself
        checkout, command = repo, [sys.executable, "-c", FROM_A_CHECKOUT]
    else:
        checkout = tmp_path / "radas"
        checkout.mkdir()
        binds = [(repo, checkout)]
        if venv.is_relative_to(repo):
            python = checkout / venv.relative_to(repo) / "bin" / "python"
        else:  # a venv outside the checkout: bound under /tmp too
            (tmp_path / "venv").mkdir()
            binds.append((venv, tmp_path / "venv"))
            python = tmp_path / "venv" / "bin" / "python"
        mounts = " && ".join(f"mount --bind {source} {target}" for source, target in binds)
        command = [
            *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
            f'{mounts} && exec {python} -c "$0"',
            FROM_A_CHECKOUT,
        ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{checkout / 'tests'}:{checkout / 'src'}"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    bed = json.loads(done.stdout.split("BED ", 1)[1].splitlines()[0])
    client_prefix = bed["client"]
    assert Path(client_prefix).is_relative_to("/tmp"), bed  # the case of the issue
    assert bed["host"] == [client_prefix, _ray_version()], bed  # the same venv on the host
    assert bed["ray"] == f"{client_prefix}/bin/ray", bed  # `ray start` came from it too
    after = json.loads(done.stdout.split("AFTER ", 1)[1].splitlines()[0])
    assert after == {"netns": []}
    assert not set(bed["links"]) & set(_link_names())
    alive = [pid for pid in bed["pids"] if _alive(pid)]
    assert alive == [], [psutil.Process(pid).cmdline() for pid in alive]
    assert len(bed["pids"]) >= 4, bed  # keeper, ray start, gcs, raylet (positive control)


def test_a_job_from_the_client_runs_on_every_host_and_shares_the_s3_bucket(
    multi_host_bed: HostBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from ray.job_submission import JobSubmissionClient

    from radas.clusters.config import get_cluster

    bed = multi_host_bed
    route = subprocess.run(["ip", "route", "get", bed.head.ip], capture_output=True, text=True)
    assert f"dev {bed.bridge} " in route.stdout  # the client reaches the head via the bridge
    config = bed.write_cluster_config(tmp_path / "config.toml", "bed")
    monkeypatch.setenv("RADAS_CONFIG", str(tmp_path / "config.toml"))
    assert get_cluster("bed") == config
    assert config.token_file == str(bed.token_file)
    assert oct(bed.token_file.stat().st_mode & 0o777) == "0o600"
    prefix = f"job-{uuid.uuid4().hex[:8]}"
    s3 = bed.s3_client()
    s3.put_object(Bucket=bed.s3_bucket, Key=f"{prefix}/note", Body=b"written by the client")
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "job.py").write_text(JOB_SCRIPT)

    token = config.resolve_token()  # read from the token_file the config names
    assert token == bed.token
    client = JobSubmissionClient(bed.address, headers={"Authorization": f"Bearer {token}"})
    job_id = client.submit_job(
        entrypoint="python job.py",
        runtime_env={
            "working_dir": str(tmp_path / "job"),
            "env_vars": {
                "BED_S3": bed.s3_endpoint_url,
                "BED_BUCKET": bed.s3_bucket,
                "BED_PREFIX": prefix,
            },
        },
    )
    status = _wait_for_job(client, job_id)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs
    result = json.loads(logs.split("RESULT ", 1)[1].splitlines()[0])
    host_ips = sorted(host.ip for host in bed.hosts)
    assert sorted(result["ips"]) == host_ips  # one task ran on each host
    assert result["note"] == "written by the client"
    expected_keys = sorted(f"{prefix}/from/{ip}" for ip in host_ips)
    assert sorted(result["keys"]) == expected_keys
    listed = s3.list_objects_v2(Bucket=bed.s3_bucket, Prefix=f"{prefix}/from/")["Contents"]
    assert sorted(o["Key"] for o in listed) == expected_keys  # the client sees what hosts wrote


def test_no_host_sees_the_clients_files_nor_another_hosts(
    multi_host_bed: HostBed, bed_client_dirs: dict[str, Path], radas_home: Path
):
    bed = multi_host_bed
    secret = uuid.uuid4().hex
    client_files = [
        radas_home / f"client-{secret}",
        bed_client_dirs["project"] / f"client-{secret}",
        bed_client_dirs["results"] / f"client-{secret}",
    ]
    for path in client_files:
        path.write_text(secret)
    repo_file = Path(sys.prefix).parent / "pyproject.toml"  # the folder holding the venv
    try:
        for host in bed.hosts:
            for path in [*client_files, bed.token_file, repo_file]:
                assert bed.run(host, f"test -e {path}").returncode == 1, (host.name, path)
            python = bed.run(host, f"{sys.executable} -c 'import ray; print(ray.__version__)'")
            assert python.stdout.strip() == _ray_version(), python.stderr  # the same image
            assert bed.run(host, f"touch {sys.executable}").returncode != 0  # read-only
            leaked = [line for line in bed.run(host, "env").stdout.split() if "RADAS" in line]
            assert leaked == []
            written = bed.run(host, f"echo {host.name} > /tmp/host-{secret}")
            assert written.returncode == 0, written.stderr
            into_results = bed_client_dirs["results"] / f"host-{secret}"
            assert bed.run(host, f"echo {host.name} > {into_results}").returncode == 0
            assert not into_results.exists()  # it wrote into its own tmpfs, not the client's
        for host in bed.hosts:
            seen = bed.run(host, f"cat /tmp/host-{secret}")
            assert seen.stdout.strip() == host.name  # each host its own /tmp
        assert not Path(f"/tmp/host-{secret}").exists()  # nor the client's
    finally:
        for path in client_files:
            path.unlink()


def test_a_killed_raylet_makes_ray_see_its_node_dead(multi_host_bed: HostBed):
    bed = multi_host_bed
    victim = bed.workers[-1]
    killed = time.monotonic()
    bed.kill_raylet(victim)
    states = bed.wait_for_states({victim.ip: "DEAD", bed.head.ip: "ALIVE"}, timeout_s=120)
    print(f"\nraylet killed -> seen dead in {time.monotonic() - killed:.1f} s")
    assert states[bed.workers[0].ip] == "ALIVE"


def test_a_worker_cut_off_the_network_is_seen_dead(multi_host_bed: HostBed):
    bed = multi_host_bed
    victim = bed.workers[0]
    cut = time.monotonic()
    bed.link_down(victim)
    states = bed.wait_for_states({victim.ip: "DEAD", bed.head.ip: "ALIVE"}, timeout_s=120)
    print(f"\ncut off -> seen dead in {time.monotonic() - cut:.1f} s")
    assert states[victim.ip] == "DEAD"
    reached = bed.run(bed.head, f'python -c "{_CONNECT}" {victim.ip}')
    assert "unreachable" in reached.stdout, reached  # the head cannot reach it any more

    revived = time.monotonic()
    bed.revive(victim)  # link up, a fresh `ray start`: a new node at the same address
    print(f"revived in {time.monotonic() - revived:.1f} s")
    assert bed.node_states() == {host.ip: "ALIVE" for host in bed.hosts}


_CONNECT = (
    "import socket, sys; s = socket.socket(); s.settimeout(2); "
    "print('reached' if s.connect_ex((sys.argv[1], 6379)) in (0, 111) else 'unreachable')"
)


# --- helpers ----------------------------------------------------------------------------------


def _wait_for_job(client, job_id: str, timeout_s: float = 240.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        assert time.monotonic() < deadline, f"job {job_id} still {status}"
        time.sleep(1)


def _ray_version() -> str:
    import ray

    return ray.__version__


def _bed_objects(bed: HostBed) -> dict[str, set]:
    pids = {host.keeper_pid for host in bed.hosts} | {host.node_pid for host in bed.hosts}
    for host in bed.hosts:
        listed = subprocess.run(
            ["ip", "netns", "pids", host.netns], capture_output=True, text=True
        ).stdout
        pids |= {int(pid) for pid in listed.split()}
    pids |= {c.pid for c in psutil.Process().children() if bed.bridge_ip in c.cmdline()}  # S3
    return {
        "netns": {host.netns for host in bed.hosts},
        "links": {bed.bridge} | {host.veth for host in bed.hosts},
        "pids": pids,
        "prefix": {bed.bridge.removesuffix("br")},
    }


def _assert_gone(made: dict[str, set], before: dict[str, object]) -> None:
    assert not made["netns"] & set(_netns_names())
    assert not made["links"] & set(_link_names())
    prefix = next(iter(made["prefix"]))
    assert [line for line in _mounts() if prefix in line] == []
    alive = [pid for pid in made["pids"] if _alive(pid)]
    assert alive == [], [psutil.Process(pid).cmdline() for pid in alive]
    assert _system_snapshot() == before


def _system_snapshot() -> dict[str, object]:
    """What beds leave in the root namespace (other helpers' mounts may come and go), and
    this process's own children (a bed's keepers, nodes and S3 server are)."""
    return {
        "children": sorted(child.pid for child in psutil.Process().children()),
        "netns": _netns_names(),
        "links": [name for name in _link_names() if name.startswith(PREFIX)],
        "mounts": [line for line in _mounts() if "netns" in line or PREFIX in line],
    }


def _netns_names() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return sorted(line.split()[0] for line in listed.splitlines() if line.strip())


def _link_names() -> list[str]:
    listed = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout
    return sorted(link["ifname"] for link in json.loads(listed))


def _mounts() -> list[str]:
    return sorted(Path("/proc/mounts").read_text().splitlines())


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
