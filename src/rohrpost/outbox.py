"""A connection's frames on their way to the client: bounded, and never blocking the server.

An ASGI server's ``send`` waits while the client does not read (uvicorn's
WebSocket protocols pause when their write buffer is full). A consumer that
awaited it directly would stop with it: no more frames handled, no more
channel-layer events taken, so a logout or a removal from a group sent
meanwhile would wait, or be dropped by a full channel. :class:`Outbox` stands
between the consumer and the server's ``send``: frames are queued and written
by one task, so the consumer never waits for its client.

The queue is bounded: when more than ``ROHRPOST["SEND_QUEUE_LIMIT"]`` bytes
wait for a client, that client has fallen behind for good; the queue is
dropped and the connection closed with :data:`CLOSE_TOO_SLOW` (4008).
:meth:`Outbox.abort` does the same for any code (revocation, for example):
nothing queued goes out any more, only the close frame, as soon as the client
reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

__all__ = ["CLOSE_TOO_SLOW", "Outbox"]

logger = logging.getLogger("rohrpost")

#: Close code for a client that fell behind: more than the send queue's limit waited for it.
CLOSE_TOO_SLOW: Final = 4008

#: How long a connection's close frame may wait for a client that does not read.
CLOSE_WAIT_SECONDS: Final = 5.0

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


class Outbox:
    """The ASGI ``send`` a rohrpost consumer uses: queued, bounded, written by one task.

    Args:
        send: The ASGI server's ``send``.
        limit: Most bytes (characters of text) queued for the client before
            it is closed with :data:`CLOSE_TOO_SLOW`.
        on_overflow: Called (on the event loop) when the limit is passed.
    """

    __slots__ = (
        "_accepted",
        "_closing",
        "_queue",
        "_queued",
        "_send",
        "_writer",
        "limit",
        "on_overflow",
    )

    def __init__(self, send: AsgiSend, limit: int, on_overflow: Callable[[int], None]) -> None:
        self._send = send
        self.limit = limit
        self.on_overflow = on_overflow
        self._queue: deque[dict[str, Any]] = deque()
        self._queued = 0
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._accepted = False

    @property
    def closing(self) -> bool:
        """Whether the connection is closing: nothing more is sent but the close."""
        return self._closing

    @property
    def queued_bytes(self) -> int:
        """Characters of text (and bytes of binary data) queued, less the frame being sent."""
        return self._queued

    async def __call__(self, message: dict[str, Any]) -> None:
        """Take an ASGI message from the consumer; only the handshake is sent straight away."""
        kind = message["type"]
        if not self._accepted:
            # The handshake: accepted, or refused (a close or an HTTP response).
            self._accepted = kind == "websocket.accept"
            await self._send(message)
            return
        if self._closing:
            return  # closed already: later frames (and closes) are dropped
        if kind == "websocket.close":
            self._closing = True
        else:
            self._queued += len(message.get("text") or message.get("bytes") or "")
            if self._queued > self.limit:
                self.on_overflow(CLOSE_TOO_SLOW)
                return
        self._queue.append(message)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._awrite())

    async def _awrite(self) -> None:
        queue = self._queue
        try:
            while queue:
                message = queue.popleft()
                if message["type"] == "websocket.send":
                    self._queued -= len(message.get("text") or message.get("bytes") or "")
                await self._send(message)
        except Exception:  # the client went away: its disconnect ends the consumer
            logger.debug("A frame could not be sent: the client is gone", exc_info=True)
            self._closing = True
            queue.clear()
            self._queued = 0
        finally:
            self._writer = None

    async def adrain(self) -> None:
        """Wait until everything queued is written, for a bounded time; then drop the rest."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait({writer}, timeout=CLOSE_WAIT_SECONDS)
        if self._writer is not None:
            self.abort()

    def abort(self) -> None:
        """Drop every queued frame and stop writing; only :meth:`aclose` sends any more."""
        self._closing = True
        self._queue.clear()
        self._queued = 0
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()

    async def aclose(self, code: int) -> None:
        """Send the close frame with ``code`` after :meth:`abort`, waiting for it a bounded time.

        A client that does not read within :data:`CLOSE_WAIT_SECONDS` does not
        get it; the server's WebSocket ping timeout ends such a connection.
        """
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._send({"type": "websocket.close", "code": code}), CLOSE_WAIT_SECONDS
            )
