"""Ray's job client (``ray/dashboard/modules/dashboard_sdk.py``, ``SubmissionClient``): radas's
subclass bounds every request as a whole, raises radas's HTTP error, and sends raw requests;
the server's Ray version. A Ray whose client differs (``targets.JOB_CLIENT_TARGETS``) is
refused with a ``ClusterError`` before anything is sent."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from radas.ray_compat.targets import JOB_CLIENT_TARGETS


def job_client(
    address: str,
    *,
    headers: dict[str, str],
    timeout_s: float,
    request_bound_s: Callable[[], float],
    http_error: Callable[[int, str], Exception],
) -> Any:
    """Ray's ``JobSubmissionClient`` for ``address`` whose every request is bounded as a whole:
    it waits at most ``timeout_s`` to connect, and the request ends, answer read, within
    ``request_bound_s()`` seconds (asked per request: a submission gives its requests what is
    left of its own bound) or raises ``requests.Timeout`` (``RequestDeadline``). Ray 2.60 sends
    them without any timeout (``SubmissionClient._do_request``). An HTTP error raises
    ``http_error(status, text)`` instead of Ray's ``RuntimeError`` (``_raise_error``). A Ray
    whose client differs is refused with a ``ClusterError``."""
    problems = [problem for target in JOB_CLIENT_TARGETS if (problem := target.problem())]
    if problems:
        import ray

        from radas.errors import ClusterError
        from radas.ray_compat.versions import supported_range

        raise ClusterError(
            f"radas cannot talk to clusters with this Ray ({ray.__version__}): its job client "
            f"differs from the one radas was verified against ({supported_range()}): "
            f"{'; '.join(problems)}. Install a Ray in that range."
        )
    return _timed_job_client_class()(
        address,
        headers=headers,
        radas_timeouts=(timeout_s, request_bound_s),
        radas_http_error=http_error,
    )


class RequestDeadline:
    """One request's bound as a whole, not per silence: ``requests`` waits ``timeout`` for each
    read, so a server that trickles its answer (a byte every few seconds) holds it forever.

    >>> with RequestDeadline(10, "GET /api/version") as deadline:  # doctest: +SKIP
    ...     requests.get(url, timeout=10, hooks=deadline.hooks)

    ``hooks`` holds a ``requests`` response hook, called once the status line and headers are
    in, before the body is read: at the deadline it shuts the response's socket down, so the
    read in progress ends at once, and the block raises ``requests.ReadTimeout`` (also when the
    cut body looked complete). The headers themselves are bounded per read (``timeout``): no
    socket is reachable before they are in.
    """

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.expired = False
        self.hooks = {"response": self._arm}
        self._ends_at = time.monotonic() + seconds
        self._timer: threading.Timer | None = None

    def __enter__(self) -> RequestDeadline:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        import requests

        if self._timer is not None:
            self._timer.cancel()
        if self.expired and (error is None or isinstance(error, Exception)):
            raise requests.ReadTimeout(
                f"{self.what}: the whole answer did not arrive within {self.seconds:g} s"
            ) from error

    def _arm(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self._timer = threading.Timer(
            max(0.0, self._ends_at - time.monotonic()), self._cut, (response,)
        )
        self._timer.daemon = True
        self._timer.start()
        return response

    def _cut(self, response: Any) -> None:
        import socket

        self.expired = True
        connection = getattr(response.raw, "connection", None)  # urllib3's HTTPResponse
        sock = getattr(connection, "sock", None)
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            else:
                response.raw.close()


@functools.cache
def _timed_job_client_class() -> type:
    import requests
    from ray.job_submission import JobSubmissionClient

    class TimedJobSubmissionClient(JobSubmissionClient):
        def __init__(
            self,
            address: str,
            *,
            radas_timeouts: tuple[float, Callable[[], float]],
            radas_http_error: Callable[[int, str], Exception],
            **kwargs: Any,
        ) -> None:
            self.radas_timeouts = radas_timeouts
            self.radas_http_error = radas_http_error
            super().__init__(address, **kwargs)

        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            connect, bound_s = self.radas_timeouts
            bound = bound_s()
            if bound <= 0:
                raise requests.Timeout(f"no time was left for {method} {endpoint}")
            kwargs.setdefault("timeout", (min(connect, bound), bound))
            with RequestDeadline(bound, f"{method} {endpoint}") as deadline:
                return super()._do_request(method, endpoint, hooks=deadline.hooks, **kwargs)

        def _raise_error(self, r: Any) -> None:
            raise self.radas_http_error(r.status_code, r.text)

    return TimedJobSubmissionClient


def request(client: Any, method: str, endpoint: str, **kwargs: Any) -> Any:
    """A request to the job server of ``client`` (made by ``job_client``), as its own calls
    make them (its timeouts, its headers); returns the ``requests.Response``."""
    return client._do_request(method, endpoint, **kwargs)


def server_ray_version(client: Any) -> str | None:
    """The Ray version the job server told ``client`` when it connected (Ray 2.55-2.60 keep
    it in ``_server_ray_version``); None when this client keeps none."""
    return getattr(client, "_server_ray_version", None)
