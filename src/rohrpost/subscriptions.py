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
the connection is in takes it out. For a kind with history, a ``subscribe``
``since`` a position replays what came after it (or answers ``reset``) also
for a group the connection is in: that is how a client fills a gap in the
offsets it received, a push lost on its way. Unsubscribing from a group never
joined is harmless too.

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

from rohrpost import history as _history
from rohrpost import protocol
from rohrpost.exceptions import Forbidden, RohrpostError
from rohrpost.history import Position
from rohrpost.message import deliver
from rohrpost.registry import HANDLERS, HandlerRegistry

__all__ = ["LIMIT", "Subscriptions", "arecheck"]

logger = logging.getLogger("rohrpost")

#: Error code for a connection at its subscription cap.
LIMIT = "limit"
INVALID = protocol.INVALID

# What every channel layer accepts (Channels' own rule): ASCII letters, digits,
# hyphens, underscores and periods, shorter than 100 characters.
_VALID_GROUP = re.compile(r"^[a-zA-Z\d\-_.]{1,99}$")

Permission = Callable[[Any, dict[str, Any], Any], Any]


@dataclass(frozen=True)
class _Kind:
    group: Callable[[Any], str]
    allow: Permission
    history: bool = False
    snapshot: Permission | None = None
    #: Validates the group object (a pydantic TypeAdapter), for a typed kind.
    adapter: Any = None
    #: The declared types of the group object and of a push's ``object`` (for the schema).
    data_type: Any = None
    push_type: Any = None
    #: The snapshot's declared return type (its annotation), and what encodes it.
    snapshot_type: Any = None
    snapshot_encode: Callable[[Any], Any] | None = None

    async def aallows(self, consumer: Any, data: Any) -> bool:
        """Whether the connection's current user may hold this subscription."""
        return bool(await _acall(self.allow, consumer, data))

    async def asnapshot(self, consumer: Any, data: Any) -> Any:
        """The state the subscriber starts from, under the connection's user.

        A snapshot whose return type is annotated is encoded as that type
        (a pydantic model, a list of them, a dataclass), as a typed handler's
        reply is.
        """
        assert self.snapshot is not None
        state = await _acall(self.snapshot, consumer, data)
        return state if self.snapshot_encode is None else self.snapshot_encode(state)


async def _acall(function: Permission, consumer: Any, data: Any) -> Any:
    """Call ``function(user, scope, data)``: awaited, or in a worker thread when sync."""
    scope = consumer.scope
    if iscoroutinefunction(function):
        return await function(scope.get("user"), scope, data)
    return await database_sync_to_async(function)(scope.get("user"), scope, data)


@dataclass(frozen=True)
class _Subscription:
    """What one subscription of a connection was made of, to check it again later."""

    kind_name: str
    kind: _Kind
    data: Any


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
        self,
        kind: str,
        *,
        group: Callable[[Any], str],
        history: bool = False,
        snapshot: Permission | None = None,
        data: Any = None,
        push: Any = None,
    ) -> Callable[[Permission], Permission]:
        """Declare the group object ``kind``; decorates its permission callable.

        Args:
            kind: The group object's ``type``.
            group: Maps the group object (the request's ``data``) to the group name.
            history: Keep recent pushes to its groups (:mod:`rohrpost.history`):
                pushes carry a ``position``, and a client that subscribes
                again ``since`` the position it last saw gets what it missed,
                or is told to reset.
            snapshot: ``snapshot(user, scope, data)`` returns the state a new
                subscriber starts from (sync ones run in a worker thread);
                ``subscribe`` answers with it, and the pushes that follow are
                those after it (some may repeat what it shows). Needs
                ``history``, which gives the snapshot its position.
            data: A type for the group object (a pydantic model, say; needs
                ``rohrpost[pydantic]``). The object is validated first, a
                mismatch answered ``invalid`` with its field errors, and
                ``group`` and the permission get the validated value.
            push: The type of the ``object`` its pushes carry; only for the
                API document (``python -m rohrpost schema``).

        The decorated callable is called as ``allow(user, scope, data)`` (sync
        functions run in a worker thread, so they may query the database) and
        returns whether the connection may join.
        """
        if kind in self._kinds:
            raise ValueError(f'Group object "{kind}" is already declared.')
        if snapshot is not None and not history:
            raise ValueError("A snapshot needs history=True: its position comes from the history.")
        if history:
            _require_history_on(kind)

        adapter = None
        if data is not None:
            from rohrpost.typed import type_adapter  # needs pydantic: only for typed kinds

            adapter = type_adapter(data)

        snapshot_type, snapshot_encode = _snapshot_typing(snapshot)

        def decorator(allow: Permission) -> Permission:
            self._kinds[kind] = _Kind(
                group,
                allow,
                history=history,
                snapshot=snapshot,
                adapter=adapter,
                data_type=data,
                push_type=push,
                snapshot_type=snapshot_type,
                snapshot_encode=snapshot_encode,
            )
            return allow

        return decorator

    def install(self, registry: HandlerRegistry | None = None) -> None:
        """Register ``subscribe`` and ``unsubscribe`` on ``registry`` (default: HANDLERS)."""
        target = HANDLERS if registry is None else registry
        target.register("subscribe", self.subscribe)
        target.register("unsubscribe", self.unsubscribe)

    @property
    def kinds(self) -> dict[str, tuple[Any, Any]]:
        """Every declared kind with the types of its group object and push ``object``.

        ``None`` stands for a type not declared.
        """
        return {name: (kind.data_type, kind.push_type) for name, kind in self._kinds.items()}

    def snapshots(self) -> dict[str, Any]:
        """The declared snapshot type of every kind with a snapshot (``None``: not annotated)."""
        return {
            name: kind.snapshot_type
            for name, kind in self._kinds.items()
            if kind.snapshot is not None
        }

    def _resolve(self, request: dict[str, Any]) -> tuple[str, _Kind, Any, str]:
        data = request.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise RohrpostError(
                'The data must be a group object such as {"type": "...", "id": ...}.',
                code=INVALID,
            )
        kind_name = data["type"]
        kind = self._kinds.get(kind_name)
        if kind is None:
            raise Forbidden("There is no such group to subscribe to.")
        if kind.adapter is not None:
            from rohrpost.typed import validate

            data = validate(kind.adapter, data)
        try:
            name = kind.group(data)
        except (KeyError, TypeError, ValueError):
            raise RohrpostError("The group object is malformed.", code=INVALID) from None
        if not isinstance(name, str) or not _VALID_GROUP.match(name):
            raise RohrpostError("The group object names no valid group.", code=INVALID)
        return kind_name, kind, data, name

    async def subscribe(self, consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
        """The ``subscribe`` handler."""
        kind_name, kind, data, name = self._resolve(request)
        since = _since(kind, request)
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
            # Its pushes are held until this request is answered (rohrpost.delivery).
            await consumer.aadd_to_group(name)
        records = getattr(consumer, "rohrpost_subscriptions", None)
        if records is not None and name in consumer.rohrpost_groups:
            records[name] = _Subscription(kind_name, kind, data)
        reply: dict[str, Any] = {"group": name}
        if kind.history:
            # A held group too: a client that saw a gap in its offsets (a push lost
            # on its way) asks for what is missing.
            await _aresume(consumer, kind, data, name, since, reply, joined=joined)
        return reply

    async def unsubscribe(self, consumer: Any, request: dict[str, Any]) -> dict[str, str]:
        """The ``unsubscribe`` handler (harmless for a group not joined)."""
        _kind_name, _kind, _data, name = self._resolve(request)
        await consumer.aremove_from_group(name)
        return {"group": name}


def _snapshot_typing(snapshot: Any) -> tuple[Any, Callable[[Any], Any] | None]:
    """A snapshot's annotated return type and its encoder; ``(None, None)`` when untyped."""
    if snapshot is None:
        return None, None
    import typing

    try:
        annotation = typing.get_type_hints(snapshot).get("return")
    except Exception:  # no hints to read (a lambda's are empty anyway)
        annotation = None
    if annotation is None or annotation is Any:
        return None, None
    try:
        from rohrpost.typed import reply_encoder  # needs pydantic (rohrpost[pydantic])
    except ImportError:  # without it, the snapshot is encoded as any other reply
        return annotation, None
    return annotation, reply_encoder(annotation)


def _require_history_on(kind: str) -> None:
    """Refuse a kind with history while the settings leave it off (when they are readable)."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    if settings.configured and not _history.enabled():
        raise ImproperlyConfigured(
            f'The group object "{kind}" keeps history, but history is off: set '
            'ROHRPOST = {"HISTORY": {"ENABLED": True}} in the settings of every process '
            "(servers and anything that publishes)."
        )


def _since(kind: _Kind, request: dict[str, Any]) -> Position | None:
    """The position a client resumes from (``since``), for a kind with history."""
    raw = request.get("since")
    if raw is None or not kind.history:
        return None
    since = Position.from_wire(raw)
    if since is None:
        raise RohrpostError(
            'since must be a position such as {"epoch": "...", "offset": 17}.', code=INVALID
        )
    return since


async def _aresume(
    consumer: Any,
    kind: _Kind,
    data: Any,
    name: str,
    since: Position | None,
    reply: dict[str, Any],
    *,
    joined: bool,
) -> None:
    """Fill ``reply`` with the position, what was replayed, or the reset and the snapshot.

    Replayed pushes are sent before the reply; live ones held meanwhile follow
    it, less those the replay or the snapshot already covers. The same for a
    group the connection already holds: its floor moves up to the replayed
    position, so a live push the replay already sent is dropped when it comes
    late, and every later one passes. A group already held and subscribed
    again without ``since`` and without a snapshot keeps its floor.
    """
    store = _history.store()
    position = await store.aopen(name)  # from now on, its pushes are recorded
    reset = False
    if since is not None:
        replay = await store.areplay(name, since)
        if replay is None:
            reset = True
        else:
            send = getattr(consumer, "_rohrpost_asend", None)
            for frame in replay.frames:
                if send is not None:
                    await send(frame)
                else:  # another kind of consumer (the test double, a custom one)
                    deliver(consumer, frame)
            position = replay.position
            reply["resumed"] = len(replay.frames)
    reply["position"] = position.wire()
    if reset:
        reply["reset"] = True
    floor = getattr(consumer, "_rohrpost_set_floor", None)
    if floor is not None:
        # What the reply covers is dropped when it comes late: a replay, a
        # snapshot, or on joining, what came before. A plain repeated subscribe
        # (a 4.x client's) covers nothing: a push still on its way passes.
        if since is not None or kind.snapshot is not None or not joined:
            floor(name, position)
        consumer._rohrpost_get_hub().track_history(name)
    if kind.snapshot is not None and (since is None or reset):
        reply["snapshot"] = await kind.asnapshot(consumer, data)


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
