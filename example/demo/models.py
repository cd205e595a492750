"""The demo's data: boards of tasks, public or private, published live.

A board without an owner is public: everyone sees it and may edit it. A board
with an owner is private to that user. :class:`Task` uses rohrpost's change
feed, so every save, update and delete is pushed to the board's group,
``board-<id>``, after its transaction commits, whether it comes from a
rohrpost handler, the Django admin, a management command or the shell.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q, QuerySet

from rohrpost.mixins import NotifyOnChange

#: Longest task title.
MAX_TITLE = 200


def board_group(board_id: int) -> str:
    """The channel-layer group whose members see a board's changes."""
    return f"board-{board_id}"


class Board(models.Model):
    """A list of tasks; private to ``owner`` when there is one."""

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="boards",
        help_text="Leave empty for a board everyone can see.",
    )

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def visible_to(cls, user: Any) -> QuerySet[Board]:
        """The boards ``user`` may see and edit: the public ones and their own."""
        if getattr(user, "is_authenticated", False):
            return cls.objects.filter(Q(owner__isnull=True) | Q(owner=user))
        return cls.objects.filter(owner__isnull=True)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.pk, "name": self.name, "private": self.owner_id is not None}


class Task(NotifyOnChange, models.Model):
    """One task on a board."""

    board = models.ForeignKey(Board, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=MAX_TITLE)
    done = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("created", "id")

    def __str__(self) -> str:
        return self.title

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.pk, "board": self.board_id, "title": self.title, "done": self.done}

    # The change feed's hooks (rohrpost.mixins): where and what to push.
    def get_group_name(self, message_type: str) -> str:
        return board_group(self.board_id)

    def get_push_notification_data(
        self, updated_fields: list[str] | None, message_type: str
    ) -> dict[str, Any]:
        return self.as_dict()
