"""Access to the external services some tests need (Redis, PostgreSQL).

A test that needs a service asks for it through :func:`require_service`: when
the service does not answer, the test is skipped with the reason, unless
``ROHRPOST_REQUIRE_SERVICES=1`` is set (as CI sets it), when it fails instead.
"""

from __future__ import annotations

import os
import socket

import pytest

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
