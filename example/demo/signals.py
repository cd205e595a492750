"""Taking access away live (rohrpost.control).

- Logging out ends the user's live connections. A WebSocket keeps the user its
  handshake had: without this, a tab opened before logging out would go on
  seeing the private board. The closed connections get code 4003; the page
  then reconnects as the anonymous user.
- A board whose owner changes (made private, given to someone else, made
  public) has its subscribers checked again, after the change commits: who
  may no longer see it is taken out of its group at once, in every server
  process, and the page is told with an ``unsubscribed`` push.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from demo.models import Board, board_group
from rohrpost.control import close_user_connections, recheck_group


@receiver(user_logged_out)
def close_live_connections(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        close_user_connections(user)


@receiver(pre_save, sender=Board)
def note_the_owner_before(sender: Any, instance: Board, **kwargs: Any) -> None:
    if instance.pk is None:
        instance._owner_before = None  # type: ignore[attr-defined]
        return
    instance._owner_before = (  # type: ignore[attr-defined]
        Board.objects.filter(pk=instance.pk).values_list("owner_id", flat=True).first()
    )


@receiver(post_save, sender=Board)
def recheck_when_the_owner_changes(
    sender: Any, instance: Board, created: bool, **kwargs: Any
) -> None:
    if created or getattr(instance, "_owner_before", None) == instance.owner_id:
        return
    group = board_group(instance.pk)
    transaction.on_commit(lambda: recheck_group(group))
