"""Server-side control of connections: take them out of groups, close a user's.

Every authenticated connection of a rohrpost consumer is also in a private
group of its user (:func:`user_group`), so the server can reach all the
connections of one user, in every process::

    from rohrpost.control import aclose_user_connections, aexpel_from_group

    await aexpel_from_group("board-5", user=user, reason="removed from the board")
    await aclose_user_connections(user)                # logout, revoked access

An expelled connection leaves the group and its client is told with the push
``{"id", "type": "unsubscribed", "data": {"group", "reason"}}``. A closed
connection gets close code :data:`CLOSE_REVOKED` (4003) unless another is
given. The sync twins (``expel_from_group``, ``close_user_connections``) work
from views, signals, tasks and commands.
"""

from __future__ import annotations

from typing import Any, Final

from rohrpost.message import DEFAULT_CHANNEL_LAYER, agroup_send, call_from_sync

__all__ = [
    "CLOSE_EVENT_TYPE",
    "CLOSE_REVOKED",
    "LEAVE_EVENT_TYPE",
    "UNSUBSCRIBED_TYPE",
    "aclose_user_connections",
    "aexpel_from_group",
    "close_user_connections",
    "expel_from_group",
    "user_group",
]

#: Channel-layer event: the receiving connection leaves ``event["group"]``.
LEAVE_EVENT_TYPE: Final = "rohrpost.leave"
#: Channel-layer event: the receiving connection is closed with ``event["code"]``.
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
    await agroup_send(
        target, {"type": LEAVE_EVENT_TYPE, "group": group, "reason": reason}, layer=layer
    )


async def aclose_user_connections(
    user: Any, *, code: int = CLOSE_REVOKED, layer: str = DEFAULT_CHANNEL_LAYER
) -> None:
    """Close every connection of ``user`` (a user or a primary key) with ``code``."""
    await agroup_send(user_group(user), {"type": CLOSE_EVENT_TYPE, "code": code}, layer=layer)


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
