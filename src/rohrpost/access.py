"""Access that is taken away stays away: revocation, removal from groups, identity changes.

:class:`AccessMixin` is the part of every rohrpost connection
(:class:`~rohrpost.connection.RohrpostConsumerMixin`) that the server uses to
take access away, and it acts at once, whatever the client does:

- **Revoked** (a logout through :func:`rohrpost.control.close_user_connections`,
  or a client that fell too far behind, :data:`~rohrpost.outbox.CLOSE_TOO_SLOW`):
  from that moment the connection handles no frame and sends nothing, it
  leaves every group, the application's ``disconnect()`` runs, and the close
  frame goes out as soon as the client reads (see :mod:`rohrpost.outbox`).
- **Expelled** from a group (:func:`rohrpost.control.expel_from_group`, or a
  subscription whose permission no longer holds): it stops forwarding that
  group's pushes at once, even those already queued for it, leaves the group
  and tells the client with an ``unsubscribed`` push.
- **A new identity** (a token for another user, or the token that made the
  connection's user no longer accepted): the connection moves to the new
  user's private group and every subscription is checked again under the
  new identity (:func:`rohrpost.subscriptions.arecheck`).

Control events reach a connection through its process's hub
(:mod:`rohrpost.hub`), never through its own channel-layer queue, where they
could wait behind pushes or be dropped when the queue is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.exceptions import StopConsumer

from rohrpost import control, encoding, metrics
from rohrpost.delivery import DeliveryMixin
from rohrpost.outbox import CLOSE_TOO_SLOW, Outbox
from rohrpost.protocol import generate_id

__all__ = ["AccessMixin"]

logger = logging.getLogger("rohrpost")


class AccessMixin(DeliveryMixin):
    """How the server takes access away from a connection; see the module docstring."""

    channel_layer: Any
    scope: Any
    _rohrpost_outgoing: Outbox | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The close code once the connection is revoked; from then on nothing is handled.
        self._rohrpost_revoked: int | None = None
        # Groups the server took the connection out of: their queued pushes are dropped.
        self._rohrpost_expelled: set[str] | None = None  # made on the first expulsion
        # The private group of the connection's user, once joined (see rohrpost.control).
        self._rohrpost_user_group: str | None = None
        self._rohrpost_task: asyncio.Task[Any] | None = None
        # What each subscription was made of: group name -> (Subscriptions, kind, data).
        self.rohrpost_subscriptions: dict[str, Any] = {}
        self._rohrpost_chores: set[asyncio.Task[Any]] | None = None

    # --- the hub -----------------------------------------------------------------------

    def _rohrpost_hub_discard(self, group: str) -> None:
        if self._rohrpost_hub is not None:
            self._rohrpost_hub.discard(group, self)

    def _rohrpost_hub_forget(self) -> None:
        if self._rohrpost_hub is not None:
            groups = set(self.rohrpost_groups)
            if self._rohrpost_user_group is not None:
                groups.add(self._rohrpost_user_group)
            self._rohrpost_hub.forget(self, groups)

    def _rohrpost_chore(self, coroutine: Any) -> None:
        """Run ``coroutine`` beside the connection's own work (the caller must not block)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        if self._rohrpost_chores is None:
            self._rohrpost_chores = set()
        self._rohrpost_chores.add(task)
        task.add_done_callback(self._rohrpost_chore_done)

    def _rohrpost_chore_done(self, task: asyncio.Task[Any]) -> None:
        assert self._rohrpost_chores is not None
        self._rohrpost_chores.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("A connection's control work failed", exc_info=task.exception())

    # --- control events ------------------------------------------------------------------

    def rohrpost_control(self, event: dict[str, Any]) -> None:
        """Act on a control event from the hub, at once; the slow parts run as chores."""
        action = event.get("action")
        if self._rohrpost_revoked is not None:
            return
        if action == "close":
            code = event.get("code")
            self._rohrpost_revoke(code if isinstance(code, int) else control.CLOSE_REVOKED)
        elif action == "leave" and isinstance(event.get("leave"), str):
            self._rohrpost_expel(event["leave"], event.get("reason"))
        elif action == "recheck":
            from rohrpost.subscriptions import arecheck

            group, kind = event.get("group"), event.get("kind")
            self._rohrpost_chore(
                arecheck(
                    self,
                    group=group if isinstance(group, str) else None,
                    kind=kind if isinstance(kind, str) else None,
                )
            )
        else:
            logger.warning("Ignoring a control event of unknown action: %r", event)

    def _rohrpost_revoke(self, code: int) -> None:
        """Cut the connection off now: no frame handled, nothing sent, every group left.

        Safe to call from anywhere on the event loop, the connection's own task
        included; the consumer ends (its ``disconnect()`` runs) and the close
        frame with ``code`` follows, in :meth:`_rohrpost_aend_revoked`.
        """
        if self._rohrpost_revoked is not None:
            return
        self._rohrpost_revoked = code
        if code == CLOSE_TOO_SLOW:
            metrics.slow_client_closed()
        if self._rohrpost_outgoing is not None:
            self._rohrpost_outgoing.abort()
        self._rohrpost_hub_forget()
        task = self._rohrpost_task
        if task is not None and not task.done():
            # At its next await: the consumer may be waiting anywhere (a handler, a send).
            asyncio.get_running_loop().call_soon(task.cancel)

    async def _rohrpost_aend_revoked(self) -> None:
        """End a revoked consumer: leave the groups, run ``disconnect()``, send the close."""
        code = self._rohrpost_revoked
        assert code is not None
        with contextlib.suppress(StopConsumer):
            await self.dispatch({"type": "websocket.disconnect", "code": code})  # type: ignore[attr-defined]
        assert self._rohrpost_outgoing is not None  # set as the connection started
        await self._rohrpost_outgoing.aclose(code)

    def _rohrpost_expel(self, group: str, reason: Any) -> None:
        """Take the connection out of ``group`` now, and tell the client (if it was in it)."""
        if self._rohrpost_take_out(group):
            self._rohrpost_chore(self._rohrpost_aexpelled(group, reason))

    async def _rohrpost_aexpel(self, group: str, reason: Any) -> None:
        """:meth:`_rohrpost_expel`, returning once the client has been told."""
        if self._rohrpost_take_out(group):
            await self._rohrpost_aexpelled(group, reason)

    def _rohrpost_take_out(self, group: str) -> bool:
        """Stop serving ``group`` to the connection at once; say if it was in it."""
        if group not in self.rohrpost_groups:
            return False
        self.rohrpost_groups.discard(group)
        self.rohrpost_subscriptions.pop(group, None)
        if self._rohrpost_expelled is None:
            self._rohrpost_expelled = set()
        self._rohrpost_expelled.add(group)
        self._rohrpost_hub_discard(group)
        return True

    async def _rohrpost_aexpelled(self, group: str, reason: Any) -> None:
        if not self._rohrpost_via_hub:  # the hub let go as the connection was taken out
            await self.channel_layer.group_discard(group, self.channel_name)
        frame = {"group": group, "reason": reason}
        push = {"id": generate_id(), "type": control.UNSUBSCRIBED_TYPE, "data": frame}
        await self._rohrpost_asend(encoding.dumps(push))  # type: ignore[attr-defined]

    def _rohrpost_is_revoked(self) -> bool:
        """Whether the connection is revoked (for after an ``await``: it may have become so)."""
        return self._rohrpost_revoked is not None

    def _rohrpost_forwards(self, event: dict[str, Any]) -> bool:
        """Whether a group event may reach the client (not revoked, its group not taken away)."""
        if self._rohrpost_revoked is not None:
            return False
        expelled = self._rohrpost_expelled
        return not expelled or event.get("group") not in expelled

    # --- identity ------------------------------------------------------------------------

    async def _rohrpost_aswitch_user_group(self, group: str | None) -> None:
        old, self._rohrpost_user_group = self._rohrpost_user_group, group
        if old == group or self.channel_layer is None:
            return
        if old is not None:
            await self._rohrpost_aleave(old)
        if group is not None:
            try:
                await self._rohrpost_ajoin(group)
            except Exception:
                # The layer is down: control events (a logout) still reach the
                # connection through its hub; pushes to the user's group do not.
                logger.warning("Joining the group %r failed", group, exc_info=True)
                self._rohrpost_get_hub().add(group, self)

    async def _rohrpost_aset_user(self, user: Any) -> None:
        """Make ``user`` the connection's user; on a change, re-check every subscription."""
        scope = self.scope
        old = scope.get("user")
        scope["user"] = user
        if _identity(old) == _identity(user):
            return
        authenticated = getattr(user, "is_authenticated", False) is True
        await self._rohrpost_aswitch_user_group(control.user_group(user) if authenticated else None)
        if self.rohrpost_subscriptions:
            from rohrpost.subscriptions import arecheck

            await arecheck(self, reason="The connection's user changed.")


def _identity(user: Any) -> Any:
    """What tells two users apart: the primary key of a logged-in user, else ``None``."""
    if getattr(user, "is_authenticated", False) is True:
        return ("user", getattr(user, "pk", id(user)))
    return None
