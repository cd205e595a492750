"""rohrpost's pytest fixtures. Load them in your top-level ``conftest.py``::

    pytest_plugins = ["rohrpost.testing.pytest_plugin"]

or with ``-p rohrpost.testing.pytest_plugin`` in pytest's ``addopts``.

- ``rohrpost_client``: a :class:`~rohrpost.testing.TestClient`, connected, to
  the project's ASGI application (``settings.ASGI_APPLICATION``) at
  ``/ws/rohrpost/``, or to an :class:`~rohrpost.AsyncRohrpostConsumer` when
  the project names none; disconnected after the test.
- ``rohrpost_connect``: opens more clients, each as
  ``async with rohrpost_connect(user=alice) as client``, with the same
  arguments as :class:`~rohrpost.testing.TestClient`.
- ``rohrpost_pushes``: a :class:`~rohrpost.testing.PushCapture` of the whole
  test; call ``rohrpost_pushes.wait(n)`` for pushes published in other threads,
  and use :func:`~rohrpost.testing.capture_pushes` for a block of its own.

The async fixtures need ``pytest-asyncio``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

__all__ = ["rohrpost_client", "rohrpost_connect", "rohrpost_pushes"]

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - the async fixtures then need another async plugin
    async_fixture = pytest.fixture  # type: ignore[assignment]


def _default_application() -> Any:
    from django.conf import settings

    name = getattr(settings, "ASGI_APPLICATION", None)
    if not name:
        return None
    from django.utils.module_loading import import_string

    return import_string(name)


@pytest.fixture
def rohrpost_connect() -> Callable[..., AbstractAsyncContextManager[Any]]:
    """Open test clients: ``async with rohrpost_connect(user=alice) as client``."""
    from rohrpost.testing import TestClient

    @asynccontextmanager
    async def connect(application: Any = None, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with TestClient(application or _default_application(), *args, **kwargs) as client:
            yield client

    return connect


@async_fixture
async def rohrpost_client(
    rohrpost_connect: Callable[..., AbstractAsyncContextManager[Any]],
) -> AsyncIterator[Any]:
    """A test client connected to the project's rohrpost endpoint."""
    async with rohrpost_connect() as client:
        yield client


@pytest.fixture
def rohrpost_pushes() -> Iterator[Any]:
    """Every push the change feed publishes during the test (a ``PushCapture``)."""
    from rohrpost.testing import capture_pushes

    with capture_pushes() as capture:
        yield capture
