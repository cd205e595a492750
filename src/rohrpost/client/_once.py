"""One call and done: :func:`acall_once` for async code, :func:`call_once` for sync code."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from rohrpost.client._client import Client

__all__ = ["acall_once", "call_once"]


async def acall_once(
    url: str,
    type: str,
    data: Any = None,
    *,
    token: str | None = None,
    timeout: float = 5.0,
    origin: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Connect, make one call, close, and return the answer's ``data``.

    Connecting and waiting for the answer may each take up to ``timeout`` seconds.

    Raises:
        RohrpostCallError: The server answered with an error.
        OSError: The server cannot be reached (``ConnectionRefusedError``, ...),
            refused the handshake (:class:`HandshakeFailed`), went away
            (:class:`ConnectionLost`) or did not answer in time (``TimeoutError``).
    """
    client = Client(
        url,
        token=token,
        origin=origin,
        headers=headers,
        call_timeout=timeout,
        open_timeout=timeout,
        ping_interval=None,
        reconnect=False,
    )
    async with client:
        return await client.call(type, data)


def call_once(
    url: str,
    type: str,
    data: Any = None,
    *,
    token: str | None = None,
    timeout: float = 5.0,
    origin: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """The sync twin of :func:`acall_once`, for scripts and management commands::

        task = call_once("ws://127.0.0.1:8000/ws/rohrpost/", "task.add", {"board": 1, "title": "x"})

    It runs its own event loop, so it cannot be called from async code (use
    :func:`acall_once` there).

    Raises:
        RuntimeError: An event loop is running in this thread.
        RohrpostCallError, OSError: As for :func:`acall_once`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("call_once() cannot run inside an event loop; await acall_once().")
    return asyncio.run(
        acall_once(url, type, data, token=token, timeout=timeout, origin=origin, headers=headers)
    )
