"""The WebSocket consumers: thin shells over :mod:`rohrpost.dispatch`.

:class:`SyncRohrpostConsumer` is a Channels ``WebsocketConsumer`` (the 4.x
consumer: handlers run in a worker thread and call the sync helpers).
:class:`AsyncRohrpostConsumer` is an ``AsyncWebsocketConsumer``: it awaits
``async def`` handlers on the event loop and runs sync handlers in a worker
thread through ``database_sync_to_async``. Both answer bad frames, call
``inline`` handlers and forward group messages on the event loop, where no
thread is needed. Routing either one::

    websocket_urlpatterns = [path("ws/rohrpost/", AsyncRohrpostConsumer.as_asgi())]

Group membership, the group-message event and the handling of unknown
channel-layer events are written once, in :class:`RohrpostConsumerMixin`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from asgiref.sync import async_to_sync, markcoroutinefunction, sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from django.db import close_old_connections

from rohrpost import conf, control, encoding
from rohrpost import handlers as _builtin_handlers  # noqa: F401 - registers "ping"
from rohrpost.auth import CLOSE_UNAUTHENTICATED, Authenticator
from rohrpost.dispatch import Call, prepare_call
from rohrpost.limits import CLOSE_FLOODING, COOLDOWN, Admission, FrameGate
from rohrpost.main import handle_rohrpost_message, run_call
from rohrpost.message import GROUP_EVENT_TYPE
from rohrpost.protocol import Limits, generate_id
from rohrpost.registry import HANDLERS, HandlerRegistry

__all__ = ["AsyncRohrpostConsumer", "RohrpostConsumerMixin", "SyncRohrpostConsumer"]

logger = logging.getLogger("rohrpost")


class RohrpostConsumerMixin:
    """What both consumers share: configuration, groups, limits and channel-layer events.

    Besides group messages, both handle rohrpost's control events
    (:mod:`rohrpost.control`): leaving a group on the server's order, and
    closing; an authenticated connection is in its user's private group.
    Both authenticate requests as :mod:`rohrpost.auth` describes (token hook,
    anonymous connections refused with 4001) when the settings ask for it.

    Attributes:
        rohrpost_registry: The handlers this endpoint serves (default: :data:`HANDLERS`).
        rohrpost_limits: The frame size and depth bounds; ``None`` (the default)
            takes them from ``ROHRPOST["MAX_FRAME_BYTES"]`` and ``["MAX_DEPTH"]``.
        rohrpost_groups: The groups this connection joined through :meth:`aadd_to_group`.
    """

    rohrpost_registry: ClassVar[HandlerRegistry] = HANDLERS
    rohrpost_limits: ClassVar[Limits | None] = None

    channel_layer: Any
    channel_name: str
    send: Any  # provided by the Channels consumer the mixin is combined with

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rohrpost_groups: set[str] = set()
        # Frames sent by an inline handler through the sync helpers; sent after it returns.
        self._rohrpost_outbox: list[str] | None = None
        self._rohrpost_frame_limits = self.rohrpost_limits or Limits(
            max_frame_bytes=conf.get("MAX_FRAME_BYTES"), max_depth=conf.get("MAX_DEPTH")
        )
        self._rohrpost_gate = FrameGate.from_settings()
        self._rohrpost_cooldown: float = conf.get("FLOOD_COOLDOWN")
        self._rohrpost_auth = Authenticator.from_settings()
        # The private group of the connection's user, once joined (see rohrpost.control).
        self._rohrpost_user_group: str | None = None
        self._rohrpost_asgi_send: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Channels may wrap `send` (the sync consumer keeps only a sync wrapper);
        # the paths on the event loop need the ASGI server's own.
        self._rohrpost_asgi_send = send
        await super().__call__(scope, receive, send)  # type: ignore[misc]

    async def _rohrpost_asend(self, text: str) -> None:
        """Send a frame from the event loop (each consumer knows how)."""
        raise NotImplementedError  # pragma: no cover - both consumers define it

    async def _rohrpost_aclose(self, code: int) -> None:
        """Close the connection from the event loop (each consumer knows how)."""
        raise NotImplementedError  # pragma: no cover - both consumers define it

    async def _rohrpost_aadmit(self) -> bool:
        """Pass a frame through the rate limit, on the loop; answer it when refused."""
        admission = self._rohrpost_gate.admit()
        if admission == "admit":
            return True
        await self._rohrpost_arefuse(admission)
        return False

    async def _rohrpost_arefuse(self, admission: Admission) -> None:
        """Answer a frame the rate limit refused; on the flood close, end the consumer."""
        if admission == "drop":
            return
        await self._rohrpost_asend(FrameGate.refusal)
        if admission == "close":
            COOLDOWN.record(self.scope)  # type: ignore[attr-defined]
            await self._rohrpost_aclose(CLOSE_FLOODING)
            # Stop here, as if the client had gone: the frames it already
            # sent are not dispatched, and the ASGI server, no longer asked
            # for more, stops reading the socket (backpressure).
            await self.dispatch({"type": "websocket.disconnect", "code": CLOSE_FLOODING})

    def rohrpost_deliver(self, text: str) -> None:
        """Send a frame from sync code (what the sync send helpers call).

        Works from a worker thread (a sync handler) and from an inline handler
        on the event loop. Elsewhere on the loop, use ``await asend_message(...)``.
        """
        if not _on_event_loop():
            self.send(text_data=text)
        elif self._rohrpost_outbox is not None:
            self._rohrpost_outbox.append(text)
        else:
            raise RuntimeError(
                "The sync send helpers cannot block the event loop: in async code, "
                "use `await asend_message(...)` (or `await consumer.send(text_data=...)`)."
            )

    def _rohrpost_run_inline(self, call: Call) -> list[str]:
        """Run an inline handler on the event loop; return the frames to send, in order."""
        self._rohrpost_outbox = outbox = []
        try:
            reply = call.run(self)
        finally:
            self._rohrpost_outbox = None
        if reply is not None:
            outbox.append(reply)
        return outbox

    async def aadd_to_group(self, group_name: str) -> None:
        """Join ``group_name``: the connection receives what is sent to the group."""
        await self.channel_layer.group_add(group_name, self.channel_name)
        self.rohrpost_groups.add(group_name)

    async def aremove_from_group(self, group_name: str) -> None:
        """Leave ``group_name``; leaving a group not joined is harmless."""
        self.rohrpost_groups.discard(group_name)
        await self.channel_layer.group_discard(group_name, self.channel_name)

    def add_to_group(self, group_name: str) -> None:
        """Sync twin of :meth:`aadd_to_group`, for sync handlers."""
        async_to_sync(self.aadd_to_group)(group_name)

    def remove_from_group(self, group_name: str) -> None:
        """Sync twin of :meth:`aremove_from_group`, for sync handlers."""
        async_to_sync(self.aremove_from_group)(group_name)

    async def _aleave_all_groups(self) -> None:
        groups, self.rohrpost_groups = self.rohrpost_groups, set()
        if self._rohrpost_user_group is not None:
            groups.add(self._rohrpost_user_group)
            self._rohrpost_user_group = None
        if self.channel_layer is not None:
            for group_name in groups:
                await self.channel_layer.group_discard(group_name, self.channel_name)

    async def _rohrpost_ajoin_user_group(self) -> None:
        user = self.scope.get("user")  # type: ignore[attr-defined]
        if getattr(user, "is_authenticated", False):
            await self._rohrpost_aswitch_user_group(control.user_group(user))

    async def _rohrpost_aswitch_user_group(self, group: str) -> None:
        old, self._rohrpost_user_group = self._rohrpost_user_group, group
        if self.channel_layer is None or old == group:
            return
        if old is not None:
            await self.channel_layer.group_discard(old, self.channel_name)
        await self.channel_layer.group_add(group, self.channel_name)

    async def _rohrpost_aauthenticate(self, call: Call) -> str | None:
        """Run the authentication step for a request; return the error frame if refused.

        A token that checks out makes its user the connection's user, and
        moves the connection into that user's private group.
        """
        assert self._rohrpost_auth is not None
        scope = self.scope  # type: ignore[attr-defined]
        user, refusal = await self._rohrpost_auth.acheck(call.request, scope)
        if user is not None:
            scope["user"] = user
            await self._rohrpost_aswitch_user_group(control.user_group(user))
        return refusal

    async def _rohrpost_arefuse_anonymous(self) -> bool:
        """Close an anonymous connection when authentication is required; say if it was."""
        auth = self._rohrpost_auth
        if auth is None or not auth.refuses_connection(self.scope):  # type: ignore[attr-defined]
            return False
        # Accepted first: refusing the handshake would show the client no code at all.
        await self._rohrpost_asgi_send({"type": "websocket.accept"})
        await self._rohrpost_asgi_send({"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED})
        return True

    async def _rohrpost_leave(self, event: dict[str, Any]) -> None:
        group = event.get("group")
        if not isinstance(group, str):
            logger.warning("Ignoring a rohrpost.leave event without a group: %r", event)
            return
        await self.aremove_from_group(group)
        frame = {"group": group, "reason": event.get("reason")}
        push = {"id": generate_id(), "type": control.UNSUBSCRIBED_TYPE, "data": frame}
        await self._rohrpost_asend(encoding.dumps(push))

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route a channel-layer event; one nobody handles is logged and dropped.

        Channels raises on an event type the consumer has no method for, which
        would end the connection; a stray event must not do that.
        """
        event_type = message.get("type")
        if event_type == control.LEAVE_EVENT_TYPE:
            await self._rohrpost_leave(message)
            return
        if event_type == control.CLOSE_EVENT_TYPE:
            code = message.get("code")
            await self._rohrpost_aclose(code if isinstance(code, int) else control.CLOSE_REVOKED)
            return
        method_name = event_type.replace(".", "_") if isinstance(event_type, str) else ""
        if method_name.startswith("_") or not callable(getattr(self, method_name, None)):
            logger.warning("Ignoring channel-layer event of unknown type %r", event_type)
            return
        if event_type == "websocket.connect":
            if self._rohrpost_cooldown and COOLDOWN.refuses(self.scope, self._rohrpost_cooldown):  # type: ignore[attr-defined]
                # A client closed for flooding moments ago: refuse the handshake (HTTP 403).
                await self._rohrpost_asgi_send({"type": "websocket.close"})
                return
            if await self._rohrpost_arefuse_anonymous():
                return
            # Before connect() accepts: from then on the server can reach the connection.
            await self._rohrpost_ajoin_user_group()
        await super().dispatch(message)  # type: ignore[misc]


def group_message_frames(event: dict[str, Any]) -> list[str]:
    """Return the frames a ``rohrpost.message`` event carries, in order.

    The event holds one ``message`` (text is forwarded as is, anything else is
    encoded) or, from the change feed's batches, a list of texts in
    ``messages``. A malformed event is logged and yields no frame: it must not
    end the connection.
    """
    messages = event.get("messages")
    if isinstance(messages, list) and all(isinstance(text, str) for text in messages):
        return messages
    message = event.get("message")
    if isinstance(message, str):
        return [message]
    if message is None:
        logger.warning("Ignoring a rohrpost.message event without a message: %r", event)
        return []
    try:
        return [encoding.dumps(message)]
    except (TypeError, ValueError):
        logger.warning("Ignoring a rohrpost.message event JSON cannot encode", exc_info=True)
        return []


class SyncRohrpostConsumer(RohrpostConsumerMixin, WebsocketConsumer):
    """The rohrpost consumer for sync code: handlers run in a worker thread.

    Like Channels' ``WebsocketConsumer``, it handles frames in a worker thread
    so that handlers may block and use the ORM. Three kinds of work need no
    thread and are done on the event loop instead, saving two thread hops:
    error replies to bad frames, ``inline`` handlers (the built-in ``ping``)
    and forwarding group messages. A subclass that overrides ``receive``,
    ``websocket_receive`` or ``rohrpost_message`` gets the threaded path for
    that event, exactly as in 4.x.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        self._rohrpost_loop_receive = (
            cls.receive is SyncRohrpostConsumer.receive
            and cls.websocket_receive is WebsocketConsumer.websocket_receive
        )
        self._rohrpost_loop_forward = cls.rohrpost_message is SyncRohrpostConsumer.rohrpost_message

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route an event: frames and group messages that need no thread stay on the loop."""
        event_type = message.get("type")
        if event_type == "websocket.receive" and self._rohrpost_loop_receive:
            await self._rohrpost_areceive(message)
        elif event_type == GROUP_EVENT_TYPE and self._rohrpost_loop_forward:
            for text in group_message_frames(message):
                await self._rohrpost_asend(text)
        else:
            await super().dispatch(message)

    async def _rohrpost_asend(self, text: str) -> None:
        await self._rohrpost_asgi_send({"type": "websocket.send", "text": text})

    async def _rohrpost_aclose(self, code: int) -> None:
        await self._rohrpost_asgi_send({"type": "websocket.close", "code": code})

    async def _rohrpost_areceive(self, message: dict[str, Any]) -> None:
        if not await self._rohrpost_aadmit():
            return
        call = prepare_call(
            self.rohrpost_registry,
            message.get("text"),
            message.get("bytes"),
            self._rohrpost_frame_limits,
        )
        if isinstance(call, str):
            frames = [call]
        elif self._rohrpost_auth is not None and (
            refusal := await self._rohrpost_aauthenticate(call)
        ):
            frames = [refusal]
        elif call.mode == "inline":
            frames = self._rohrpost_run_inline(call)
        else:
            await _run_call_in_thread(self, call)
            return
        for text in frames:
            await self._rohrpost_asend(text)

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        admission = self._rohrpost_gate.admit()
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
        for text in group_message_frames(event):
            self.send(text_data=text)

    def websocket_disconnect(self, message: dict[str, Any]) -> None:
        async_to_sync(self._aleave_all_groups)()
        super().websocket_disconnect(message)


class AsyncRohrpostConsumer(RohrpostConsumerMixin, AsyncWebsocketConsumer):
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
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rohrpost_max_in_flight: int = conf.get("MAX_IN_FLIGHT")
        self._rohrpost_in_flight: set[asyncio.Task[None]] = set()

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
            await self.websocket_receive(message)
        elif event_type == GROUP_EVENT_TYPE:
            await self.rohrpost_message(message)
        else:
            await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not await self._rohrpost_aadmit():
            return
        call = prepare_call(
            self.rohrpost_registry, text_data, bytes_data, self._rohrpost_frame_limits
        )
        if isinstance(call, str):
            frames = [call]
        elif self._rohrpost_auth is not None and (
            refusal := await self._rohrpost_aauthenticate(call)
        ):
            frames = [refusal]
        elif call.mode == "inline":
            frames = self._rohrpost_run_inline(call)
        elif self._rohrpost_max_in_flight > 1:
            await self._rohrpost_astart(call)
            return
        else:
            reply = await self._rohrpost_acall(call)
            frames = [] if reply is None else [reply]
        for text in frames:
            await self.send(text_data=text)

    async def _rohrpost_acall(self, call: Call) -> str | None:
        if call.mode == "async":
            await _aclose_old_connections()
            return await call.arun(self)
        return await call.arun(self, database_sync_to_async(call.handler))

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
        for text in group_message_frames(event):
            await self.send(text_data=text)

    async def _rohrpost_asend(self, text: str) -> None:
        await self.send(text_data=text)

    async def _rohrpost_aclose(self, code: int) -> None:
        await self.close(code=code)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self._rohrpost_in_flight:
            await asyncio.wait(self._rohrpost_in_flight)
        await self._aleave_all_groups()
        await super().websocket_disconnect(message)


# A sync handler's call under SyncRohrpostConsumer, in a worker thread as Channels
# runs its sync consumers (stale database connections closed before and after).
_run_call_in_thread = database_sync_to_async(run_call)

# What Channels runs before every event, for handlers that may use the async ORM.
_aclose_old_connections = sync_to_async(close_old_connections)


def _on_event_loop() -> bool:
    # The non-raising form: worker threads ask this for every frame they send.
    return asyncio._get_running_loop() is not None
