"""The WebSocket consumers: thin shells over :mod:`rohrpost.dispatch`.

:class:`SyncRohrpostConsumer` is a Channels ``WebsocketConsumer`` (the 4.x
consumer: handlers run in a worker thread and call the sync helpers).
:class:`AsyncRohrpostConsumer` is an ``AsyncWebsocketConsumer``: it awaits
``async def`` handlers on the event loop and runs sync handlers in a worker
thread through ``database_sync_to_async``. Both answer bad frames, call
``inline`` handlers and forward group messages on the event loop, where no
thread is needed. Routing either one::

    websocket_urlpatterns = [path("ws/rohrpost/", AsyncRohrpostConsumer.as_asgi())]

What both share (groups, limits, authentication, control events, unknown
channel-layer events) is written once, in
:class:`~rohrpost.connection.RohrpostConsumerMixin`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

from asgiref.sync import async_to_sync, markcoroutinefunction, sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from django.db import close_old_connections

from rohrpost import conf, metrics, workers
from rohrpost import handlers as _builtin_handlers  # noqa: F401 - registers "ping"
from rohrpost.connection import (
    RohrpostConsumerMixin,
    _group_frames,
    _on_event_loop,
    group_message_frames,
)
from rohrpost.dispatch import Call, prepare_call
from rohrpost.encoding import TolerantJSONEncoder
from rohrpost.main import handle_rohrpost_message, run_call
from rohrpost.message import GROUP_EVENT_TYPE

# RohrpostConsumerMixin and group_message_frames were defined here: still importable.
__all__ = [
    "AsyncRohrpostConsumer",
    "RohrpostConsumerMixin",
    "SyncRohrpostConsumer",
    "group_message_frames",
]

logger = logging.getLogger("rohrpost")


class _OpenConnectionCount:
    """Counts the connection in ``rohrpost_open_connections`` from its accept to its end.

    Counted as the accept is sent, so that the client, once accepted, sees
    itself counted. The end is the consumer's: a crash or a revocation that
    skips ``websocket_disconnect`` still takes the connection off the count.
    """

    _rohrpost_counted = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            if self._rohrpost_counted:
                self._rohrpost_counted = False
                metrics.connection_closed()

    def _rohrpost_count_open(self) -> None:
        self._rohrpost_counted = True
        metrics.connection_opened()


class SyncRohrpostConsumer(_OpenConnectionCount, RohrpostConsumerMixin, WebsocketConsumer):
    """The rohrpost consumer for sync code: handlers run in a worker thread.

    Like Channels' ``WebsocketConsumer``, it handles frames in a worker thread
    so that handlers may block and use the ORM. Three kinds of work need no
    thread and are done on the event loop instead, saving two thread hops:
    error replies to bad frames, ``inline`` handlers (the built-in ``ping``)
    and forwarding group messages. A subclass that overrides ``receive``,
    ``websocket_receive`` or ``rohrpost_message`` gets the threaded path for
    that event, exactly as in 4.x.

    Attributes:
        json_encoder: The ``json.JSONEncoder`` class that encodes a group
            message sent as an object rather than text (4.x's attribute).
    """

    json_encoder: ClassVar[type[json.JSONEncoder]] = TolerantJSONEncoder

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        self._rohrpost_loop_receive = (
            cls.receive is SyncRohrpostConsumer.receive
            and cls.websocket_receive is WebsocketConsumer.websocket_receive
        )
        self._rohrpost_loop_forward = cls.rohrpost_message is SyncRohrpostConsumer.rohrpost_message
        self._rohrpost_sync_pool = workers.executor()

    def _rohrpost_serves_itself(self) -> bool:
        # An overridden rohrpost_message gets its events through its own channel, as in 4.x.
        return type(self).rohrpost_message is not SyncRohrpostConsumer.rohrpost_message

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an event: frames and group messages that need no thread stay on the loop."""
        event_type = message.get("type")
        if event_type == "websocket.receive" and self._rohrpost_loop_receive:
            await self._rohrpost_areceive(message)
        elif event_type == GROUP_EVENT_TYPE and self._rohrpost_loop_forward:
            for text in _group_frames(self, message):
                await self._rohrpost_asend(text)
        else:
            await super().dispatch(message)

    async def _rohrpost_asend(self, text: str) -> None:
        await self._rohrpost_asgi_send({"type": "websocket.send", "text": text})

    async def _rohrpost_aclose(self, code: int) -> None:
        await self._rohrpost_asgi_send({"type": "websocket.close", "code": code})

    async def _rohrpost_areceive(self, message: dict[str, Any]) -> None:
        taken = await self._rohrpost_atake(message.get("text"), message.get("bytes"))
        if isinstance(taken, Call):
            await workers.in_thread(run_call, self._rohrpost_sync_pool)(self, taken)
            return
        for text in taken:
            await self._rohrpost_asend(text)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._rohrpost_revoked is not None:
            return
        admission = self._rohrpost_gate.admit(
            len(text_data if text_data is not None else bytes_data or b"")
        )
        if admission != "admit":
            async_to_sync(self._rohrpost_arefuse)(admission)
            return
        if self._rohrpost_auth is None:
            handle_rohrpost_message(
                self,
                text_data,
                bytes_data,
                registry=self.rohrpost_registry,
                limits=self._rohrpost_frame_limits,
            )
            return
        call = prepare_call(
            self.rohrpost_registry, text_data, bytes_data, self._rohrpost_frame_limits
        )
        if isinstance(call, str):
            self.send(text_data=call)
        elif refusal := async_to_sync(self._rohrpost_aauthenticate)(call):
            self.send(text_data=refusal)
        else:
            run_call(self, call)

    def rohrpost_message(self, event: dict[str, Any]) -> None:
        """Forward a group message to the client."""
        for text in _group_frames(self, event):
            self.send(text_data=text)

    def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        self._rohrpost_count_open()
        super().accept(subprotocol, headers)

    def websocket_disconnect(self, message: dict[str, Any]) -> None:
        async_to_sync(self._aleave_all_groups)()
        super().websocket_disconnect(message)


class AsyncRohrpostConsumer(_OpenConnectionCount, RohrpostConsumerMixin, AsyncWebsocketConsumer):
    """The rohrpost consumer for async code: async handlers run on the event loop.

    By default a connection's requests are handled one after the other, as
    in 4.x: replies come in request order. ``ROHRPOST["MAX_IN_FLIGHT"] = n``
    lets up to ``n`` handlers of one connection run at once, so a slow
    ``async def`` handler no longer holds up the requests behind it; replies
    then come as handlers finish (clients match them by ``id``). With ``n``
    handlers running, the consumer waits for one to finish before it takes the
    next frame, so a client cannot start more. Sync handlers still run one at
    a time, in Channels' shared worker thread. Handlers still running when the
    client disconnects run to their end; their replies are dropped.

    Attributes:
        json_encoder: As :attr:`SyncRohrpostConsumer.json_encoder`.
    """

    json_encoder: ClassVar[type[json.JSONEncoder]] = TolerantJSONEncoder

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rohrpost_max_in_flight: int = conf.get("MAX_IN_FLIGHT")
        self._rohrpost_in_flight: set[asyncio.Task[None]] = set()
        self._rohrpost_sync_pool = workers.executor()
        # A frame skips Channels' websocket_receive -> receive -> send chain (four
        # calls, each a coroutine) unless a subclass overrides a link of it.
        cls = type(self)
        self._rohrpost_short_receive = (
            cls.receive is AsyncRohrpostConsumer.receive
            and cls.websocket_receive is AsyncWebsocketConsumer.websocket_receive
            and cls.send is AsyncRohrpostConsumer.send
        )

    def _rohrpost_serves_itself(self) -> bool:
        # An overridden rohrpost_message or send gets pushes through its own channel.
        cls = type(self)
        return (
            cls.rohrpost_message is not AsyncRohrpostConsumer.rohrpost_message
            or cls.send is not AsyncRohrpostConsumer.send
        )

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an event; frames and group messages take a short path.

        Channels checks the database connections before every event, a hop to
        a worker thread each time. Frames and group messages skip that here:
        an async handler gets the check right before it runs, a sync handler
        in its worker thread, and inline handlers and group forwarding do not
        touch the database. Every other event goes through Channels' path.
        """
        event_type = message.get("type")
        if event_type == "websocket.receive":
            if self._rohrpost_short_receive:
                await self._rohrpost_areceive(message.get("text"), message.get("bytes"), None)
            else:
                await self.websocket_receive(message)
        elif event_type == GROUP_EVENT_TYPE:
            await self.rohrpost_message(message)
        else:
            await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self._rohrpost_areceive(text_data, bytes_data, self.send)

    async def _rohrpost_areceive(self, text: str | None, binary: bytes | None, send: Any) -> None:
        """Handle a frame; answer through ``send``, or straight into the outbox when ``None``."""
        taken = await self._rohrpost_atake(text, binary)
        if isinstance(taken, Call):
            if self._rohrpost_max_in_flight > 1:
                await self._rohrpost_astart(taken)
                return
            reply = await self._rohrpost_acall(taken)
            if reply is None:
                return
            taken = [reply]
        if send is None:
            outbox = self._rohrpost_outgoing
            assert outbox is not None  # set before the first event
            for text_out in taken:
                await outbox({"type": "websocket.send", "text": text_out})
        else:
            for text_out in taken:
                await send(text_data=text_out)

    async def _rohrpost_acall(self, call: Call) -> str | None:
        if call.mode == "async":
            await _aclose_old_connections()
            return await call.arun(self)
        return await call.arun(self, workers.in_thread(call.handler, self._rohrpost_sync_pool))

    async def _rohrpost_astart(self, call: Call) -> None:
        """Start a handler beside the ones running, once fewer than the maximum run."""
        in_flight = self._rohrpost_in_flight
        while len(in_flight) >= self._rohrpost_max_in_flight:
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            in_flight.difference_update(done)
        task = asyncio.get_running_loop().create_task(self._rohrpost_aanswer(call))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    async def _rohrpost_aanswer(self, call: Call) -> None:
        reply = await self._rohrpost_acall(call)
        if reply is None:
            return
        try:
            await self.send(text_data=reply)
        except Exception:  # the client went away while the handler ran
            logger.info("Dropped the reply to request id %r", call.request["id"], exc_info=True)

    # 4.x handlers call `consumer.send(...)` and `consumer.close()` from sync code.
    # Under this consumer they run in a worker thread, where calling the async
    # methods would only make a coroutine nobody awaits: there, send and close
    # hop to the event loop and wait. On the loop they are awaited as usual.
    @markcoroutinefunction
    def send(self, *args: Any, **kwargs: Any) -> Any:
        """Send a frame: ``await`` it in async code; a plain call in sync handlers."""
        if _on_event_loop():
            return super().send(*args, **kwargs)
        async_to_sync(super().send)(*args, **kwargs)
        return None

    @markcoroutinefunction
    def close(self, *args: Any, **kwargs: Any) -> Any:
        """Close the connection: ``await`` it in async code; a plain call in sync handlers."""
        if _on_event_loop():
            return super().close(*args, **kwargs)
        async_to_sync(super().close)(*args, **kwargs)
        return None

    async def rohrpost_message(self, event: dict[str, Any]) -> None:
        """Forward a group message to the client."""
        for text in _group_frames(self, event):
            await self.send(text_data=text)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        self._rohrpost_count_open()
        await super().accept(subprotocol, headers)

    async def _rohrpost_asend(self, text: str) -> None:
        await self.send(text_data=text)

    async def _rohrpost_aclose(self, code: int) -> None:
        await self.close(code=code)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self._rohrpost_in_flight:
            await asyncio.wait(self._rohrpost_in_flight)
        await self._aleave_all_groups()
        await super().websocket_disconnect(message)


# What Channels runs before every event, for handlers that may use the async ORM.
_aclose_old_connections = sync_to_async(close_old_connections)
