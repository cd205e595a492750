"""Access to the external services some tests need (Redis, PostgreSQL).

A test that needs a service asks for it through :func:`require_service`: when
the service does not answer, the test is skipped with the reason, unless
``ROHRPOST_REQUIRE_SERVICES=1`` is set (as CI sets it), when it fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

REDIS_URL = os.environ.get("ROHRPOST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES = {
    "HOST": os.environ.get("ROHRPOST_TEST_PGHOST", "127.0.0.1"),
    "PORT": int(os.environ.get("ROHRPOST_TEST_PGPORT", "5432")),
    "NAME": os.environ.get("ROHRPOST_TEST_PGDATABASE", "test"),
    "USER": os.environ.get("ROHRPOST_TEST_PGUSER", "postgres"),
}


def services_required() -> bool:
    """Tell whether a missing service must fail the run instead of skipping."""
    return os.environ.get("ROHRPOST_REQUIRE_SERVICES", "") not in ("", "0")


def service_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, when services are required, fail) unless ``host:port`` answers."""
    if service_answers(host, port):
        return
    reason = f"{name} is not reachable at {host}:{port}"
    if services_required():
        pytest.fail(f"{reason}, and ROHRPOST_REQUIRE_SERVICES is set", pytrace=False)
    pytest.skip(reason)


def require_redis() -> str:
    """Return the Redis URL for tests, after checking Redis answers."""
    from urllib.parse import urlsplit

    parts = urlsplit(REDIS_URL)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    return REDIS_URL


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


START_SECONDS = 20.0


class RedisServer:
    """A ``redis-server`` of the test's own; :meth:`restart` brings it back empty."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            reason = "redis-server is not installed"
            if services_required():
                pytest.fail(f"{reason}, and ROHRPOST_REQUIRE_SERVICES is set", pytrace=False)
            pytest.skip(reason)
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)
