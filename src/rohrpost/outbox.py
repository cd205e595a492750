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
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Final

__all__ = ["CLOSE_TOO_SLOW", "Outbox"]

logger = logging.getLogger("rohrpost")

#: Close code for a client that fell behind: more than the send queue's limit waited for it.
CLOSE_TOO_SLOW: Final = 4008

#: How long a connection's close frame may wait for a client that does not read.
CLOSE_WAIT_SECONDS: Final = 5.0

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, None], waiting_for: Any) -> Generator[Any, Any, None]:
    """Await the rest of a coroutine that was started by hand and is waiting.

    The task that awaits this gets what the coroutine waits for, exactly as
    if it had run the coroutine from the start; results, errors and
    cancellation are passed through.
    """
    while True:
        try:
            sent = yield waiting_for
        except BaseException as exc:
            try:
                waiting_for = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_for = coroutine.send(sent)
            except StopIteration:
                return


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
        # Made on the first frame: an idle connection's outbox holds no queue.
        self._queue: deque[dict[str, Any]] | None = None
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
        self.put(message)

    def put(self, message: dict[str, Any]) -> None:
        """Queue a frame (or the close) after the handshake, without waiting; on the event loop.

        What the hub calls for every push: writing a frame to a client that
        reads starts at once, as with ``await outbox(message)``.
        """
        kind = message["type"]
        if self._closing or not self._accepted:
            # Closed already: later frames (and closes) are dropped. Not accepted
            # yet: a push to a group joined before the handshake has no client.
            return
        if kind == "websocket.close":
            self._closing = True
        else:
            self._queued += len(message.get("text") or message.get("bytes") or "")
            if self._queued > self.limit:
                self.on_overflow(CLOSE_TOO_SLOW)
                return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(message)
        if self._writer is None:
            self._start_writing()

    def _start_writing(self) -> None:
        """Write the queue: at once, as far as the server takes frames without waiting.

        Almost always the server's ``send`` finishes without waiting (its
        buffer has room), and a task per frame would be pure cost. So the
        send is started here; only when it has to wait does a writer task
        take it over, and the frames after it, until the queue is empty.
        """
        queue = self._queue
        assert queue is not None
        while queue:
            sending = self._send(self._take(queue))
            if not isinstance(sending, Coroutine):  # some other awaitable: a task awaits it
                self._writer = asyncio.get_running_loop().create_task(self._awrite(sending))
                return
            try:
                waiting_for = sending.send(None)
            except StopIteration:
                continue
            except Exception:
                self._gone()
                return
            self._writer = asyncio.get_running_loop().create_task(
                self._awrite(_resume(sending, waiting_for))
            )
            return

    def _take(self, queue: deque[dict[str, Any]]) -> dict[str, Any]:
        message = queue.popleft()
        if message["type"] == "websocket.send":
            self._queued -= len(message.get("text") or message.get("bytes") or "")
        return message

    async def _awrite(self, started: Awaitable[None]) -> None:
        queue = self._queue
        try:
            await started
            while queue:
                await self._send(self._take(queue))
        except Exception:
            self._gone()
        finally:
            self._writer = None

    def _gone(self) -> None:
        """The client went away: its disconnect ends the consumer; nothing more is sent."""
        logger.debug("A frame could not be sent: the client is gone", exc_info=True)
        self._drop_queue()

    def _drop_queue(self) -> None:
        self._closing = True
        if self._queue is not None:
            self._queue.clear()
        self._queued = 0

    async def adrain(self) -> None:
        """Wait until everything queued is written, for a bounded time; then drop the rest."""
        writer = self._writer
        if writer is not None:
            await asyncio.wait({writer}, timeout=CLOSE_WAIT_SECONDS)
        if self._writer is not None:
            self.abort()

    def abort(self) -> None:
        """Drop every queued frame and stop writing; only :meth:`aclose` sends any more."""
        self._drop_queue()
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
