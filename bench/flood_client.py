"""The flood benchmark's WebSocket client operations, each bounded in time.

Shared by the benchmark (:mod:`bench.flood`) and the flooding process
(:mod:`bench.flooder`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["IO_SECONDS", "WrongAnswer", "bounded", "open_client"]

#: Bound on every single client operation: connect, send, receive, close.
IO_SECONDS = 5.0


class WrongAnswer(Exception):
    """The server answered something the protocol does not allow, or nothing at all."""


async def bounded(step: Awaitable[Any], what: str) -> Any:
    """Await ``step`` for at most :data:`IO_SECONDS`; a timeout is a wrong answer."""
    try:
        return await asyncio.wait_for(step, IO_SECONDS)
    except asyncio.TimeoutError:
        raise WrongAnswer(f"{what}: nothing within {IO_SECONDS:.0f} s") from None


async def open_client(
    url: str, *, deflate: bool = False, source: str = "127.0.0.1"
) -> ClientConnection:
    # No keepalive pings: only the protocol's frames are on the wire. (The client's
    # max_size bounds what it receives; what it sends, 2 MB included, is not limited.)
    return await connect(
        url,
        compression="deflate" if deflate else None,
        ping_interval=None,
        open_timeout=IO_SECONDS,
        close_timeout=IO_SECONDS,
        local_addr=(source, 0),
    )
