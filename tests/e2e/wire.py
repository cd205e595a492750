"""Bounded client-side helpers for the end-to-end tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

#: How long any single client operation (connect, receive, close) may take.
IO_SECONDS = 5.0


async def recv_text(connection: ClientConnection) -> str:
    """Receive one frame within :data:`IO_SECONDS`; it must be a text frame."""
    frame = await asyncio.wait_for(connection.recv(), IO_SECONDS)
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    return frame


async def recv_json(connection: ClientConnection) -> Any:
    """Receive one text frame within :data:`IO_SECONDS` and decode it."""
    return json.loads(await recv_text(connection))


async def send_json(connection: ClientConnection, message: Any) -> None:
    """Send ``message`` as one JSON text frame."""
    await asyncio.wait_for(connection.send(json.dumps(message)), IO_SECONDS)


async def call(connection: ClientConnection, message: Any) -> Any:
    """Send ``message`` and return the next frame, decoded."""
    await send_json(connection, message)
    return await recv_json(connection)


async def assert_ping_works(connection: ClientConnection, request_id: Any = "still-open") -> None:
    """Assert the very next frame after a ping is its pong: the connection is healthy."""
    reply = await call(connection, {"id": request_id, "type": "ping"})
    assert reply == {"id": request_id, "type": "pong"}
