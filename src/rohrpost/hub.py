"""One hub per process (per event loop and channel layer): the server's hold on its connections.

Control events (close a user's connections, take connections out of a group,
re-check permissions; :mod:`rohrpost.control`) must take effect even when a
connection is busy or its client reads nothing. Sent to each connection's own
channel, they would wait behind everything queued there, or be dropped by a
full channel. Instead every process's hub listens on one channel of its own,
joined to the layer group :data:`CONTROL_GROUP`, and knows which of its local
connections are in which group. A control event therefore costs one delivery
per process, and reaches the connections it names directly, on the event
loop, whatever they are doing.

The hub's receive loop survives channel-layer faults (an idle Redis timing
out, Redis restarting): it logs the outage once, retries with backoff and
jitter, and joins its group again when the layer answers. It also joins again
before the layer's ``group_expiry`` would drop its membership.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Iterable
from typing import Any, Final, Protocol

__all__ = ["CONTROL_EVENT_TYPE", "CONTROL_GROUP", "Hub", "Member", "hub_for"]

logger = logging.getLogger("rohrpost")

#: The layer group every process's hub is in; control events are sent to it.
CONTROL_GROUP: Final = "rohrpost.control"
#: The type of a control event.
CONTROL_EVENT_TYPE: Final = "rohrpost.control"

#: Backoff after a failed layer receive: first wait, and the longest.
RETRY_FIRST_SECONDS: Final = 0.1
RETRY_MAX_SECONDS: Final = 5.0


class Member(Protocol):
    """What the hub needs of a connection."""

    def rohrpost_control(self, event: dict[str, Any]) -> None:
        """Act on a control event, at once, on the event loop; must not block."""


class Hub:
    """The local connections of one process by group, and its control channel.

    Use :func:`hub_for` to get the hub of the running loop and a layer.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.loop = asyncio.get_running_loop()
        self.groups: dict[str, set[Member]] = {}
        self.channel: str | None = None
        self._task: asyncio.Task[None] | None = None

    def add(self, group: str, member: Member) -> None:
        """Note that ``member`` is in ``group``; the first member starts the hub.

        Once started, the hub runs as long as its event loop: stopping it when
        the last connection goes and starting it again with the next would
        churn the layer's receive machinery for nothing.
        """
        self.groups.setdefault(group, set()).add(member)
        if self._task is None:
            # In a context of its own: the first member may join from a sync
            # handler's async_to_sync, whose context (asgiref's executor for that
            # worker thread) is dead once the handler returns; the hub, and the
            # permission re-checks it starts, outlive it.
            self._task = contextvars.Context().run(self.loop.create_task, self._arun())

    def discard(self, group: str, member: Member) -> None:
        """Note that ``member`` left ``group``."""
        members = self.groups.get(group)
        if members is not None:
            members.discard(member)
            if not members:
                del self.groups[group]

    def forget(self, member: Member, groups: Iterable[str]) -> None:
        """Note that ``member`` left all of ``groups`` (it is closing)."""
        for group in groups:
            self.discard(group, member)

    def members(self, group: str) -> list[Member]:
        """The local members of ``group``, as a list (acting on them may change the set)."""
        return list(self.groups.get(group, ()))

    def route(self, event: dict[str, Any]) -> None:
        """Hand a control event to every local member it is for."""
        group = event.get("group")
        if isinstance(group, str):
            targets: Iterable[Member] = self.members(group)
        elif event.get("group") is None and isinstance(event.get("kind"), str):
            targets = {member for members in self.groups.values() for member in members}
        else:
            logger.warning("Ignoring a control event without a group: %r", event)
            return
        for member in targets:
            try:
                member.rohrpost_control(event)
            except Exception:  # one connection's failure must not stop the others
                logger.exception("A connection failed to act on a control event")

    async def _ajoin(self) -> None:
        if self.channel is None:
            # The layer's own naming: channels_redis serves every channel of a
            # process from one list per prefix, with one receive lock for all of them.
            self.channel = await self.layer.new_channel()
        await self.layer.group_add(CONTROL_GROUP, self.channel)

    def _rejoin_every(self) -> float | None:
        """Seconds after which the membership is renewed: half the layer's ``group_expiry``."""
        expiry = getattr(self.layer, "group_expiry", None)
        if not isinstance(expiry, int | float) or isinstance(expiry, bool) or expiry <= 0:
            return None
        return expiry / 2

    async def _arun(self) -> None:
        """Receive control events for ever; a layer fault is retried, never fatal."""
        renewer = None
        if (every := self._rejoin_every()) is not None:
            renewer = self.loop.create_task(self._arenew(every))
        try:
            await self._areceive()
        finally:
            if renewer is not None:
                renewer.cancel()

    async def _areceive(self) -> None:
        delay = RETRY_FIRST_SECONDS
        outage = False
        while True:
            try:
                if self.channel is None or outage:
                    await self._ajoin()
                # Awaited directly, never under a timeout: channels_redis's receive
                # must see the cancellation itself to hand on its receive lock.
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                _raise_if_cancelling()
                if not outage:
                    logger.warning(
                        "The channel layer failed; the hub retries until it answers",
                        exc_info=True,
                    )
                outage = True
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            if outage:
                logger.warning("The channel layer answers again; the hub is back")
                outage, delay = False, RETRY_FIRST_SECONDS
            if event.get("type") == CONTROL_EVENT_TYPE:
                self.route(event)
            else:
                logger.warning("Ignoring an event of type %r on the hub", event.get("type"))

    async def _arenew(self, every: float) -> None:
        """Join the control group again before the layer's ``group_expiry`` drops it."""
        while True:
            await asyncio.sleep(every)
            try:
                await self._ajoin()
            except Exception:  # the receive loop reports outages
                _raise_if_cancelling()
                logger.debug("Renewing the hub's membership failed", exc_info=True)


def _raise_if_cancelling() -> None:
    """Re-raise a cancellation that a layer turned into another error.

    redis-py, cancelled in the middle of a command, may raise a connection
    error instead; the hub would retry for ever and never end (Python 3.11+
    tells: ``Task.cancelling()``).
    """
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError


def hub_for(layer: Any) -> Hub:
    """Return the hub of the running event loop for ``layer``, made on first use."""
    hub: Hub | None = getattr(layer, "_rohrpost_hub", None)
    if hub is None or hub.loop is not asyncio.get_running_loop():
        hub = Hub(layer)
        layer._rohrpost_hub = hub
    return hub
