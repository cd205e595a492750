"""A test kit for applications built on rohrpost.

- :class:`TestClient`: a connected client over Channels' ``WebsocketCommunicator``,
  for either consumer and any routing: ``call``, ``subscribe``,
  ``receive_push`` and ``assert_no_push``.
- :func:`capture_pushes`: what the change feed published inside a block,
  recorded as it happens, in any thread; inside a Django ``TestCase`` too.
- A pytest plugin, :mod:`rohrpost.testing.pytest_plugin` (``pytest_plugins =
  ["rohrpost.testing.pytest_plugin"]`` in ``conftest.py``), with the fixtures
  ``rohrpost_client``, ``rohrpost_connect`` and ``rohrpost_pushes``.

The client needs ``daphne`` (``channels.testing`` imports it); the async
fixtures need ``pytest-asyncio``, and database access ``pytest-django``.
``docs/testing.md`` shows them at work. The 4.x double
:class:`rohrpost.tests.Consumer` stays as it was.
"""

from __future__ import annotations

from rohrpost.testing._capture import CapturedPush, PushCapture, capture_pushes
from rohrpost.testing._client import CallError, TestClient

__all__ = ["CallError", "CapturedPush", "PushCapture", "TestClient", "capture_pushes"]
