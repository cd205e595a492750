"""How events reach a connection: group pushes through the process's hub, the rest in turn.

:class:`DeliveryMixin` is the part of every rohrpost connection
(:class:`~rohrpost.connection.RohrpostConsumerMixin`) that takes the place of
Channels' event loop for a consumer:

- **Group membership through the hub.** Joining a group registers the
  connection with its process's :class:`~rohrpost.hub.Hub`, which holds one
  layer membership per group for the whole process and puts each push's
  text straight into the connection's :class:`~rohrpost.outbox.Outbox`. A
  consumer that overrides ``rohrpost_message`` (or, under the async consumer,
  ``send``) still gets every event through a membership of its own channel,
  as with Channels.
- **Pushes in turn, after the reply.** Pushes that come while the
  connection handles a frame (or another event) are held until it is done,
  as Channels' one-event-at-a-time consumers and rohrpost 4.x behaved: a
  handler's reply comes before the pushes its own change caused, and a
  ``subscribe``'s reply before its group's pushes. Held pushes count against
  ``SEND_QUEUE_LIMIT``. (With ``MAX_IN_FLIGHT`` above 1, handlers run beside
  the next frames and their pushes are not held.)
- **One event at a time.** Frames from the client, and any other event sent
  to a group the connection is in or to its own channel, are dispatched one
  after the other, as Channels does.
- **A channel only for who asks.** The connection has a channel name from
  the start, but receives on it only once something reads ``channel_name``
  (code that adds it to a group itself, or tells others where to send): an
  idle connection costs no layer receive of its own. That receive, once
  started, survives layer faults the way the hub does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

from rohrpost import metrics
from rohrpost.hub import Hub, hub_for
from rohrpost.outbox import CLOSE_TOO_SLOW, Outbox

__all__ = ["DeliveryMixin"]

logger = logging.getLogger("rohrpost")


class DeliveryMixin:
    """How events reach a connection; see the module docstring.

    Attributes:
        rohrpost_groups: The groups this connection joined through ``aadd_to_group``.
    """

    channel_layer: Any
    channel_layer_alias: str
    scope: Any
    base_send: Any
    _sync: bool
    _rohrpost_outgoing: Outbox | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rohrpost_groups: set[str] = set()
        self._rohrpost_hub: Hub | None = None
        # Whether the hub serves this connection's groups (see _rohrpost_serves_itself).
        self._rohrpost_via_hub = not self._rohrpost_serves_itself()
        self._rohrpost_channel: str | None = None
        self._rohrpost_listener: asyncio.Task[None] | None = None
        self._rohrpost_listening = False
        self._rohrpost_loop: asyncio.AbstractEventLoop | None = None
        # The context the server runs the connection in; its own tasks start from it.
        self._rohrpost_context: contextvars.Context | None = None
        # Events waiting their turn, and the task dispatching them while no frame is.
        self._rohrpost_inbox: list[dict[str, Any]] = []  # a list: small, and rarely used
        self._rohrpost_relaying: asyncio.Task[None] | None = None
        self._rohrpost_dispatching = False
        # Pushes that came while an event was dispatched, sent once it is done, and
        # their size (bounded by the send queue's limit).
        self._rohrpost_held_size = 0
        # (group, frame, (epoch, offset) in the group's history or None) per held push.
        self._rohrpost_held: list[tuple[str, str, tuple[Any, int] | None]] | None = None
        # Per group subscribed with history: pushes up to this position were replayed
        # or are in the snapshot (rohrpost.history), and are dropped.
        self._rohrpost_floors: dict[str, Any] | None = None

    def _rohrpost_serves_itself(self) -> bool:
        """Whether the connection needs its own layer membership (each consumer tells)."""
        raise NotImplementedError  # pragma: no cover - both consumers define it

    # --- the event loop ------------------------------------------------------------------

    async def _rohrpost_arun(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' ``AsyncConsumer.__call__``, without a receive of its own, events in turn."""
        self.scope = scope
        self._rohrpost_loop = asyncio.get_running_loop()
        self._rohrpost_context = contextvars.copy_context()
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is not None:
            self._rohrpost_channel = await self.channel_layer.new_channel()
        self.base_send = async_to_sync(send) if self._sync else send
        try:
            while True:
                message = await receive()
                while self._rohrpost_relaying is not None:
                    await asyncio.wait({self._rohrpost_relaying})
                # _rohrpost_adispatch written out: this runs for every frame.
                self._rohrpost_dispatching = True
                try:
                    await self.dispatch(message)  # type: ignore[attr-defined]
                finally:
                    self._rohrpost_dispatching = False
                    if self._rohrpost_held is not None:
                        self._rohrpost_release()
                if self._rohrpost_inbox:
                    await self._rohrpost_adrain_inbox()
        except StopConsumer:
            pass
        finally:
            self._rohrpost_stop_listening()
            if self._rohrpost_relaying is not None:
                self._rohrpost_relaying.cancel()

    async def _rohrpost_adispatch(self, message: dict[str, Any]) -> None:
        self._rohrpost_dispatching = True
        try:
            await self.dispatch(message)  # type: ignore[attr-defined]
        finally:
            self._rohrpost_dispatching = False
            if self._rohrpost_held is not None:
                self._rohrpost_release()

    def rohrpost_relay(self, event: dict[str, Any]) -> None:
        """Take a group or channel event to dispatch in turn (what the hub calls)."""
        self._rohrpost_inbox.append(event)
        if not self._rohrpost_dispatching and self._rohrpost_relaying is None:
            self._rohrpost_relaying = self._rohrpost_start(self._rohrpost_arelay())

    async def _rohrpost_arelay(self) -> None:
        try:
            await self._rohrpost_adrain_inbox()
        except StopConsumer:
            # An event handler ended the consumer, as Channels lets it: close the
            # connection; the client's disconnect then ends it.
            assert self._rohrpost_outgoing is not None
            self._rohrpost_outgoing.put({"type": "websocket.close", "code": 1000})
        finally:
            self._rohrpost_relaying = None

    async def _rohrpost_adrain_inbox(self) -> None:
        inbox = self._rohrpost_inbox
        while inbox:
            event = inbox.pop(0)
            try:
                await self._rohrpost_adispatch(event)
            except StopConsumer:
                raise
            except Exception:
                # A stray layer event must not end the connection (nor the task
                # that relays for it).
                logger.exception("Handling a %r event failed", event.get("type"))

    # --- the connection's own channel ----------------------------------------------------

    @property
    def channel_name(self) -> str:
        """The connection's channel; reading it starts the connection's own receive."""
        channel = self._rohrpost_channel
        if channel is None:
            raise AttributeError("channel_name: the connection has not started yet")
        if not self._rohrpost_listening:
            self._rohrpost_listening = True
            loop = self._rohrpost_loop
            if loop is not None:
                if asyncio._get_running_loop() is loop:
                    self._rohrpost_listen()
                else:  # a worker thread: a sync handler or consumer method
                    loop.call_soon_threadsafe(self._rohrpost_listen)
        return channel

    @channel_name.setter
    def channel_name(self, value: str) -> None:
        self._rohrpost_channel = value

    def _rohrpost_listen(self) -> None:
        if self._rohrpost_listener is None and self.channel_layer is not None:
            self._rohrpost_listener = self._rohrpost_start(self._rohrpost_alisten())

    def _rohrpost_start(self, work: Any) -> asyncio.Task[None]:
        """Start a task of the connection's in the server's context, wherever it is asked for.

        Not in the caller's: a sync handler's context holds asgiref's executor for
        its worker thread, dead once the handler returns.
        """
        assert self._rohrpost_context is not None
        return self._rohrpost_context.run(asyncio.get_running_loop().create_task, work)

    async def _rohrpost_alisten(self) -> None:
        """Receive on the connection's own channel for ever; a layer fault is retried."""
        assert self._rohrpost_channel is not None
        await self._rohrpost_get_hub().areceive(self._rohrpost_channel, self.rohrpost_relay)

    def _rohrpost_stop_listening(self) -> None:
        listener, self._rohrpost_listener = self._rohrpost_listener, None
        if listener is not None:
            listener.cancel()
        elif self._rohrpost_channel is not None and _subscribes_on_creation(self.channel_layer):
            # RedisPubSubChannelLayer subscribed the channel in new_channel() and
            # unsubscribes it when a receive on it is cancelled: nothing else does.
            receive = asyncio.get_running_loop().create_task(
                self.channel_layer.receive(self._rohrpost_channel)
            )
            asyncio.get_running_loop().call_soon(receive.cancel)

    # --- groups --------------------------------------------------------------------------

    def _rohrpost_get_hub(self) -> Hub:
        if self._rohrpost_hub is None:
            self._rohrpost_hub = hub_for(self.channel_layer)
        return self._rohrpost_hub

    async def _rohrpost_ajoin(self, group: str) -> None:
        """Join ``group`` at the layer: through the hub, or with the connection's own channel."""
        hub = self._rohrpost_get_hub()
        if not self._rohrpost_via_hub:
            await self.channel_layer.group_add(group, self.channel_name)
            hub.add(group, self, self._rohrpost_channel)  # type: ignore[arg-type]
            return
        await hub.ajoin(group, self)  # type: ignore[arg-type]

    async def _rohrpost_aleave(self, group: str) -> None:
        """Leave ``group`` at the layer (the hub leaves when no local connection needs it)."""
        if self._rohrpost_floors:
            self._rohrpost_floors.pop(group, None)
        if self._rohrpost_hub is not None:
            self._rohrpost_hub.discard(group, self)  # type: ignore[arg-type]
        if not self._rohrpost_via_hub and self.channel_layer is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    def rohrpost_push(self, group: str, texts: Sequence[str] | None, event: dict[str, Any]) -> None:
        """Send a group's push frames to the client (what the hub calls); never waits."""
        if texts is None:
            texts = self._rohrpost_frames(event)
        if self._rohrpost_floors or self._rohrpost_dispatching:
            # Not the common case: the hub calls this for every member of a group.
            self._rohrpost_push_later(group, texts, event)
            return
        outbox = self._rohrpost_outgoing
        assert outbox is not None  # a connection joins groups only once it runs
        if outbox.closing:
            metrics.push_dropped("closed")
            return
        for text in texts:
            outbox.put({"type": "websocket.send", "text": text})

    def _rohrpost_push_later(self, group: str, texts: Sequence[str], event: dict[str, Any]) -> None:
        """A push to a connection with history floors, or one that is handling an event."""
        first = event.get("offset")
        if not isinstance(first, int):
            first = None
        elif self._rohrpost_floors and group in self._rohrpost_floors:
            # Pushes up to the floor were replayed or are in the snapshot; one
            # published before the subscribe may still arrive after its reply.
            # (A new epoch starts its offsets again: nothing of it is covered.)
            floor, epoch = self._rohrpost_floors[group], event.get("epoch")
            texts = [
                text for i, text in enumerate(texts) if not _covered((epoch, first + i), floor)
            ]
        if self._rohrpost_dispatching:
            # In turn, as Channels would: after the reply of the frame being
            # handled, and after a subscribe's replay or snapshot.
            self._rohrpost_hold(group, texts, first, event.get("epoch"))
            return
        outbox = self._rohrpost_outgoing
        assert outbox is not None
        for text in texts:
            outbox.put({"type": "websocket.send", "text": text})

    def _rohrpost_hold(
        self, group: str, texts: Sequence[str], first: int | None, epoch: Any
    ) -> None:
        held = self._rohrpost_held
        if held is None:
            held = self._rohrpost_held = []
        for i, text in enumerate(texts):
            held.append((group, text, None if first is None else (epoch, first + i)))
            self._rohrpost_held_size += len(text)
        outbox = self._rohrpost_outgoing
        assert outbox is not None
        if self._rohrpost_held_size > outbox.limit:
            # A handler that runs while more pushes come than a client may
            # fall behind by: the same as falling behind.
            self._rohrpost_held, self._rohrpost_held_size = None, 0
            outbox.on_overflow(CLOSE_TOO_SLOW)

    def _rohrpost_frames(self, event: dict[str, Any]) -> list[str]:
        """The frames of a push whose message is not text (each consumer encodes its way)."""
        raise NotImplementedError  # pragma: no cover - the mixin that combines this defines it

    def _rohrpost_set_floor(self, group: str, position: Any) -> None:
        """Drop the pushes of ``group`` up to ``position.offset`` (replayed, or in a snapshot).

        For as long as the connection is in the group: a push published before
        the subscribe read the position may reach the hub after its reply.
        """
        if self._rohrpost_floors is None:
            self._rohrpost_floors = {}
        self._rohrpost_floors[group] = position

    def _rohrpost_release(self) -> None:
        """Send the pushes held while a frame was handled, of the groups still joined."""
        held = self._rohrpost_held or []
        floors = self._rohrpost_floors or {}
        self._rohrpost_held, self._rohrpost_held_size = None, 0
        outbox = self._rohrpost_outgoing
        assert outbox is not None
        groups = self.rohrpost_groups
        for group, text, where in held:
            if group not in groups:
                metrics.push_dropped("left")
                continue
            if where is not None and _covered(where, floors.get(group)):
                continue  # in the replay or the snapshot
            outbox.put({"type": "websocket.send", "text": text})


def _covered(where: tuple[Any, int], floor: Any) -> bool:
    """Whether the push at ``where`` (epoch, offset) is at or below ``floor`` (a position)."""
    return floor is not None and where[0] == floor.epoch and where[1] <= floor.offset


def _subscribes_on_creation(layer: Any) -> bool:
    """Whether ``layer`` holds a subscription for a channel from ``new_channel()`` on."""
    return type(layer).__module__.startswith("channels_redis.pubsub")
