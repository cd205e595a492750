"""Models for the change-feed tests, declared as the 4.x documentation shows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
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


# Models added for tests/test_mixins.py, tests/test_changefeed.py and tests/test_publisher.py.


class Article(NotifyOnChange, models.Model):
    """The payload is ``serializer_class(obj).data`` (a REST framework serializer, set below)."""

    title = models.CharField(max_length=200, default="")
    published = models.DateTimeField(null=True)


class Multi(NotifyOnChange, models.Model):
    """``get_group_name`` returns a list: one push per group."""

    value = models.IntegerField(default=0)

    def get_group_name(self, message_type: str) -> list[str]:
        return ["multi-all", f"multi-{self.pk}"]


class Ledger(NotifyOnChange, models.Model):
    """The payload reads the stored row, so a delete's payload needs the row still there."""

    amount = models.IntegerField(default=0)

    def get_push_notification_data(self, updated_fields: Any, message_type: str) -> dict[str, Any]:
        stored_rows = Ledger.objects.using(self._state.db).filter(pk=self.pk)
        stored = stored_rows.values_list("amount", flat=True).first()
        return {"id": self.pk, "stored_amount": stored}


class Own(NotifyOnChange, models.Model):
    """The payload sets ``updated_fields`` itself: rohrpost must not overwrite it."""

    value = models.IntegerField(default=0)

    def get_push_notification_data(self, updated_fields: Any, message_type: str) -> dict[str, Any]:
        return {"id": self.pk, "updated_fields": "mine"}


class Echo(NotifyOnChange, models.Model):
    """The payload shows the arguments ``get_push_notification_data`` was called with."""

    a = models.IntegerField(default=0)
    b = models.IntegerField(default=0)

    def get_push_notification_data(self, updated_fields: Any, message_type: str) -> dict[str, Any]:
        return {"id": self.pk, "got": [updated_fields, message_type]}


class Checklist(models.Model):
    """A plain parent: deleting it cascades to its notifying items."""

    name = models.CharField(max_length=100, default="")


class Item(NotifyOnChange, models.Model):
    """A child row, deleted by cascade and updated through ``checklist.items``."""

    checklist = models.ForeignKey(Checklist, on_delete=models.CASCADE, related_name="items")
    label = models.CharField(max_length=100, default="")
    checked = models.BooleanField(default=False)


class Attachment(NotifyOnDelete, models.Model):
    """Publishes only deletes, reached by cascade from a ``Checklist``."""

    checklist = models.ForeignKey(Checklist, on_delete=models.CASCADE, related_name="attachments")


class TicketQuerySet(models.QuerySet["Ticket"]):
    def open(self) -> TicketQuerySet:
        return self.filter(closed=False)


class Ticket(NotifyOnChange, models.Model):
    """A custom queryset turned into the manager (``QuerySet.as_manager()``)."""

    closed = models.BooleanField(default=False)
    objects = TicketQuerySet.as_manager()


class LabelQuerySet(models.QuerySet["Label"]):
    def red(self) -> LabelQuerySet:
        return self.filter(color="red")


class LabelManager(models.Manager.from_queryset(LabelQuerySet)):  # type: ignore[misc]
    """A manager subclass built with ``Manager.from_queryset``."""


class Label(NotifyOnChange, models.Model):
    color = models.CharField(max_length=20, default="")
    objects = LabelManager()


class MemoQuerySet(models.QuerySet["Memo"]):
    def pinned(self) -> MemoQuerySet:
        return self.filter(pinned=True)


class MemoManager(models.Manager["Memo"]):
    """The Django documentation's pattern: ``get_queryset`` builds the custom queryset."""

    def get_queryset(self) -> MemoQuerySet:
        return MemoQuerySet(self.model, using=self._db)


class Memo(NotifyOnChange, models.Model):
    pinned = models.BooleanField(default=False)
    objects = MemoManager()


# The models of a rohrpost 4.x application (tests/test_compat_4x_app.py), written the
# way 4.x projects wrote them: hooks that take **kwargs, 4.x's `encoder` attribute and
# `_get_message_type` hook.


class Invoice(NotifyOnChange, models.Model):
    """Its own encoder (Decimal as text, timedelta as ISO 8601) and its own push types."""

    encoder = DjangoJSONEncoder
    number = models.CharField(max_length=20, default="")
    total = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal("0"))
    due_in = models.DurationField(default=timedelta(days=14))

    def get_group_name(self, **kwargs: Any) -> str:
        return "invoices"

    def get_push_notification_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "id": self.pk,
            "number": self.number,
            "total": self.total,
            "due_in": self.due_in,
            "saved": kwargs["updated_fields"],
            "kind": kwargs["message_type"],
        }

    def _get_message_type(self, message_type: str) -> str:
        return {"create": "issued", "update": "amended", "delete": "voided"}[message_type]


class Product(NotifyOnChange, models.Model):
    """The default encoder (TolerantJSONEncoder): a Decimal price is a JSON number."""

    group_name = "products"
    name = models.CharField(max_length=50, default="")
    price = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))

    def get_push_notification_data(self, **kwargs: Any) -> dict[str, Any]:
        return {"id": self.pk, "name": self.name, "price": self.price}


from rest_framework import serializers  # noqa: E402 - the serializer needs the model above


class ArticleSerializer(serializers.ModelSerializer[Article]):
    class Meta:
        model = Article
        fields = ("id", "title", "published")


Article.serializer_class = ArticleSerializer  # type: ignore[attr-defined]
