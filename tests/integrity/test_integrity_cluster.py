"""Issue 11: nothing hangs, every cluster failure is one radas error.

Real servers on 127.0.0.1: a "black hole" (a socket that accepts connections and never
answers), plain HTTP servers that are not Ray, and real local Ray clusters of this file's own
(started with ``start_local_cluster`` under unique names, and stopped) for a head that dies
under a following client and for ``radas cluster down`` with jobs running.
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import threading
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from ray import tune

import radas
from radas import cli
from radas.clusters import get_cluster_availability, register_cluster, start_local_cluster
from radas.clusters.config import ClusterConfig, get_cluster, unregister_cluster
from radas.clusters.local import find_local_cluster
from radas.core.naming import full_experiment_name
from radas.errors import ClusterError, ClusterOfflineError, RadasError
from radas.results import tune_state
from support.fault_tools import short_cluster_timeout
from support.waiting import in_thread, wait_for

TIMEOUT_S = 3.0  # RADAS_CLUSTER_TIMEOUT_S in these tests
MARGIN_S = 20.0  # a bound on a hang on a loaded machine, not a benchmark


@pytest.fixture
def short_timeout(monkeypatch, tmp_path):
    """A short RADAS_CLUSTER_TIMEOUT_S, and no Ray token of the real user to send."""
    short_cluster_timeout(monkeypatch, tmp_path, TIMEOUT_S)


@contextmanager
def black_hole():
    """A server that accepts TCP connections (the kernel does) and never reads or answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextmanager
def http_server(status: int, body: bytes):
    """A plain HTTP server (not Ray) answering every GET and POST with ``status`` and ``body``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def register(name: str, address: str, tmp_path: Path) -> None:
    register_cluster(
        ClusterConfig(
            name=name,
            address=address,
            results_root=str(tmp_path / "results"),
            data_root=str(tmp_path / "data"),
            cold_data_root=str(tmp_path / "cold"),
        )
    )


def add(config):
    return {"score": config["a"] + config["b"]}


def run_on(cluster_name: str, **kwargs):
    kwargs.setdefault("user_name", "alice")
    kwargs.setdefault("run_choice", "run")
    return radas.run_experiment_sync(run_with=f"cluster:{cluster_name}", **kwargs)


def timed(function, *args, **kwargs):
    """(the exception ``function`` raised, seconds it took)."""
    start = time.monotonic()
    with pytest.raises(ClusterError) as caught:
        function(*args, **kwargs)
    return caught.value, time.monotonic() - start


# --- a server that never answers: every call ends within the documented bound ----------------


@pytest.mark.integrity("error")
@pytest.mark.parametrize("scheme", ["http://", ""], ids=["http", "no-scheme"])
@pytest.mark.slow
def test_a_server_that_never_answers_fails_within_the_bound(
    project, tmp_path, short_timeout, scheme
):
    name = f"hole-{uuid.uuid4().hex[:6]}"
    with black_hole() as port:
        register(name, f"{scheme}127.0.0.1:{port}", tmp_path)
        assert get_cluster(name).address == f"http://127.0.0.1:{port}"
        client = radas.get_client(user_name="alice", run_with=f"cluster:{name}")
        listed, took_list = timed(client.list_experiments)
        ran, took_run = timed(
            run_on, name, experiment_name="e", trainable=add, param_space={"a": 1, "b": 2}
        )
        report = get_cluster_availability(timeout_s=TIMEOUT_S)
    unregister_cluster(name)
    for error, took in ((listed, took_list), (ran, took_run)):
        assert isinstance(error, ClusterOfflineError)
        assert f"did not answer within {TIMEOUT_S:g} s" in str(error)
        assert f"127.0.0.1:{port}" in str(error) and "RADAS_CLUSTER_TIMEOUT_S" in str(error)
        assert took < TIMEOUT_S + MARGIN_S, f"took {took:.1f} s"
    assert not report[name].online and "ReadTimeout" in (report[name].problem or "")


@pytest.mark.integrity("error")
def test_ray_address_in_the_environment_does_not_redirect_radas(
    project, tmp_path, short_timeout, monkeypatch
):
    """Ray's client prefers RAY_ADDRESS to its argument (a GCS address there meant ~40 s of
    gRPC retries, then a raw RpcError): radas uses the configured address only."""
    name = f"hole-{uuid.uuid4().hex[:6]}"
    with black_hole() as port:
        register(name, f"http://127.0.0.1:{port}", tmp_path)
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
        monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "127.0.0.1:2")
        error, took = timed(radas.get_client(user_name="alice", run_with=f"cluster:{name}").jobs)
    unregister_cluster(name)
    assert isinstance(error, ClusterOfflineError) and f"127.0.0.1:{port}" in str(error)
    assert took < TIMEOUT_S + MARGIN_S
    assert os.environ["RAY_ADDRESS"] == "127.0.0.1:1"  # put back after connecting


@pytest.mark.integrity("error")
@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"<html>Not Found</html>"), (200, b"<html>a web page</html>")],
    ids=["404", "html"],
)
def test_a_server_that_is_not_ray_is_named_so(project, tmp_path, short_timeout, status, body):
    name = f"web-{uuid.uuid4().hex[:6]}"
    with http_server(status, body) as port:
        register(name, f"http://127.0.0.1:{port}", tmp_path)
        listed, took = timed(radas.get_client(user_name="alice", run_with=f"cluster:{name}").jobs)
        ran, _ = timed(
            run_on, name, experiment_name="e", trainable=add, param_space={"a": 1, "b": 2}
        )
        report = get_cluster_availability(timeout_s=TIMEOUT_S)
    unregister_cluster(name)
    for error in (listed, ran):
        assert isinstance(error, ClusterOfflineError)
        assert "is not a Ray job server" in str(error) and "port 8265" in str(error)
        assert f"[clusters.{name}]" in str(error)
    assert took < TIMEOUT_S + MARGIN_S
    assert not report[name].online and "not a Ray job server" in (report[name].problem or "")


@pytest.mark.timing
@pytest.mark.integrity("error")
def test_cli_on_a_server_that_never_answers_exits_1_in_time(
    project, tmp_path, short_timeout, capsys
):
    name = f"hole-{uuid.uuid4().hex[:6]}"
    with black_hole() as port:
        register(name, f"http://127.0.0.1:{port}", tmp_path)
        start = time.monotonic()
        code = cli.main(["ls", "--cluster", name, "--user", "alice"])
        took = time.monotonic() - start
    unregister_cluster(name)
    assert code == 1 and took < TIMEOUT_S + MARGIN_S
    assert "did not answer within 3 s" in capsys.readouterr().err


# --- real clusters of this file's own -------------------------------------------------------


@pytest.fixture
def own_cluster(radas_home):
    """A fresh local cluster under a unique name (2 CPUs), stopped and unregistered after."""
    name = f"integ-{uuid.uuid4().hex[:6]}"
    started = start_local_cluster(name, num_cpus=2)
    holder = {"cluster": started}
    yield holder
    running = find_local_cluster(name)
    if running is not None:
        running.stop()
    unregister_cluster(name)


def counted_sleeper(marks: Path, seconds: float):
    def sleeper(config):
        (marks / f"start-{config['i']}-{uuid.uuid4().hex}").touch()
        for step in range(4):
            time.sleep(seconds / 4)
            radas.report({"step": step, "i": config["i"]})
        (marks / f"done-{config['i']}-{uuid.uuid4().hex}").touch()

    return sleeper


def driver_processes(name: str) -> list[psutil.Process]:
    """The radas job drivers of cluster ``name`` (their environment names the cluster)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "radas.backends.job_driver" not in " ".join(process.info["cmdline"] or []):
                continue
            if process.environ().get("RADAS_CLUSTER") == name:
                found.append(process)
        except psutil.Error:
            continue
    return found


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.integrity("survive")
def test_the_head_dying_under_a_follower_is_one_error_and_restore_continues(
    own_cluster, project, capfd
):
    cluster = own_cluster["cluster"]
    marks = project / "marks"
    marks.mkdir()
    sleeper = counted_sleeper(marks, seconds=2.0)
    space = {"i": tune.grid_search(list(range(6)))}
    experiment_path = Path(get_cluster(cluster.name).results_root) / "alice"
    experiment_path /= full_experiment_name("dies")

    def stored_finished() -> list[int]:
        """Trials Tune's stored experiment state holds as finished (read while it is written)."""
        if not tune_state.state_files(experiment_path):
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a state file being replaced reads as damaged
            try:
                trials = tune_state.load_trial_states(experiment_path)
            except RadasError:
                return []
        return sorted(t.config["i"] for t in trials if t.status == "TERMINATED")

    thread, box = in_thread(
        run_on, cluster.name, experiment_name="dies", trainable=sleeper, param_space=space
    )
    wait_for(lambda: len(stored_finished()) >= 2, what="two finished trials stored")
    drivers = driver_processes(cluster.name)
    assert sum("python" in driver.name() for driver in drivers) == 1  # (and its `sh -c`)
    os.killpg(cluster.head.pid, signal.SIGKILL)  # the head dies, hard
    thread.join(timeout=120)
    assert not thread.is_alive(), "the follower hangs after the head died"
    error = box.get("error")
    assert isinstance(error, ClusterOfflineError), repr(error)
    message = str(error)
    assert f"cluster:{cluster.name} went away" in message
    assert "Results stored so far are kept" in message and str(experiment_path) in message
    assert "run_choice='restore'" in message
    output = capfd.readouterr()
    assert "Task exception was never retrieved" not in output.err + output.out
    seen_before_restart = stored_finished()

    # it is back; the old job's driver (in a session of its own, it outlives the head and may
    # still record an end until then) is stopped first, so it cannot write into the restored
    # experiment: what is stored now is what restore must keep
    own_cluster["cluster"] = start_local_cluster(cluster.name, num_cpus=2)
    assert all(gone(driver) for driver in drivers)
    kept = stored_finished()
    assert set(seen_before_restart) <= set(kept)
    restored = run_on(
        cluster.name,
        experiment_name="dies",
        trainable=sleeper,
        param_space=space,
        run_choice="restore",
    )
    final = restored["tuner"].get_dataframe()
    assert sorted(final["config/i"]) == list(range(6))
    assert set(final["status"]) == {"TERMINATED"}
    assert restored["outcome"].already_done == len(kept) >= 2
    for i in kept:  # stored as finished before the head died: not run again
        assert len(list(marks.glob(f"start-{i}-*"))) == 1


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.integrity("survive")
def test_cluster_down_refuses_running_jobs_and_force_leaves_no_driver(own_cluster, project, capsys):
    cluster = own_cluster["cluster"]
    marks = project / "marks"
    marks.mkdir()
    space = {"i": tune.grid_search([0, 1])}
    thread, box = in_thread(
        run_on,
        cluster.name,
        experiment_name="down",
        trainable=counted_sleeper(marks, seconds=120.0),
        param_space=space,
    )
    wait_for(lambda: len(list(marks.glob("start-*"))) >= 1, what="a trial started")
    drivers = driver_processes(cluster.name)
    assert sum("python" in driver.name() for driver in drivers) == 1  # (and its `sh -c`)
    capsys.readouterr()

    assert cli.main(["cluster", "down", cluster.name]) == 1
    refused = capsys.readouterr().err
    assert "still runs 1 job(s)" in refused and "experiment 'down' of 'alice'" in refused
    assert f"radas cluster down {cluster.name} --force" in refused
    assert find_local_cluster(cluster.name) is not None and not gone(drivers[0])

    assert cli.main(["cluster", "down", cluster.name, "--force"]) == 0
    assert all(gone(driver) for driver in drivers), "a job driver survived cluster down"
    assert driver_processes(cluster.name) == []
    assert find_local_cluster(cluster.name) is None
    stopping = capsys.readouterr().out
    assert re.search(r"stopping 1 job\(s\): radas-alice-down-", stopping)
    thread.join(timeout=120)
    assert not thread.is_alive()
    # the follower saw its job stopped (state saved) or the cluster go: never a raw error
    if "error" in box:
        assert isinstance(box["error"], ClusterOfflineError), repr(box["error"])
    else:
        assert box["results"]["outcome"].interrupted
