"""Fixtures shared by rohrpost's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rohrpost.registry import HANDLERS, HandlerRegistry

# The test kit's fixtures, as an application's conftest.py loads them.
pytest_plugins = ["rohrpost.testing.pytest_plugin"]


@pytest.fixture
def registry() -> Iterator[HandlerRegistry]:
    """The default registry, restored to its original handlers after the test."""
    saved = dict(HANDLERS)
    yield HANDLERS
    HANDLERS.clear()
    HANDLERS.update(saved)


@pytest.fixture
def fresh_channel_layers() -> Iterator[None]:
    """New channel-layer instances for the test (they hold per-loop state)."""
    from channels.layers import channel_layers

    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture
def redis_url() -> str:
    """The URL of the local Redis (skips or fails per ROHRPOST_REQUIRE_SERVICES)."""
    from tests.services import require_redis

    return require_redis()


@pytest.fixture(autouse=True)
def _fresh_log_once() -> Iterator[None]:
    """Each test sees rohrpost's once-per-process log lines (rohrpost.startup) afresh."""
    from rohrpost import startup

    startup._reported.clear()
    yield
    startup._reported.clear()
