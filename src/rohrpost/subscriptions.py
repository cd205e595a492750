"""Opt-in ``subscribe`` / ``unsubscribe`` handlers: nobody joins a group they may not.

The application declares which *group objects* exist (``{"type": "task-list",
"id": 5}``, as rohrpost.js sends them), the group name each maps to, and who
may join it::

    from rohrpost.subscriptions import Subscriptions

    subscriptions = Subscriptions()

    @subscriptions.declare("task-list", group=lambda data: f"task-list-{int(data['id'])}")
    def may_see_list(user, scope, data):
        return user.is_authenticated and Board.objects.filter(
            pk=data["id"], members=user
        ).exists()

    subscriptions.install()  # registers "subscribe" and "unsubscribe" on HANDLERS

Wire format (DESIGN.md): ``{"type": "subscribe", "id": 1, "data": {"type":
"task-list", "id": 5}}`` is answered ``{"type": "subscribe", "id": 1, "data":
{"group": "task-list-5"}}``; ``unsubscribe`` mirrors it. Refusals are error
replies: ``forbidden`` (undeclared or not allowed: nothing is joined),
``limit`` (the connection already has ``max_per_connection`` subscriptions),
``invalid`` (a malformed group object, or a group name the channel layer
would reject). Subscribing twice is harmless (one membership, one delivery),
and checks the permission again each time: a ``subscribe`` refused for a group
the connection is in takes it out. Unsubscribing from a group never joined is
harmless too.

A subscription is checked again, and dropped when its permission no longer
holds (the client gets an ``unsubscribed`` push), whenever the connection's
user changes (a token for another user, or a token no longer accepted), and
on the server's request, from anywhere, through
:func:`rohrpost.control.recheck_group` (the members of one group) or
:func:`rohrpost.control.recheck_subscriptions` (every subscription of a kind),
for example when a board is made private.

Installing is opt-in, so applications that register their own ``subscribe``
handler keep working.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction
from channels.db import database_sync_to_async

from rohrpost.exceptions import Forbidden, RohrpostError
from rohrpost.registry import HANDLERS, HandlerRegistry

__all__ = ["LIMIT", "Subscriptions", "arecheck"]

logger = logging.getLogger("rohrpost")

#: Error code for a connection at its subscription cap.
LIMIT = "limit"
INVALID = "invalid"

# What every channel layer accepts (Channels' own rule): ASCII letters, digits,
# hyphens, underscores and periods, shorter than 100 characters.
_VALID_GROUP = re.compile(r"^[a-zA-Z\d\-_.]{1,99}$")

Permission = Callable[[Any, dict[str, Any], dict[str, Any]], Any]


@dataclass(frozen=True)
class _Kind:
    group: Callable[[dict[str, Any]], str]
    allow: Permission

    async def aallows(self, consumer: Any, data: dict[str, Any]) -> bool:
        """Whether the connection's current user may hold this subscription."""
        scope = consumer.scope
        allow = self.allow
        if iscoroutinefunction(allow):
            return bool(await allow(scope.get("user"), scope, data))
        return bool(await database_sync_to_async(allow)(scope.get("user"), scope, data))


@dataclass(frozen=True)
class _Subscription:
    """What one subscription of a connection was made of, to check it again later."""

    kind_name: str
    kind: _Kind
    data: dict[str, Any]


#: The reason an ``unsubscribed`` push gives when a permission no longer holds.
PERMISSION_REASON = "permission"


class Subscriptions:
    """The group objects an endpoint offers, and the handlers that join them.

    Args:
        max_per_connection: Most groups one connection may be subscribed to.
    """

    def __init__(self, *, max_per_connection: int = 100) -> None:
        if max_per_connection < 1:
            raise ValueError("max_per_connection must be at least 1.")
        self.max_per_connection = max_per_connection
        self._kinds: dict[str, _Kind] = {}

    def declare(
        self, kind: str, *, group: Callable[[dict[str, Any]], str]
    ) -> Callable[[Permission], Permission]:
        """Declare the group object ``kind``; decorates its permission callable.

        Args:
            kind: The group object's ``type``.
            group: Maps the group object (the request's ``data``) to the group name.

        The decorated callable is called as ``allow(user, scope, data)`` (sync
        functions run in a worker thread, so they may query the database) and
        returns whether the connection may join.
        """
        if kind in self._kinds:
            raise ValueError(f'Group object "{kind}" is already declared.')

        def decorator(allow: Permission) -> Permission:
            self._kinds[kind] = _Kind(group, allow)
            return allow

        return decorator

    def install(self, registry: HandlerRegistry | None = None) -> None:
        """Register ``subscribe`` and ``unsubscribe`` on ``registry`` (default: HANDLERS)."""
        target = HANDLERS if registry is None else registry
        target.register("subscribe", self.subscribe)
        target.register("unsubscribe", self.unsubscribe)

    def _resolve(self, request: dict[str, Any]) -> tuple[_Kind, dict[str, Any], str]:
        data = request.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise RohrpostError(
                'The data must be a group object such as {"type": "...", "id": ...}.',
                code=INVALID,
            )
        kind = self._kinds.get(data["type"])
        if kind is None:
            raise Forbidden("There is no such group to subscribe to.")
        try:
            name = kind.group(data)
        except (KeyError, TypeError, ValueError):
            raise RohrpostError("The group object is malformed.", code=INVALID) from None
        if not isinstance(name, str) or not _VALID_GROUP.match(name):
            raise RohrpostError("The group object names no valid group.", code=INVALID)
        return kind, data, name

    async def subscribe(self, consumer: Any, request: dict[str, Any]) -> dict[str, str]:
        """The ``subscribe`` handler."""
        kind, data, name = self._resolve(request)
        joined = name in consumer.rohrpost_groups
        if not joined and len(consumer.rohrpost_groups) >= self.max_per_connection:
            raise RohrpostError(
                f"At most {self.max_per_connection} subscriptions per connection.", code=LIMIT
            )
        # Checked every time, also for a group already joined: access may have gone.
        if not await kind.aallows(consumer, data):
            if joined:
                await consumer.aremove_from_group(name)
            raise Forbidden("You may not subscribe to this group.")
        if not joined:
            await consumer.aadd_to_group(name)
        records = getattr(consumer, "rohrpost_subscriptions", None)
        if records is not None and name in consumer.rohrpost_groups:
            records[name] = _Subscription(data["type"], kind, data)
        return {"group": name}

    async def unsubscribe(self, consumer: Any, request: dict[str, Any]) -> dict[str, str]:
        """The ``unsubscribe`` handler (harmless for a group not joined)."""
        _kind, _data, name = self._resolve(request)
        await consumer.aremove_from_group(name)
        return {"group": name}


async def arecheck(
    consumer: Any,
    *,
    group: str | None = None,
    kind: str | None = None,
    reason: str = PERMISSION_REASON,
) -> None:
    """Check a connection's subscriptions again; expel it from those no longer allowed.

    Args:
        consumer: A rohrpost connection (it records its subscriptions).
        group: Only the subscription to this group.
        kind: Only the subscriptions of this group-object kind.
        reason: The ``reason`` of the ``unsubscribed`` push for a dropped one.

    A permission that raises counts as refused (and is logged): access is
    kept only while it is known to hold.
    """
    records: dict[str, _Subscription] = consumer.rohrpost_subscriptions
    for name, record in list(records.items()):
        if (group is not None and name != group) or (kind is not None and record.kind_name != kind):
            continue
        try:
            allowed = await record.kind.aallows(consumer, record.data)
        except Exception:
            logger.exception("A permission failed while re-checking the group %r", name)
            allowed = False
        if not allowed and records.get(name) is record:
            await consumer._rohrpost_aexpel(name, reason)
