"""A real S3-compatible server for the storage tests: moto's server mode on 127.0.0.1.

Not a test module: ``test_artifacts.py`` and ``test_artifacts_cluster.py`` import it. The server
is a child process the fixture owns (killed by its pid); the bucket is created with boto3.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

# moto accepts any credentials, but botocore signs requests and needs some
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "radas-test",
    "AWS_SECRET_ACCESS_KEY": "radas-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class MotoS3:
    endpoint_url: str
    bucket: str
    pid: int
    env: dict[str, str]  # what a client (or a cluster's trials) needs to reach it

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"


@contextlib.contextmanager
def moto_s3_server(
    bucket: str = "radas-test", timeout_s: float = 60.0, server_env: dict[str, str] | None = None
) -> Iterator[MotoS3]:
    """Start ``python -m moto.server`` on a free port of 127.0.0.1, create ``bucket``, and set
    the AWS variables in this process (restored afterwards). ``server_env``: moto's own
    settings (``INITIAL_NO_AUTH_ACTION_COUNT="1"``: only the bucket's creation is accepted
    without real credentials)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(server_env or {})},
    )
    saved = {name: os.environ.get(name) for name in AWS_ENV}
    os.environ.update(AWS_ENV)
    endpoint_url = f"http://127.0.0.1:{port}"
    try:
        import boto3
        from botocore.exceptions import EndpointConnectionError

        client = boto3.client("s3", endpoint_url=endpoint_url)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except EndpointConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto's S3 server did not start on {endpoint_url} "
                        f"(exit code {process.poll()})"
                    ) from None
                time.sleep(0.2)
        yield MotoS3(endpoint_url, bucket, process.pid, dict(AWS_ENV))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
