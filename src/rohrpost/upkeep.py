"""How a process's hub keeps its hold on the channel layer through faults.

:class:`LayerUpkeep` is the part of :class:`rohrpost.hub.Hub` that deals with
a layer that fails or forgets:

- every receive is retried after a failure, with backoff and jitter; an idle
  Redis connection that timed out (redis-py 8's 5 s default against
  channels_redis's 5 s blocking receive, channels_redis #422) is received
  on again at once;
- an outage is logged once, when it starts, and once when the layer answers
  again, which is when a canary (a control event the hub sends itself twice
  a second) comes back after every group was joined again;
- a layer that lost the memberships (Redis restarted empty) is noticed by
  the canary that stops coming back, and every membership is added again;
- memberships are renewed before the layer's ``group_expiry`` drops them,
  and the history of the groups connections follow (:mod:`rohrpost.history`)
  before its ``TTL``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from channels.layers import InMemoryChannelLayer

from rohrpost import metrics

if TYPE_CHECKING:
    from rohrpost.hub import _Served

__all__ = [
    "CANARY_SECONDS",
    "REJOIN_BATCH",
    "RETRY_FIRST_SECONDS",
    "RETRY_MAX_SECONDS",
    "LayerUpkeep",
]

logger = logging.getLogger("rohrpost")

#: Backoff after a layer fault: first wait, and the longest.
RETRY_FIRST_SECONDS: Final = 0.1
RETRY_MAX_SECONDS: Final = 1.0
#: How often the hub checks that the layer still has its memberships.
CANARY_SECONDS: Final = 0.5
#: Most layer calls the hub has in flight at once when it joins all its groups again.
REJOIN_BATCH: Final = 100


class LayerUpkeep:
    """Receiving that survives faults, and memberships kept; mixed into the hub."""

    layer: Any
    loop: asyncio.AbstractEventLoop
    channel: str | None
    groups: dict[str, dict[Any, str | None]]
    served: dict[str, _Served]
    history_groups: set[str]
    _canary_group: str
    _canary_sent: int
    _canary_seen: int
    _rejoined_at: int | None
    _trouble: asyncio.Event
    _outage: bool

    async def _ajoin_control(self) -> None:
        raise NotImplementedError  # pragma: no cover - the hub defines it

    async def areceive(self, channel: str, take: Callable[[dict[str, Any]], None]) -> None:
        """Receive on ``channel`` for ever, handing each event to ``take``; faults are retried.

        An idle Redis connection that timed out is received on again at once;
        any other failure is reported (:meth:`report_fault`) and retried with
        backoff and jitter. Used for the hub's channels and for a connection's own.
        """
        layer = self.layer
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                # Awaited directly, never under a timeout: channels_redis's receive
                # must see a cancellation itself to hand on its receive lock.
                event = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _raise_if_cancelling()
                if _is_idle_timeout(exc):
                    # An idle Redis connection timed out (socket_timeout at or below
                    # the layer's blocking time; system checks W003/W004): again.
                    continue
                self.report_fault(exc, "receive")
                delay = await self.aretry_pause(delay)
                continue
            delay = RETRY_FIRST_SECONDS
            take(event)

    def _watches(self) -> bool:
        """Whether the layer can lose memberships (Redis can; the in-memory layer cannot)."""
        return not isinstance(self.layer, InMemoryChannelLayer)

    def report_fault(self, exc: BaseException, where: str) -> None:
        """Note a layer fault: log it once per outage and have the upkeep join everything again.

        Args:
            exc: What the layer raised.
            where: The layer call that failed (``"receive"``, ``"group_add"``, ...),
                counted in the metrics.
        """
        metrics.layer_error(where)
        self._rejoined_at = None
        if not self._outage:
            self._outage = True
            logger.warning(
                "The channel layer failed; rohrpost's hub retries until it answers",
                exc_info=exc,
            )
        self._trouble.set()

    @staticmethod
    async def aretry_pause(delay: float) -> float:
        """Wait ``delay`` seconds, give or take half (jitter); return the next, longer, pause."""
        await asyncio.sleep(delay * (0.5 + random.random()))
        return min(delay * 2, RETRY_MAX_SECONDS)

    async def _aupkeep(self) -> None:
        """Keep the memberships: renew them before they expire, restore them after a loss."""
        renew_every = self._rejoin_every()
        next_renewal = None if renew_every is None else self.loop.time() + renew_every
        tick = CANARY_SECONDS if renew_every is None else min(CANARY_SECONDS, renew_every)
        delay = RETRY_FIRST_SECONDS
        next_history = self.loop.time()
        while True:
            await self._await_trouble(tick)
            if self.history_groups and self.loop.time() >= next_history:
                next_history = self.loop.time() + _history_every()
                try:
                    await self._areopen_history()
                except Exception as exc:
                    _raise_if_cancelling()
                    self.report_fault(exc, "history")
            # Two canaries unanswered (not one: a busy layer may just be slow).
            lost = self._canary_sent - self._canary_seen >= 2
            due = next_renewal is not None and self.loop.time() >= next_renewal
            if (
                self._outage
                and self._rejoined_at is not None
                and self._canary_seen > self._rejoined_at
            ):
                # A canary sent after the groups were joined again came back (a
                # layer may take a join while down and restore it later itself).
                self._recovered()
            if not (self._trouble.is_set() or lost or due):
                await self._asend_canary()
                continue
            self._trouble.clear()
            try:
                await self._arejoin_all()
            except Exception as exc:
                _raise_if_cancelling()
                self.report_fault(exc, "group_add")
                delay = await self.aretry_pause(delay)
                continue
            delay = RETRY_FIRST_SECONDS
            if renew_every is not None:
                next_renewal = self.loop.time() + renew_every
            self._canary_seen = self._rejoined_at = self._canary_sent
            if lost and not self._outage:
                logger.warning("The channel layer had lost rohrpost's groups; the hub joined again")
            if self._outage and not self._watches():
                self._recovered()
            await self._asend_canary()

    async def _await_trouble(self, seconds: float) -> None:
        """Wait until a fault is reported, or ``seconds`` have passed.

        Not ``asyncio.wait_for``: before Python 3.12 it may turn a cancellation
        that meets its timeout into ``TimeoutError``, and the upkeep would
        then run on, holding up the event loop's shutdown for ever.
        """
        waiter = asyncio.ensure_future(self._trouble.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()

    def _recovered(self) -> None:
        self._outage = False
        metrics.hub_reconnected()
        logger.warning("The channel layer answers again; rohrpost's hub joined its groups")

    async def _asend_canary(self) -> None:
        if not self._watches() or self.channel is None:
            return
        self._canary_sent += 1
        from rohrpost.hub import CONTROL_EVENT_TYPE  # the hub imports this module

        event = {"type": CONTROL_EVENT_TYPE, "action": "canary", "canary": self._canary_sent}
        try:
            await self.layer.group_send(self._canary_group, event)
        except Exception as exc:
            _raise_if_cancelling()
            self.report_fault(exc, "group_send")

    async def _arejoin_all(self) -> None:
        """Add every membership the hub stands for again: its own and its members' own."""
        if self.channel is not None:
            await self._ajoin_control()
        memberships = [
            (name, served.channel)
            for name, served in self.served.items()
            if served.channel is not None and served.receiver is not None
        ]
        memberships += [
            (group, channel)
            for group, members in self.groups.items()
            for channel in members.values()
            if channel is not None
        ]
        for start in range(0, len(memberships), REJOIN_BATCH):
            batch = [
                (g, c) for g, c in memberships[start : start + REJOIN_BATCH] if self._holds(g, c)
            ]
            await asyncio.gather(*(self.layer.group_add(g, c) for g, c in batch))
            # A connection taken out of a group while its membership was added
            # again must not keep it: let go of what is no longer held.
            stale = [(g, c) for g, c in batch if not self._holds(g, c)]
            await asyncio.gather(*(self.layer.group_discard(g, c) for g, c in stale))
        await self._areopen_history()

    def _holds(self, group: str, channel: str) -> bool:
        """Whether the membership of ``channel`` in ``group`` is still one the hub stands for."""
        served = self.served.get(group)
        if served is not None and served.channel == channel:
            return True
        return channel in self.groups.get(group, {}).values()

    async def _areopen_history(self) -> None:
        """Renew the history of the groups followed here, or start it again after a loss.

        After Redis restarted empty the next push gets a position in a new
        epoch, which tells every client that resumes, or holds the group live,
        to reset; and a quiet group's history does not expire under its
        subscribers.
        """
        if not self.history_groups:
            return
        from rohrpost import history

        store = history.store()
        for group in list(self.history_groups):
            await store.aopen(group)

    def _rejoin_every(self) -> float | None:
        """Seconds after which the memberships are renewed: half the layer's ``group_expiry``."""
        expiry = getattr(self.layer, "group_expiry", None)
        if not isinstance(expiry, int | float) or isinstance(expiry, bool) or expiry <= 0:
            return None
        return expiry / 2


def _history_every() -> float:
    """Seconds between renewals of the followed groups' history: a third of its TTL."""
    from rohrpost import history

    return max(1.0, history.store().ttl / 3)


def _is_idle_timeout(exc: BaseException) -> bool:
    """Whether a receive failed only because an idle Redis connection timed out."""
    return type(exc).__name__ == "TimeoutError" and type(exc).__module__.startswith("redis")


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
