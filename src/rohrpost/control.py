"""Server-side control of connections: take them out of groups, close a user's, re-check.

Every authenticated connection of a rohrpost consumer is also in a private
group of its user (:func:`user_group`), so the server can reach all the
connections of one user, in every process::

    from rohrpost.control import aclose_user_connections, aexpel_from_group, arecheck_group

    await aexpel_from_group("board-5", user=user, reason="removed from the board")
    await aclose_user_connections(user)                # logout, revoked access
    await arecheck_group("board-5")                    # the board's permissions changed

An expelled connection leaves the group and its client is told with the push
``{"id", "type": "unsubscribed", "data": {"group", "reason"}}``. A closed
connection gets close code :data:`CLOSE_REVOKED` (4003) unless another is
given. A re-check runs the permission of every subscription
(:mod:`rohrpost.subscriptions`) to the group, or of one kind, again, under
each connection's user, and expels the connections that no longer pass. The
sync twins (``expel_from_group``, ``close_user_connections``,
``recheck_group``, ``recheck_subscriptions``) work from views, signals, tasks
and commands.

Each of these is one event to the channel-layer group every process's hub is
in (:mod:`rohrpost.hub`); the hub acts on its local connections at once, even
on a connection whose client reads nothing and whose channel is full
(:mod:`rohrpost.access`).
"""

from __future__ import annotations

from typing import Any, Final

from rohrpost.hub import CONTROL_EVENT_TYPE, CONTROL_GROUP
from rohrpost.message import DEFAULT_CHANNEL_LAYER, agroup_send, call_from_sync

__all__ = [
    "CLOSE_EVENT_TYPE",
    "CLOSE_REVOKED",
    "LEAVE_EVENT_TYPE",
    "UNSUBSCRIBED_TYPE",
    "aclose_user_connections",
    "aexpel_from_group",
    "arecheck_group",
    "arecheck_subscriptions",
    "close_user_connections",
    "expel_from_group",
    "recheck_group",
    "recheck_subscriptions",
    "user_group",
]

#: Channel-layer event a connection still obeys when it arrives on its own
#: channel: leave ``event["group"]``. rohrpost itself sends hub events instead.
LEAVE_EVENT_TYPE: Final = "rohrpost.leave"
#: Channel-layer event a connection still obeys when it arrives on its own
#: channel: close with ``event["code"]``. rohrpost itself sends hub events instead.
CLOSE_EVENT_TYPE: Final = "rohrpost.close"
#: Close code for a connection the server ended (logout, access revoked).
CLOSE_REVOKED: Final = 4003
#: The ``type`` of the push that tells a client it left a group.
UNSUBSCRIBED_TYPE: Final = "unsubscribed"


def user_group(user: Any) -> str:
    """Return the group every connection of ``user`` (a user or a primary key) is in."""
    return f"rohrpost.user.{getattr(user, 'pk', user)}"


async def aexpel_from_group(
    group: str, *, user: Any = None, reason: str | None = None, layer: str = DEFAULT_CHANNEL_LAYER
) -> None:
    """Take connections out of ``group`` and tell their clients.

    Args:
        group: The group to leave.
        user: Only this user's connections (a user or a primary key); every
            member of the group when ``None``.
        reason: Text for the client's ``unsubscribed`` push.
        layer: The channel-layer alias.
    """
    target = group if user is None else user_group(user)
    await _acontrol({"action": "leave", "group": target, "leave": group, "reason": reason}, layer)


async def aclose_user_connections(
    user: Any, *, code: int = CLOSE_REVOKED, layer: str = DEFAULT_CHANNEL_LAYER
) -> None:
    """Close every connection of ``user`` (a user or a primary key) with ``code``.

    The connections stop at once: no more frames handled, nothing more sent,
    every group left; the close frame follows as soon as each client reads.
    """
    await _acontrol({"action": "close", "group": user_group(user), "code": code}, layer)


async def arecheck_group(group: str, *, layer: str = DEFAULT_CHANNEL_LAYER) -> None:
    """Check every subscription to ``group`` against its permission again; expel who fails.

    Call it when what a permission depends on changes (a board made private,
    a member removed). Each connection's permission runs under its own user,
    as on ``subscribe``; a connection that no longer passes is expelled with
    the reason "permission" (see :func:`aexpel_from_group`).
    """
    await _acontrol({"action": "recheck", "group": group}, layer)


async def arecheck_subscriptions(kind: str, *, layer: str = DEFAULT_CHANNEL_LAYER) -> None:
    """Like :func:`arecheck_group`, for every subscription of the group-object ``kind``."""
    await _acontrol({"action": "recheck", "group": None, "kind": kind}, layer)


async def _acontrol(event: dict[str, Any], layer: str) -> None:
    await agroup_send(CONTROL_GROUP, {"type": CONTROL_EVENT_TYPE, **event}, layer=layer)


def expel_from_group(
    group: str, *, user: Any = None, reason: str | None = None, layer: str = DEFAULT_CHANNEL_LAYER
) -> None:
    """Sync twin of :func:`aexpel_from_group`."""
    call_from_sync(aexpel_from_group, group, user=user, reason=reason, layer=layer)


def close_user_connections(
    user: Any, *, code: int = CLOSE_REVOKED, layer: str = DEFAULT_CHANNEL_LAYER
) -> None:
    """Sync twin of :func:`aclose_user_connections`."""
    call_from_sync(aclose_user_connections, user, code=code, layer=layer)


def recheck_group(group: str, *, layer: str = DEFAULT_CHANNEL_LAYER) -> None:
    """Sync twin of :func:`arecheck_group`."""
    call_from_sync(arecheck_group, group, layer=layer)


def recheck_subscriptions(kind: str, *, layer: str = DEFAULT_CHANNEL_LAYER) -> None:
    """Sync twin of :func:`arecheck_subscriptions`."""
    call_from_sync(arecheck_subscriptions, kind, layer=layer)
