"""One hub per process (per event loop and channel layer): where group events meet connections.

Channels gives every connection its own channel and a membership of its own
in each group it joins: a ``group_send`` then costs one queue push per member
(in Redis, for every member), and every connection runs a receive loop of its
own on the layer. rohrpost's consumers go through their process's hub instead:

- **Pushes.** The hub joins each group its local connections need *once*,
  through a channel of its own for that group, and hands each group event to
  the local members directly: the frame text, encoded once by whoever
  published it, goes into each member's outbox. A ``group_send`` costs one
  delivery per process, on any layer. Events of other types sent to the group
  are relayed to each member, to be dispatched in turn with its other events.
  Connections that need their own membership (a consumer that overrides
  ``rohrpost_message``) keep it, beside the hub; the hub still knows them for
  control events and renews their memberships.
- **Control.** Every hub is in :data:`CONTROL_GROUP`. Control events (close a
  user's connections, take connections out of a group, re-check permissions;
  :mod:`rohrpost.control`) reach the local connections they name at once,
  whatever those are doing.
- **Faults** (:mod:`rohrpost.upkeep`). Receives that fail are retried; the hub notices an outage (a
  receive or a send that fails, or its canary, a control event it sends
  itself twice a second, that never comes back because Redis restarted empty),
  logs it once, and joins every group again, with backoff and jitter, until
  the layer answers. It also joins again before the layer's ``group_expiry``
  would drop a membership. A Redis fault closes no WebSocket.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol

from rohrpost import metrics
from rohrpost.upkeep import RETRY_FIRST_SECONDS, LayerUpkeep, _raise_if_cancelling

__all__ = ["CONTROL_EVENT_TYPE", "CONTROL_GROUP", "Hub", "Member", "hub_for"]

logger = logging.getLogger("rohrpost")

#: The layer group every process's hub is in; control events are sent to it.
CONTROL_GROUP: Final = "rohrpost.control"
#: The type of a control event.
CONTROL_EVENT_TYPE: Final = "rohrpost.control"
#: The type of the events that carry pushes (:data:`rohrpost.message.GROUP_EVENT_TYPE`).
PUSH_EVENT_TYPE: Final = "rohrpost.message"


class Member(Protocol):
    """What the hub needs of a connection."""

    def rohrpost_control(self, event: dict[str, Any]) -> None:
        """Act on a control event, at once, on the event loop; must not block."""

    def rohrpost_push(self, group: str, texts: Sequence[str] | None, event: dict[str, Any]) -> None:
        """Send a group's push frames (``None``: encode ``event``'s message itself); no blocking."""

    def rohrpost_relay(self, event: dict[str, Any]) -> None:
        """Take any other group event, to be dispatched after what the connection is doing."""


class _Served:
    """A group the hub receives for its members, through one channel of its own."""

    __slots__ = ("channel", "joining", "members", "name", "receiver")

    def __init__(self, name: str) -> None:
        self.name = name
        # Insertion-ordered: members get each push in the order they joined.
        self.members: dict[Member, None] = {}
        self.channel: str | None = None
        self.joining: asyncio.Task[None] | None = None
        self.receiver: asyncio.Task[None] | None = None


class Hub(LayerUpkeep):
    """The local connections of one process by group, and the layer memberships serving them.

    Use :func:`hub_for` to get the hub of the running loop and a layer.

    Attributes:
        groups: Every local member by group, each with its own channel when it
            keeps its own membership (``None`` when the hub serves it).
        served: The groups the hub receives for its members.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self.groups: dict[str, dict[Member, str | None]] = {}
        self.served: dict[str, _Served] = {}
        self.channel: str | None = None  # the control channel
        self._canary_group = f"rohrpost.hub.{uuid.uuid4().hex}"
        self._canary_sent = 0
        self._canary_seen = 0
        # The canary count when the groups were last joined again, None since a fault.
        self._rejoined_at: int | None = 0
        self._trouble = asyncio.Event()  # set on a fault: join everything again
        self._outage = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        # Groups with history that local connections follow (rohrpost.history): their
        # history is kept alive, and started again after Redis lost it.
        self.history_groups: set[str] = set()

    # --- members -------------------------------------------------------------------------

    def add(self, group: str, member: Member, channel: str | None = None) -> None:
        """Note that ``member`` is in ``group`` through its own ``channel`` (control only)."""
        self.groups.setdefault(group, {})[member] = channel
        self._start()

    async def ajoin(self, group: str, member: Member) -> None:
        """Serve ``group``'s events to ``member``; return once the layer membership is in place.

        Raises:
            Exception: The layer failed to add the membership; ``member`` is
                then not in the group.
        """
        self.groups.setdefault(group, {})[member] = None
        self._start()
        served = self.served.get(group)
        if served is None:
            served = self.served[group] = _Served(group)
        served.members[member] = None
        if served.receiver is not None:
            return
        if served.joining is None:
            served.joining = self._spawn(self._aopen(served))
        try:
            await asyncio.shield(served.joining)
        except BaseException:  # the layer failed, or the connection was cancelled meanwhile
            self.discard(group, member)
            raise

    def discard(self, group: str, member: Member) -> None:
        """Note that ``member`` left ``group``; the hub leaves a group nobody needs any more."""
        members = self.groups.get(group)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self.groups[group]
                self.history_groups.discard(group)
        served = self.served.get(group)
        if served is not None:
            served.members.pop(member, None)
            if not served.members:
                del self.served[group]
                self._spawn(self._aclose(served))

    def track_history(self, group: str) -> None:
        """Keep ``group``'s history alive while local connections follow it (see upkeep)."""
        if group in self.groups:
            self.history_groups.add(group)

    def forget(self, member: Member, groups: Iterable[str]) -> None:
        """Note that ``member`` left all of ``groups`` (it is closing)."""
        for group in groups:
            self.discard(group, member)

    def members(self, group: str) -> list[Member]:
        """The local members of ``group``, as a list (acting on them may change the set)."""
        return list(self.groups.get(group, ()))

    # --- events --------------------------------------------------------------------------

    def route(self, event: dict[str, Any]) -> None:
        """Hand a control event to every local member it is for."""
        group = event.get("group")
        if isinstance(group, str):
            targets: Iterable[Member] = self.members(group)
        elif group is None and isinstance(event.get("kind"), str):
            targets = {member for members in self.groups.values() for member in members}
        elif event.get("action") == "canary":
            self._canary_seen = max(self._canary_seen, _count(event.get("canary")))
            return
        else:
            logger.warning("Ignoring a control event without a group: %r", event)
            return
        for member in targets:
            try:
                member.rohrpost_control(event)
            except Exception:  # one connection's failure must not stop the others
                logger.exception("A connection failed to act on a control event")

    def deliver(self, served: _Served, event: dict[str, Any]) -> None:
        """Hand a group event to every local member the hub serves it to."""
        members = tuple(served.members)  # a member that falls behind leaves while served
        if event.get("type") != PUSH_EVENT_TYPE:
            for member in members:
                member.rohrpost_relay(event)
            return
        texts = _push_texts(event)
        group = served.name
        for member in members:
            try:
                member.rohrpost_push(group, texts, event)
            except Exception:
                logger.exception("A connection failed to take a push")
        if metrics.enabled:
            metrics.pushes_delivered(len(members) * (1 if texts is None else len(texts)))

    # --- the layer -----------------------------------------------------------------------

    def _start(self) -> None:
        """Start the control receive loop and the upkeep, once, for the loop's lifetime.

        In a context of their own: the first member may join from a sync
        handler's ``async_to_sync``, whose context (asgiref's executor for
        that worker thread) is dead once the handler returns; the hub, and
        the permission re-checks it starts, outlive it.
        """
        if self._started:
            return
        self._started = True
        context = contextvars.Context()
        for work in (self._acontrol(), self._aupkeep()):
            task = context.run(self.loop.create_task, work)
            self._tasks.add(task)

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = contextvars.Context().run(self.loop.create_task, work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _aopen(self, served: _Served) -> None:
        """Make the group's channel, join it to the group and start receiving on it."""
        try:
            channel = served.channel or await self.layer.new_channel()
            served.channel = channel
            await self.layer.group_add(served.name, channel)
        except Exception as exc:
            self.report_fault(exc, "group_add")
            raise
        finally:
            served.joining = None
        if self.served.get(served.name) is served:
            served.receiver = self._spawn(self._areceive(channel, served))
        else:  # everyone left while the layer answered
            self._spawn(self._aclose(served))

    async def _aclose(self, served: _Served) -> None:
        """Leave a group nobody here needs any more."""
        if served.joining is not None:
            await asyncio.wait({served.joining})
        if served.channel is not None:
            try:
                await self.layer.group_discard(served.name, served.channel)
            except Exception:  # it expires (or was lost with Redis); the pushes are ignored
                logger.debug("Leaving group %r failed", served.name, exc_info=True)
        if served.receiver is not None:
            served.receiver.cancel()

    async def _areceive(self, channel: str, served: _Served | None) -> None:
        """Receive on ``channel`` for ever: a group's events, or (``None``) control events."""
        if served is not None:
            await self.areceive(channel, functools.partial(self.deliver, served))
        else:
            await self.areceive(channel, self._take_control)

    def _take_control(self, event: dict[str, Any]) -> None:
        if event.get("type") == CONTROL_EVENT_TYPE:
            self.route(event)
        else:
            logger.warning("Ignoring an event of type %r on the hub", event.get("type"))

    async def _acontrol(self) -> None:
        """Join the control group (retrying until the layer answers), then receive on it."""
        delay = RETRY_FIRST_SECONDS
        while self.channel is None:
            try:
                self.channel = await self.layer.new_channel()
            except Exception as exc:
                _raise_if_cancelling()
                self.report_fault(exc, "new_channel")
                delay = await self.aretry_pause(delay)
        try:
            await self._ajoin_control()
        except Exception as exc:  # the upkeep joins again once the layer answers
            _raise_if_cancelling()
            self.report_fault(exc, "group_add")
        await self._areceive(self.channel, None)

    async def _ajoin_control(self) -> None:
        assert self.channel is not None
        await self.layer.group_add(CONTROL_GROUP, self.channel)
        if self._watches():
            await self.layer.group_add(self._canary_group, self.channel)


def _push_texts(event: dict[str, Any]) -> Sequence[str] | None:
    """The frames a push event carries, when they are text (``None``: each member encodes)."""
    messages = event.get("messages")
    if messages is None:
        message = event.get("message")
        return (message,) if isinstance(message, str) else None
    if isinstance(messages, list) and all(isinstance(text, str) for text in messages):
        return messages
    return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def hub_for(layer: Any) -> Hub:
    """Return the hub of the running event loop for ``layer``, made on first use."""
    hub: Hub | None = getattr(layer, "_rohrpost_hub", None)
    if hub is None or hub.loop is not asyncio.get_running_loop():
        hub = Hub(layer)
        layer._rohrpost_hub = hub
    return hub
