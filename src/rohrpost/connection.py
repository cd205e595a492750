"""What every rohrpost connection does, whichever consumer serves it.

:class:`RohrpostConsumerMixin` holds the behaviour both consumers
(:mod:`rohrpost.consumers`) share, written once: configuration, group
membership, the rate limit and the flood close, authentication
(:mod:`rohrpost.auth`), rohrpost's control events (:mod:`rohrpost.control`)
and the handling of unknown channel-layer events.
:func:`group_message_frames` reads the frames out of a group-message event.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
from typing import Any, ClassVar

from asgiref.sync import async_to_sync

from rohrpost import conf, control, encoding, startup
from rohrpost.access import AccessMixin
from rohrpost.auth import CLOSE_UNAUTHENTICATED, TOKEN_FIELD, Authenticator
from rohrpost.dispatch import Call, prepare_call
from rohrpost.encoding import TolerantJSONEncoder
from rohrpost.hub import CONTROL_EVENT_TYPE
from rohrpost.limits import CLOSE_FLOODING, COOLDOWN, Admission, FrameGate
from rohrpost.outbox import Outbox
from rohrpost.protocol import Limits
from rohrpost.registry import HANDLERS, HandlerRegistry

__all__ = ["RohrpostConsumerMixin", "group_message_frames"]

logger = logging.getLogger("rohrpost")


class RohrpostConsumerMixin(AccessMixin):
    """What both consumers share: configuration, groups, limits and channel-layer events.

    Besides group messages, both handle rohrpost's control events
    (:mod:`rohrpost.control`, :mod:`rohrpost.access`): leaving a group on the
    server's order, closing, re-checking subscriptions; an authenticated
    connection is in its user's private group. Everything the connection
    sends goes through its :class:`~rohrpost.outbox.Outbox`, so that the
    connection never waits for a client that does not read.
    Both authenticate requests as :mod:`rohrpost.auth` describes (token hook,
    anonymous connections refused with 4001) when the settings ask for it.

    Attributes:
        rohrpost_registry: The handlers this endpoint serves (default: :data:`HANDLERS`).
        rohrpost_limits: The frame size and depth bounds; ``None`` (the default)
            takes them from ``ROHRPOST["MAX_FRAME_BYTES"]`` and ``["MAX_DEPTH"]``.
    """

    rohrpost_registry: ClassVar[HandlerRegistry] = HANDLERS
    rohrpost_limits: ClassVar[Limits | None] = None

    channel_layer: Any
    send: Any  # provided by the Channels consumer the mixin is combined with
    json_encoder: ClassVar[type[json.JSONEncoder]]  # each consumer's

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        startup.check_once()  # ASGI servers run no system checks: log their findings once
        # Frames sent by an inline handler through the sync helpers; sent after it returns.
        self._rohrpost_outbox: list[str] | None = None
        self._rohrpost_frame_limits = self.rohrpost_limits or Limits(
            max_frame_bytes=conf.get("MAX_FRAME_BYTES"),
            max_depth=conf.get("MAX_DEPTH"),
            max_containers=conf.get("MAX_CONTAINERS"),
        )
        self._rohrpost_gate = FrameGate.from_settings()
        self._rohrpost_cooldown: float = conf.get("FLOOD_COOLDOWN")
        self._rohrpost_auth = Authenticator.from_settings()
        self._rohrpost_outgoing: Outbox | None = None
        # Whether the connection's user came from a token (see _rohrpost_aauthenticate).
        self._rohrpost_token_user = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Channels may wrap `send` (the sync consumer keeps only a sync wrapper);
        # the paths on the event loop use the outbox directly.
        self._rohrpost_outgoing = outbox = Outbox(
            send, conf.get("SEND_QUEUE_LIMIT"), self._rohrpost_revoke
        )
        self._rohrpost_task = task = asyncio.current_task()
        # The context as the server gave it: see the revocation below.
        context = contextvars.copy_context()
        try:
            await self._rohrpost_arun(scope, receive, outbox)
        except asyncio.CancelledError:
            if self._rohrpost_revoked is None:
                raise
            if sys.version_info >= (3, 11) and task is not None:  # pragma: no branch
                task.uncancel()
            # Cancelled while awaiting a worker thread, this task may hold that
            # thread's context (asgiref copies it back), whose executor is gone
            # by now: end the consumer in the server's clean context.
            await context.run(asyncio.ensure_future, self._rohrpost_aend_revoked())
        else:
            await outbox.adrain()
        finally:
            self._rohrpost_hub_forget()

    @property
    def _rohrpost_asgi_send(self) -> Any:
        return self._rohrpost_outgoing

    async def _rohrpost_asend(self, text: str) -> None:
        """Send a frame from the event loop (each consumer knows how)."""
        raise NotImplementedError  # pragma: no cover - both consumers define it

    async def _rohrpost_aclose(self, code: int) -> None:
        """Close the connection from the event loop (each consumer knows how)."""
        raise NotImplementedError  # pragma: no cover - both consumers define it

    async def _rohrpost_atake(self, text: str | None, binary: bytes | None) -> Call | list[str]:
        """Take a frame as far as the event loop can: the frames to send, or a call to run.

        Rate limit, parsing, authentication and ``inline`` handlers happen
        here, the same for both consumers; what is left is a handler that must
        run elsewhere (a worker thread, or awaited), which each consumer does
        its own way.
        """
        if self._rohrpost_revoked is not None:
            return []
        # The gate inline: a coroutine per frame only for the frames it refuses.
        admission = self._rohrpost_gate.admit(len(text if text is not None else binary or b""))
        if admission != "admit":
            await self._rohrpost_arefuse(admission)
            return []
        call = prepare_call(self.rohrpost_registry, text, binary, self._rohrpost_frame_limits)
        if isinstance(call, str):
            return [call]
        if self._rohrpost_auth is not None and (
            refusal := await self._rohrpost_aauthenticate(call)
        ):
            return [refusal]
        if call.mode == "inline":
            return self._rohrpost_run_inline(call)
        return call

    async def _rohrpost_arefuse(self, admission: Admission) -> None:
        """Answer a frame the rate limit refused; on the flood close, end the consumer."""
        if admission == "drop":
            return
        await self._rohrpost_asend(FrameGate.refusal)
        if admission == "close":
            COOLDOWN.record(self.scope)
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
        """Join ``group_name``: the connection receives what is sent to the group.

        Returns once the membership is in place at the channel layer: what is
        sent to the group from then on reaches the connection. Pushes that
        come while a frame is handled follow that frame's reply.

        Raises:
            RohrpostError: No channel layer is configured (answered ``handler_error``).
        """
        if self.channel_layer is None:
            raise startup.no_channel_layer(f"join the group {group_name!r}")
        if self._rohrpost_revoked is not None:
            return  # a revoked connection joins nothing
        await self._rohrpost_ajoin(group_name)
        if self._rohrpost_is_revoked():  # revoked meanwhile
            await self._rohrpost_aleave(group_name)
            return
        self.rohrpost_groups.add(group_name)
        if self._rohrpost_expelled:
            self._rohrpost_expelled.discard(group_name)

    async def aremove_from_group(self, group_name: str) -> None:
        """Leave ``group_name``; leaving a group not joined is harmless."""
        if self.channel_layer is None:
            raise startup.no_channel_layer(f"leave the group {group_name!r}")
        self.rohrpost_groups.discard(group_name)
        self.rohrpost_subscriptions.pop(group_name, None)
        await self._rohrpost_aleave(group_name)

    def add_to_group(self, group_name: str) -> None:
        """Sync twin of :meth:`aadd_to_group`, for sync handlers."""
        async_to_sync(self.aadd_to_group)(group_name)

    def remove_from_group(self, group_name: str) -> None:
        """Sync twin of :meth:`aremove_from_group`, for sync handlers."""
        async_to_sync(self.aremove_from_group)(group_name)

    async def _aleave_all_groups(self) -> None:
        self._rohrpost_hub_forget()
        self.rohrpost_subscriptions.clear()
        groups, self.rohrpost_groups = self.rohrpost_groups, set()
        if self._rohrpost_user_group is not None:
            groups.add(self._rohrpost_user_group)
            self._rohrpost_user_group = None
        if self.channel_layer is not None and not self._rohrpost_via_hub:
            for group_name in groups:
                await self.channel_layer.group_discard(group_name, self.channel_name)

    def _rohrpost_frames(self, event: dict[str, Any]) -> list[str]:
        return _group_frames(self, event)

    async def _rohrpost_ajoin_user_group(self) -> None:
        user = self.scope.get("user")
        if getattr(user, "is_authenticated", False):
            await self._rohrpost_aswitch_user_group(control.user_group(user))

    async def _rohrpost_aauthenticate(self, call: Call) -> str | None:
        """Run the authentication step for a request; return the error frame if refused.

        A token that checks out makes its user the connection's user, and
        moves the connection into that user's private group. A token that is
        refused on a connection whose user came from a token ends that
        identity: the connection is anonymous from then on. Either change
        re-checks every subscription (:mod:`rohrpost.access`).
        """
        assert self._rohrpost_auth is not None
        user, refusal = await self._rohrpost_auth.acheck(call.request, self.scope)
        if user is not None:
            self._rohrpost_token_user = True
            await self._rohrpost_aset_user(user)
        elif refusal is not None and self._rohrpost_token_user:
            token = call.request.get(TOKEN_FIELD)
            if isinstance(token, str) and token:
                # Imported here: the auth models need Django's app registry ready.
                from django.contrib.auth.models import AnonymousUser

                self._rohrpost_token_user = False
                await self._rohrpost_aset_user(AnonymousUser())
        return refusal

    async def _rohrpost_arefuse_anonymous(self) -> bool:
        """Close an anonymous connection when authentication is required; say if it was."""
        auth = self._rohrpost_auth
        if auth is None or not auth.refuses_connection(self.scope):
            return False
        # Accepted first: refusing the handshake would show the client no code at all.
        await self._rohrpost_asgi_send({"type": "websocket.accept"})
        await self._rohrpost_asgi_send({"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED})
        return True

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route a channel-layer event; one nobody handles is logged and dropped.

        Channels raises on an event type the consumer has no method for, which
        would end the connection; a stray event must not do that.
        """
        event_type = message.get("type")
        if event_type == CONTROL_EVENT_TYPE:
            self.rohrpost_control(message)
            return
        if event_type == control.LEAVE_EVENT_TYPE:  # sent to a connection's channel by 5.0 betas
            group = message.get("group")
            if not isinstance(group, str):
                logger.warning("Ignoring a rohrpost.leave event without a group: %r", message)
                return
            self._rohrpost_expel(group, message.get("reason"))
            return
        if event_type == control.CLOSE_EVENT_TYPE:
            code = message.get("code")
            self._rohrpost_revoke(code if isinstance(code, int) else control.CLOSE_REVOKED)
            return
        method_name = event_type.replace(".", "_") if isinstance(event_type, str) else ""
        if method_name.startswith("_") or not callable(getattr(self, method_name, None)):
            logger.warning("Ignoring channel-layer event of unknown type %r", event_type)
            return
        if event_type == "websocket.connect":
            if self._rohrpost_cooldown and COOLDOWN.refuses(self.scope, self._rohrpost_cooldown):
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


def _group_frames(consumer: Any, event: dict[str, Any]) -> list[str]:
    """The frames of a group message; an object is encoded with the consumer's ``json_encoder``.

    None when the message may not reach the client any more: the connection
    was revoked, or taken out of the group it was sent to (:mod:`rohrpost.access`).
    """
    if not consumer._rohrpost_forwards(event):
        return []
    encoder = consumer.json_encoder
    message = event.get("message")
    if (
        encoder is TolerantJSONEncoder
        or message is None
        or isinstance(message, str)
        or "messages" in event
    ):
        return group_message_frames(event)
    try:
        return [
            json.dumps(
                message, cls=encoder, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            )
        ]
    except (TypeError, ValueError):
        logger.warning("Ignoring a rohrpost.message event its json_encoder refuses", exc_info=True)
        return []


def _on_event_loop() -> bool:
    # The non-raising form: worker threads ask this for every frame they send.
    return asyncio._get_running_loop() is not None
