"""Model mixins that push create, update and delete notifications to groups.

Declared as in rohrpost 4.x::

    class Task(NotifyOnChange, models.Model):
        title = models.CharField(max_length=200)

Every committed change of a ``Task`` then reaches the connections in its
group as ``{"id", "type": "subscription-update", "data": {"type":
"create|update|delete", "group", "object"}}``. ``NotifyOnCreate``,
``NotifyOnUpdate`` and ``NotifyOnDelete`` publish one kind each;
``NotifyOnChange`` all three.

The group is ``get_group_name(message_type=...)`` when the model defines it
(a name, or a list of names), else its ``group_name`` attribute formatted
with ``pk`` (``"tasks-{pk}"``), else ``f"{classname lower}-{pk}"``.

The object is ``get_push_notification_data(updated_fields=...,
message_type=...)`` when defined, else ``serializer_class(obj).data`` (a
Django REST framework serializer works), else ``{"id": pk}``. Both hooks are
called with keyword arguments, as in 4.x, so ``def get_group_name(self,
**kwargs)`` works. ``_get_message_type(message_type)`` (4.x's hook) may
rename the push's ``data.type``; the push is encoded with the class in the
``encoder`` attribute (default :class:`~rohrpost.message.TolerantJSONEncoder`;
``encoder = DjangoJSONEncoder`` writes a ``timedelta`` as an ISO 8601
duration). When ``save(update_fields=...)`` was used and the object has no
``updated_fields`` key, the sorted field names are added to it. With
``rohrpost_always_send = False``, an update whose ``update_fields`` share no
key with the object is not published.

What publishes, and when, is in ``docs/change-feed.md``: changes are
published after commit (never after a rollback), coalesced per transaction
(``rohrpost_coalesce = False`` to opt out), and ``bulk_create``,
``bulk_update``, ``QuerySet.update`` and ``QuerySet.delete`` publish one push
per object per group.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterable
from typing import Any

from django.db import models, transaction
from django.db.models.signals import class_prepared, post_save, pre_delete

from rohrpost.changefeed import Change, ChangeKind, record
from rohrpost.encoding import TolerantJSONEncoder
from rohrpost.message import DEFAULT_CHANNEL_LAYER

__all__ = ["NotifyBase", "NotifyOnChange", "NotifyOnCreate", "NotifyOnDelete", "NotifyOnUpdate"]


class NotifyBase:
    """What the four mixins share: the naming and payload rules.

    Attributes:
        rohrpost_always_send: ``False`` skips updates whose ``update_fields``
            share no key with the pushed object.
        rohrpost_coalesce: ``False`` publishes every change of a transaction
            instead of one net change per object and group.
        rohrpost_channel_layer: The channel-layer alias to publish on.
        encoder: The ``json.JSONEncoder`` class pushes are encoded with (4.x's
            attribute); the default takes rohrpost's fast codec.
    """

    rohrpost_always_send: bool = True
    rohrpost_coalesce: bool = True
    rohrpost_channel_layer: str = DEFAULT_CHANNEL_LAYER
    encoder: type[json.JSONEncoder] = TolerantJSONEncoder

    pk: Any
    _meta: Any

    def rohrpost_group_names(self, message_type: ChangeKind) -> list[str]:
        """Return the groups a change of ``message_type`` is published to."""
        get_group_name = getattr(self, "get_group_name", None)
        if get_group_name is not None:
            names = get_group_name(message_type=message_type)
            return [names] if isinstance(names, str) else list(names)
        group_name = getattr(self, "group_name", None)
        if group_name is not None:
            return [str(group_name).format(pk=self.pk)]
        return [f"{type(self).__name__.lower()}-{self.pk}"]

    def rohrpost_payload(
        self, updated_fields: Iterable[str] | None, message_type: ChangeKind
    ) -> Any:
        """Return the pushed ``object`` for a change of ``message_type``."""
        get_data = getattr(self, "get_push_notification_data", None)
        if get_data is not None:
            return get_data(updated_fields=updated_fields, message_type=message_type)
        serializer_class = getattr(self, "serializer_class", None)
        if serializer_class is not None:
            return serializer_class(self).data
        return {"id": self.pk}

    def _get_message_type(self, message_type: str) -> str:
        """Return the push's ``data.type`` for a change of ``message_type`` (4.x's hook)."""
        return message_type

    def rohrpost_changes(
        self, message_type: ChangeKind, updated_fields: Iterable[str] | None = None
    ) -> list[Change]:
        """Return the changes to publish for this object (one per group)."""
        fields = None if updated_fields is None else frozenset(updated_fields)
        payload = self.rohrpost_payload(None if fields is None else sorted(fields), message_type)
        if (
            message_type == "update"
            and fields is not None
            and not self.rohrpost_always_send
            and isinstance(payload, dict)
            and fields.isdisjoint(payload)
        ):
            return []
        key = (self._meta.label_lower, self.pk) if self.rohrpost_coalesce else None
        layer = self.rohrpost_channel_layer
        cls = type(self)
        # Only overridden hooks travel with the change: the defaults cost nothing.
        encoder = None if cls.encoder is TolerantJSONEncoder else cls.encoder
        push_type = (
            None
            if cls._get_message_type is NotifyBase._get_message_type
            else self._get_message_type
        )
        return [
            Change(message_type, group, payload, key, fields, layer, True, encoder, push_type)
            for group in self.rohrpost_group_names(message_type)
        ]


class NotifyOnCreate(NotifyBase):
    """Publish a ``create`` push when an object is created."""


class NotifyOnUpdate(NotifyBase):
    """Publish an ``update`` push when an object is saved again."""


class NotifyOnDelete(NotifyBase):
    """Publish a ``delete`` push when an object is deleted."""


class NotifyOnChange(NotifyOnCreate, NotifyOnUpdate, NotifyOnDelete):
    """Publish ``create``, ``update`` and ``delete`` pushes."""


def _saved(
    sender: type[models.Model],
    instance: NotifyBase,
    created: bool,
    update_fields: Iterable[str] | None,
    raw: bool,
    using: str,
    **kwargs: Any,
) -> None:
    if raw:
        return
    if created:
        if isinstance(instance, NotifyOnCreate):
            record(instance.rohrpost_changes("create"), using)
    elif isinstance(instance, NotifyOnUpdate):
        record(instance.rohrpost_changes("update", update_fields), using)


def _deleting(sender: type[models.Model], instance: NotifyBase, using: str, **kwargs: Any) -> None:
    # Before the row is gone: the payload may read it, and Django clears pk afterwards.
    # Deletes run inside a transaction, so a failed delete publishes nothing.
    record(instance.rohrpost_changes("delete"), using)


# bulk_update() runs QuerySet.update() per batch: those must not publish again.
_inside_bulk_update: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "rohrpost_inside_bulk_update", default=False
)


class NotifyQuerySetMixin:
    """Makes bulk writes of a notifying model publish like single saves do."""

    model: type[models.Model]
    db: str

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        created: list[Any] = super().bulk_create(objs, *args, **kwargs)  # type: ignore[misc]
        if issubclass(self.model, NotifyOnCreate):
            # Objects without a primary key (a database that returns none) cannot be named.
            changes = [
                c for obj in created if obj.pk is not None for c in obj.rohrpost_changes("create")
            ]
            record(changes, self.db)
        return created

    def bulk_update(
        self, objs: Iterable[Any], fields: Iterable[str], *args: Any, **kwargs: Any
    ) -> int:
        objs = list(objs)
        fields = list(fields)
        token = _inside_bulk_update.set(True)
        try:
            rows: int = super().bulk_update(objs, fields, *args, **kwargs)  # type: ignore[misc]
        finally:
            _inside_bulk_update.reset(token)
        if issubclass(self.model, NotifyOnUpdate):
            record([c for obj in objs for c in obj.rohrpost_changes("update", fields)], self.db)
        return rows

    def update(self, **kwargs: Any) -> int:
        if _inside_bulk_update.get() or not issubclass(self.model, NotifyOnUpdate):
            return super().update(**kwargs)  # type: ignore[misc, no-any-return]
        with transaction.atomic(using=self.db, savepoint=False):
            # The filter may stop matching once updated: note the rows first.
            pks = list(self.values_list("pk", flat=True))  # type: ignore[attr-defined]
            rows: int = super().update(**kwargs)  # type: ignore[misc]
            if pks:
                updated = self.model._base_manager.using(self.db).filter(pk__in=pks)
                changes = [c for obj in updated for c in obj.rohrpost_changes("update", kwargs)]
                record(changes, self.db)
        return rows


_queryset_classes: dict[type[Any], type[Any]] = {}
_manager_classes: dict[type[Any], type[Any]] = {}


def _notifying_queryset(queryset_class: type[Any]) -> type[Any]:
    if issubclass(queryset_class, NotifyQuerySetMixin):
        return queryset_class
    if queryset_class not in _queryset_classes:
        _queryset_classes[queryset_class] = type(
            queryset_class.__name__, (NotifyQuerySetMixin, queryset_class), {}
        )
    return _queryset_classes[queryset_class]


class NotifyManagerMixin:
    """Hands out querysets whose bulk writes publish, however the manager builds them."""

    def get_queryset(self) -> Any:
        queryset = super().get_queryset()  # type: ignore[misc]
        if not isinstance(queryset, NotifyQuerySetMixin):
            # A manager may build its queryset class itself (Django's documented
            # pattern), not through _queryset_class: make that one notify too.
            queryset.__class__ = _notifying_queryset(type(queryset))
        return queryset


def _notifying_manager(manager_class: type[Any]) -> type[Any]:
    if manager_class not in _manager_classes:
        # Same name and module: migrations deconstruct it as the original class.
        _manager_classes[manager_class] = type(
            manager_class.__name__,
            (NotifyManagerMixin, manager_class),
            {
                "_queryset_class": _notifying_queryset(manager_class._queryset_class),
                "__module__": manager_class.__module__,
                "__qualname__": manager_class.__qualname__,
            },
        )
    return _manager_classes[manager_class]


def _make_notifying(manager: Any) -> None:
    if not isinstance(manager, NotifyManagerMixin):
        manager.__class__ = _notifying_manager(type(manager))


def _connect(sender: Any, **kwargs: Any) -> None:
    """Wire up every concrete model that uses a mixin, as it is defined."""
    if not (isinstance(sender, type) and issubclass(sender, NotifyBase)):
        return
    model: Any = sender
    uid = f"rohrpost:{model._meta.label_lower}:{id(model)}"
    if issubclass(model, NotifyOnCreate | NotifyOnUpdate):
        post_save.connect(_saved, sender=model, weak=False, dispatch_uid=uid)
    if issubclass(model, NotifyOnDelete):
        pre_delete.connect(_deleting, sender=model, weak=False, dispatch_uid=uid)
    # `_meta.managers` is a cache of copies that Django rebuilds from each class's
    # `local_managers` (on apps.clear_cache()): change the originals as well. An
    # original shared with other models (an abstract base's) publishes for
    # notifying models only.
    for klass in model.__mro__:
        options = klass.__dict__.get("_meta")
        if options is not None:
            for manager in options.local_managers:
                _make_notifying(manager)
    for manager in model._meta.managers:
        _make_notifying(manager)


class_prepared.connect(_connect, dispatch_uid="rohrpost.mixins")
