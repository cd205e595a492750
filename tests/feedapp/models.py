"""Models for the change-feed tests, declared as the 4.x documentation shows."""

from __future__ import annotations

from typing import Any

from django.db import models

from rohrpost.mixins import NotifyOnChange, NotifyOnCreate, NotifyOnDelete, NotifyOnUpdate


class Task(NotifyOnChange, models.Model):
    """Default rules: group ``task-<pk>``, payload ``{"id": pk}``."""

    title = models.CharField(max_length=200, default="")
    done = models.BooleanField(default=False)


class Note(NotifyOnChange, models.Model):
    """A ``group_name`` attribute formatted with ``pk`` and a custom payload."""

    group_name = "notes-{pk}"
    text = models.CharField(max_length=200, default="")
    rank = models.IntegerField(default=0)

    def get_push_notification_data(self, updated_fields: Any, message_type: str) -> dict[str, Any]:
        return {"id": self.pk, "text": self.text, "kind": message_type}


class Board(NotifyOnChange, models.Model):
    """``get_group_name`` decides, and wins over ``group_name``."""

    group_name = "never-{pk}"
    name = models.CharField(max_length=100, default="")

    def get_group_name(self, message_type: str) -> str:
        return "boards" if message_type != "delete" else f"board-gone-{self.pk}"


class Quiet(NotifyOnChange, models.Model):
    """Skips updates that touch nothing in its payload."""

    rohrpost_always_send = False
    shown = models.CharField(max_length=50, default="")
    hidden = models.CharField(max_length=50, default="")

    def get_push_notification_data(self, updated_fields: Any, message_type: str) -> dict[str, Any]:
        return {"id": self.pk, "shown": self.shown}


class Every(NotifyOnChange, models.Model):
    """Opts out of coalescing."""

    rohrpost_coalesce = False
    value = models.IntegerField(default=0)


class OnlyCreate(NotifyOnCreate, models.Model):
    value = models.IntegerField(default=0)


class OnlyUpdate(NotifyOnUpdate, models.Model):
    value = models.IntegerField(default=0)


class OnlyDelete(NotifyOnDelete, models.Model):
    value = models.IntegerField(default=0)


class Plain(models.Model):
    """No mixin: the benchmark's and the tests' baseline."""

    value = models.IntegerField(default=0)
