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
would reject). Subscribing twice is harmless (one membership, one delivery);
so is unsubscribing from a group never joined.

Installing is opt-in, so applications that register their own ``subscribe``
handler keep working.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction
from channels.db import database_sync_to_async

from rohrpost.exceptions import Forbidden, RohrpostError
from rohrpost.registry import HANDLERS, HandlerRegistry

__all__ = ["LIMIT", "Subscriptions"]

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
        if name in consumer.rohrpost_groups:
            return {"group": name}
        if len(consumer.rohrpost_groups) >= self.max_per_connection:
            raise RohrpostError(
                f"At most {self.max_per_connection} subscriptions per connection.", code=LIMIT
            )
        scope = consumer.scope
        allow = kind.allow
        if iscoroutinefunction(allow):
            allowed = await allow(scope.get("user"), scope, data)
        else:
            allowed = await database_sync_to_async(allow)(scope.get("user"), scope, data)
        if not allowed:
            raise Forbidden("You may not subscribe to this group.")
        await consumer.aadd_to_group(name)
        return {"group": name}

    async def unsubscribe(self, consumer: Any, request: dict[str, Any]) -> dict[str, str]:
        """The ``unsubscribe`` handler (harmless for a group not joined)."""
        _kind, _data, name = self._resolve(request)
        await consumer.aremove_from_group(name)
        return {"group": name}
