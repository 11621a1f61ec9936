"""The Ray job server of one cluster, as radas talks to it: bounded in time, errors translated.

``JobServer`` wraps Ray's ``JobSubmissionClient``. Every request it sends ends within
``RADAS_CLUSTER_TIMEOUT_S`` seconds (default 10), its whole answer read (a server that trickles
its answer is cut at that bound, not after a silence); a submission (the uploads of the job's
code and the submission itself, with the retries of a head that asks to try again later) ends
within ``RADAS_SUBMIT_TIMEOUT_S`` (default 120) as a whole. Every failure of a call that
leaves the process goes through one table, ``translate`` (applied by ``translated``, which
``JobServer`` wraps around every call and ``clusters.availability`` around its dashboard
reads):

===========================================  ==================================================
what the job client raised                   radas error
===========================================  ==================================================
Ray's ``AuthenticationError``, HTTP 401/403  ``ClusterAuthError``: where radas looked for the token
a timeout (requests, aiohttp, asyncio)       ``ClusterOfflineError``: did not answer within T s
connection refused / reset / closed socket   ``ClusterOfflineError``: no job server answers
404 on the version check or on a request     ``ClusterOfflineError``: the address is not a Ray
for no job, an answer that is not JSON or    job server
not Ray's
404 on a job                                 ``JobNotFoundError``
"try again later" (a head just started)      retried within the submission bound, then
                                             ``ClusterOfflineError``: the cluster is still starting
a 5xx on the head's hop to its job agent     retried within the submission bound (the same
                                             submission id: one job at most), then ``ClusterError``
any other HTTP status                        ``ClusterError`` with the status and the answer
===========================================  ==================================================

Ray's client reads ``RAY_ADDRESS`` / ``RAY_API_SERVER_ADDRESS`` in preference to the address
it is given; radas hides them while connecting, so the configured cluster is the one used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from radas.clusters.config import ClusterConfig, config_path
from radas.core.console import warn
from radas.errors import ClusterAuthError, ClusterError, ClusterOfflineError, JobNotFoundError

TIMEOUT_ENV = "RADAS_CLUSTER_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 10.0
SUBMIT_TIMEOUT_ENV = "RADAS_SUBMIT_TIMEOUT_S"
DEFAULT_SUBMIT_TIMEOUT_S = 120.0  # uploads (up to 100 MiB) are stored by the head first
TRY_AGAIN_FIRST_DELAY_S = 0.5  # a head's "try again later": retried after this, doubling
TRY_AGAIN_MAX_DELAY_S = 5.0
_ADDRESS_VARIABLES = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
_environment_lock = threading.Lock()
_warned_clear_tokens: set[str] = set()


def cluster_timeout_s() -> float:
    """Seconds one request to a job server may take: ``$RADAS_CLUSTER_TIMEOUT_S`` or 10."""
    return _seconds_from(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def submit_timeout_s() -> float:
    """Seconds a whole submission may take (uploads, the request, the retries of a head that
    asks to try again later): ``$RADAS_SUBMIT_TIMEOUT_S`` or 120."""
    return _seconds_from(SUBMIT_TIMEOUT_ENV, DEFAULT_SUBMIT_TIMEOUT_S)


def _seconds_from(variable: str, default: float) -> float:
    configured = os.environ.get(variable, "")
    try:
        value = float(configured) if configured.strip() else default
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ClusterError(
            f"{variable}={configured!r} is not a positive number of seconds; unset it "
            f"(default {default:g}) or set e.g. {variable}={default * 3:g}."
        )
    return value


class HTTPStatusError(RuntimeError):
    """The job server answered with an error status (Ray's client raises a bare RuntimeError)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {_summary(text)}")
        self.status = status
        self.text = text

    @property
    def agent_refused(self) -> bool:
        """The head's job agent answered the submission with a 4xx of its own (a request it
        rejects, e.g. a submission id it already holds): asking again gives the same."""
        return (
            re.search(r"RuntimeError: Request failed with status code 4\d\d", self.text) is not None
        )

    @property
    def agent_unreached(self) -> bool:
        """The head failed on its way to its job agent (the agent down, slow or failing: Ray's
        traceback runs through ``submit_job_internal``) and the agent did not refuse: the job
        may or may not have been created."""
        return self.status >= 500 and "submit_job_internal" in self.text and not self.agent_refused


def _summary(text: str) -> str:
    """An answer's text for a message: a Python traceback (Ray answers a failure with one)
    by its last line, the exception; anything else cut to 300 characters."""
    text = text.strip()
    if text.startswith("Traceback (most recent call last)"):
        last = [line.strip() for line in text.splitlines() if line.strip()][-1]
        return f"{last[:300]} (the end of the job server's traceback)"
    return text[:300]


class JobServer:
    """One cluster's job server: the calls radas makes, each bounded and translated.

    >>> server = JobServer(get_cluster("dev"))  # doctest: +SKIP
    >>> server.list_jobs()  # doctest: +SKIP
    """

    def __init__(self, cluster: ClusterConfig, timeout_s: float | None = None) -> None:
        from radas.ray_compat import job_sdk

        self.cluster = cluster
        self.timeout_s = timeout_s or cluster_timeout_s()
        self.submit_timeout_s = submit_timeout_s()
        self._submission = threading.local()  # .ends_at: this thread is submitting until then
        token = cluster.resolve_token()
        self._token_sent = bool(token)
        if token:
            warn_if_token_in_clear(cluster)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with self.errors("connecting"), _quiet_ray_sdk(), _configured_address_only():
            self._client = job_sdk.job_client(
                cluster.address,
                headers=headers,
                timeout_s=self.timeout_s,
                request_bound_s=self._request_bound_s,
                http_error=HTTPStatusError,
            )

    def _request_bound_s(self) -> float:
        """The bound of the next request of this thread: what is left of the submission it
        belongs to, else ``timeout_s``."""
        ends_at = getattr(self._submission, "ends_at", None)
        return self.timeout_s if ends_at is None else ends_at - time.monotonic()

    @contextlib.contextmanager
    def submitting(self) -> Iterator[None]:
        """The requests this thread sends in the block (uploads, hand-overs, the submission)
        share one bound, ``submit_timeout_s``, instead of ``timeout_s`` each."""
        if getattr(self._submission, "ends_at", None) is not None:  # already in one
            yield
            return
        self._submission.ends_at = time.monotonic() + self.submit_timeout_s
        try:
            yield
        finally:
            self._submission.ends_at = None

    @property
    def ray_version(self) -> str:
        """The Ray version the cluster runs. Ray's client asks the job server's /api/version
        when it connects and keeps the answer, so reading it costs no request; a client that
        keeps none asks again."""
        from radas.ray_compat import job_sdk

        reported = job_sdk.server_ray_version(self._client)
        if reported is None:
            with self.errors("asking for the cluster's Ray version"):
                response = job_sdk.request(self._client, "GET", "/api/version")
                reported = response.json()["ray_version"]
        return str(reported)

    def list_jobs(self) -> list[Any]:
        with self.errors("listing jobs"):
            return list(self._client.list_jobs())

    def get_job_info(self, job_id: str) -> Any:
        with self.errors(f"looking up job {job_id}", job_id):
            return self._client.get_job_info(job_id)

    def get_job_status(self, job_id: str) -> str:
        with self.errors(f"asking for the status of job {job_id}", job_id):
            return str(self._client.get_job_status(job_id).value)

    def get_job_logs(self, job_id: str) -> str:
        with self.errors(f"reading the output of job {job_id}", job_id):
            return str(self._client.get_job_logs(job_id))

    def stop_job(self, job_id: str) -> bool:
        with self.errors(f"stopping job {job_id}", job_id):
            return bool(self._client.stop_job(job_id))

    def submit_job(self, **kwargs: Any) -> str:
        """Submit a job (within ``submitting``'s bound); ``kwargs`` name its ``submission_id``.
        Asked again with back-off until the bound runs out: a head that answers "try again
        later" (its job agent is not up yet, right after ``ray start``: then ClusterOfflineError
        says the cluster is still starting), and a head whose hop to its agent failed (the job
        may exist or not; the same id is sent again, so at most one job is created, and an
        agent that then answers that it holds the id has the job of the earlier try)."""
        with self.submitting(), self.errors("submitting the job"), _quiet_ray_sdk():
            delay, tries, unconfirmed = TRY_AGAIN_FIRST_DELAY_S, 0, False
            while True:
                tries += 1
                try:
                    return str(self._client.submit_job(**kwargs))
                except HTTPStatusError as err:
                    if unconfirmed and err.agent_refused and "already exists" in err.text:
                        return str(kwargs["submission_id"])
                    if not (is_try_again_later(err) or err.agent_unreached):
                        raise
                    unconfirmed = unconfirmed or err.agent_unreached
                    left = self._request_bound_s() - TRY_AGAIN_FIRST_DELAY_S  # for a last try
                    if left <= 0 and unconfirmed:  # no cause: whether the job exists is open
                        raise self._unconfirmed(err, tries) from None
                    if left <= 0:
                        raise self._still_starting(err, tries) from err
                time.sleep(min(delay, left))
                delay = min(delay * 2, TRY_AGAIN_MAX_DELAY_S)

    def _unconfirmed(self, err: HTTPStatusError, tries: int) -> ClusterOfflineError:
        return ClusterOfflineError(
            f"Cluster {self.cluster.name!r} at {self.cluster.address} did not confirm the "
            f"submission: {tries} tries over {self.submit_timeout_s:g} s, its head failed to "
            f"reach its job agent or the agent failed ({err}). The job server's log on the "
            f"head node (dashboard.log, dashboard_agent.log) says why; {SUBMIT_TIMEOUT_ENV} "
            "sets how long radas keeps trying."
        )

    def _still_starting(self, err: HTTPStatusError, tries: int) -> ClusterOfflineError:
        return ClusterOfflineError(
            f"Cluster {self.cluster.name!r} at {self.cluster.address} is still starting: its "
            f"job server answered {tries} submission(s) over {self.submit_timeout_s:g} s with "
            f"{err}, and no job was created. Submit again in a minute (a head just started "
            "needs its job agent up first); "
            f"{SUBMIT_TIMEOUT_ENV} sets how long radas keeps trying."
        )

    def put_package(self, uri: str, data: bytes) -> None:
        """Store ``data`` in the cluster's memory (GCS) under ``uri`` (``gcs://<name>.zip``),
        with the upload Ray uses for a job's code; used to hand over secrets
        (radas.core.secrets)."""
        from radas.ray_compat import job_sdk

        protocol, name = uri.split("://", 1)
        with self.errors("handing over the experiment's secrets"):
            response = job_sdk.request(
                self._client, "PUT", f"/api/packages/{protocol}/{name}", data=data
            )
            if response.status_code != 200:
                raise HTTPStatusError(response.status_code, response.text)

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        with self.errors(f"streaming the output of job {job_id}", job_id), _quiet_ray_sdk():
            async for chunk in self._client.tail_job_logs(job_id):
                yield chunk

    def errors(self, action: str, job_id: str | None = None) -> contextlib.AbstractContextManager:
        """Translate whatever the job client raises while doing ``action`` (on ``job_id``)."""
        if getattr(self._submission, "ends_at", None) is not None:
            return translated(
                self.cluster,
                action,
                self.submit_timeout_s,
                self._token_sent,
                job_id,
                setting=SUBMIT_TIMEOUT_ENV,
            )
        return translated(self.cluster, action, self.timeout_s, self._token_sent, job_id)


def is_try_again_later(err: HTTPStatusError) -> bool:
    """Whether the job server asked to try again later (Ray's job head answers 500 "No
    available agent to submit job, please try again later." while its agent is not up)."""
    return err.status >= 500 and "try again later" in str(err).lower()


def warn_if_token_in_clear(cluster: ClusterConfig) -> None:
    """A RadasWarning (once per cluster and address) when ``cluster``'s token is about to be
    sent over plain http to an address off this machine: anyone on the way can read it."""
    parts = urlsplit(cluster.address)
    if parts.scheme != "http" or _is_loopback(parts.hostname or ""):
        return
    key = f"{cluster.name} {cluster.address}"
    if key in _warned_clear_tokens:
        return
    _warned_clear_tokens.add(key)
    warn(
        f"radas sends the Ray token of cluster {cluster.name!r} over plain http to "
        f"{cluster.address}: anyone who can watch that network can read it and run code on "
        "the cluster. Reach the job server over https (a TLS proxy in front of it) or an SSH "
        f'tunnel (ssh -L 8265:localhost:8265 head, then address = "http://127.0.0.1:8265") '
        f"in [clusters.{cluster.name}] of {config_path()}.",
        stacklevel=4,
    )


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: off this machine as far as radas can tell
        return False


@contextlib.contextmanager
def translated(
    cluster: ClusterConfig,
    action: str,
    timeout_s: float,
    token_sent: bool = True,
    job_id: str | None = None,
    *,
    setting: str = TIMEOUT_ENV,
) -> Iterator[None]:
    """Raise what the block raises talking to ``cluster`` as the radas error ``translate``
    gives (chained to the original); RadasErrors and what is not ours pass unchanged."""
    try:
        yield
    except ClusterError:
        raise
    except Exception as err:
        radas_error = translate(err, cluster, action, timeout_s, token_sent, job_id, setting)
        if radas_error is None:
            raise
        raise radas_error from err


def translate(
    err: BaseException,
    cluster: ClusterConfig,
    action: str,
    timeout_s: float,
    token_sent: bool = True,
    job_id: str | None = None,
    setting: str = TIMEOUT_ENV,
) -> ClusterError | None:
    """The radas error for what the job client raised while doing ``action``; None: not ours.
    ``setting`` names the variable that sets ``timeout_s``, for the timeout's message."""
    from ray.exceptions import AuthenticationError

    where = f"Cluster {cluster.name!r} at {cluster.address}"
    check = (
        f"Check that the cluster runs (a local one: `radas cluster up {cluster.name}`) and its "
        f"address in {config_path()}; `radas clusters` shows which clusters are online."
    )
    if isinstance(err, AuthenticationError) or (
        isinstance(err, HTTPStatusError) and err.status in (401, 403)
    ):
        sources = cluster.token_sources()
        if token_sent:
            problem = f"rejected the token radas sent (from {' or '.join(sources)})"
            fix = "Put the cluster's token there, or fix token_env / token_file"
        elif sources:
            problem = f"requires a token; none found in {' or '.join(sources)}"
            fix = "Put the cluster's token there, or fix token_env / token_file"
        else:
            problem = "requires a token, and its entry names none"
            fix = (
                "radas sends a token only to a cluster whose entry says where it is: add "
                'token_env = "RAY_AUTH_TOKEN" (a variable holding it) or token_file = '
                '"~/.ray/auth_token" (a file, mode 600)'
            )
        return ClusterAuthError(
            f"{where} {problem} ({action}). {fix} in [clusters.{cluster.name}] of {config_path()}."
        )
    if isinstance(err, HTTPStatusError):
        if err.status == 404 and job_id is not None:
            return JobNotFoundError(f"{where} has no job {job_id!r} ({action}): {err}")
        if err.status == 404:  # every Ray job server has the endpoints radas asks for
            return _not_ray(where, cluster, err)
        return ClusterError(
            f"{where} refused {action}: {err}. See the job server's log on the head node "
            f"(dashboard.log); {check}"
        )
    if _is_timeout(err):
        return ClusterOfflineError(
            f"{where} did not answer within {timeout_s:g} s ({action}; {type(err).__name__}). "
            "The head may be down "
            f"or overloaded, or something else listens at that address. {check} "
            f"({setting} sets how long radas waits.)"
        )
    if _is_not_ray(err):
        return _not_ray(where, cluster, err)
    if _is_connection_error(err):
        return ClusterOfflineError(
            f"{where} is offline: no Ray job server answered ({action}; {type(err).__name__}). "
            f"{check}"
        )
    if isinstance(err, RuntimeError) and "WebSocket" in str(err):
        return ClusterOfflineError(f"{where} closed the connection ({action}): {err}. {check}")
    if isinstance(err, requests.RequestException):
        return ClusterError(f"{where}: {action} failed ({type(err).__name__}: {err}). {check}")
    return None


def _not_ray(where: str, cluster: ClusterConfig, err: BaseException) -> ClusterOfflineError:
    return ClusterOfflineError(
        f"{where}: the server there is not a Ray job server ({type(err).__name__}: "
        f"{err}). The address must be the Ray dashboard / job server address of the head "
        "(`ray start --head` prints it; port 8265 by default), not the GCS port or "
        f"another web server. Fix address in [clusters.{cluster.name}] of {config_path()}."
    )


def _is_timeout(err: BaseException) -> bool:
    timeouts = (requests.Timeout, TimeoutError, asyncio.TimeoutError)
    # Ray turns requests' ConnectTimeout into a bare ConnectionError: look at its cause too
    return isinstance(err, timeouts) or isinstance(err.__context__, timeouts)


def _is_not_ray(err: BaseException) -> bool:
    if isinstance(err, (json.JSONDecodeError, requests.exceptions.JSONDecodeError)):
        return True
    if isinstance(err, KeyError) and err.args == ("ray_version",):
        return True
    return isinstance(err, RuntimeError) and str(err).startswith("Version check returned 404")


def _is_connection_error(err: BaseException) -> bool:
    if isinstance(err, (requests.ConnectionError, ConnectionError, OSError)):
        return True
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - ray[default] brings aiohttp
        return False
    return isinstance(err, aiohttp.ClientError)


@contextlib.contextmanager
def _configured_address_only() -> Iterator[None]:
    """Hide RAY_ADDRESS / RAY_API_SERVER_ADDRESS, which Ray's client prefers to its argument."""
    with _environment_lock:
        saved = {name: os.environ.pop(name) for name in _ADDRESS_VARIABLES if name in os.environ}
        try:
            yield
        finally:
            os.environ.update(saved)


@contextlib.contextmanager
def _quiet_ray_sdk() -> Iterator[None]:
    """Ray's job SDK logs every package upload at INFO; radas says what matters itself."""
    from radas.ray_compat.private import UPLOAD_LOGGER

    names = (
        "ray.dashboard.modules.dashboard_sdk",
        UPLOAD_LOGGER,
        "ray.dashboard.modules.job.sdk",
    )
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
