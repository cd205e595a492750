"""The change feed: model changes published to channel-layer groups after commit.

A change is recorded when it happens (:func:`record`) and published when the
transaction it belongs to commits, never after a rollback (a savepoint's
rollback included), in commit order, and immediately in autocommit. The
mixins in :mod:`rohrpost.mixins` record changes for you; :func:`publish`
records one by hand, for models that cannot use them.

Within one transaction, changes to the same object for the same group are
**coalesced** into their net effect, published once with the final state:

=======================  ==============================================
recorded                 published
=======================  ==============================================
create, update...        one ``create`` (last payload)
update, update...        one ``update``, ``updated_fields`` united
update..., delete        one ``delete``
create, ..., delete      nothing
delete, create           one ``update`` (last payload)
=======================  ==============================================

A model with ``rohrpost_coalesce = False`` (or ``publish(..., coalesce=False)``)
gets every change published.

Each push is encoded once, after commit, and handed to
:mod:`rohrpost.publisher`, which sends all pushes for a group in one
channel-layer call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

from django.db import DEFAULT_DB_ALIAS, connections

from rohrpost import encoding, publisher
from rohrpost.message import DEFAULT_CHANNEL_LAYER
from rohrpost.protocol import generate_id

__all__ = ["PUSH_TYPE", "Change", "ChangeKind", "observers", "publish", "record"]

logger = logging.getLogger("rohrpost")

#: The ``type`` of every change-feed push.
PUSH_TYPE = "subscription-update"

ChangeKind = Literal["create", "update", "delete"]


#: Called with every batch of ``(layer alias, group, frame)`` the change feed hands to
#: the publisher, in the publishing thread (:func:`rohrpost.testing.capture_pushes`).
observers: list[Callable[[list[tuple[str, str, str]]], None]] = []


class Change(NamedTuple):
    """One change of one object, for one group (a tuple: cheap to make in bulk).

    Attributes:
        kind: ``"create"``, ``"update"`` or ``"delete"``.
        group: The channel-layer group to publish to.
        payload: The pushed ``object`` (built when the change happened).
        key: What identifies the object for coalescing (model label and pk),
            or ``None`` to never coalesce this change.
        updated_fields: The fields an update changed, ``None`` for all or unknown.
        layer: The channel-layer alias.
        add_updated_fields: Add ``updated_fields`` (sorted) to an object
            payload that has no such key, when they are known (4.x behaviour).
        encoder: A ``json.JSONEncoder`` class to encode the push with;
            ``None`` for rohrpost's codec.
        push_type: Gives the push's ``data.type`` for the (coalesced) kind;
            ``None`` for the kind itself.
    """

    kind: ChangeKind
    group: str
    payload: Any
    key: tuple[str, Any] | None = None
    updated_fields: frozenset[str] | None = None
    layer: str = DEFAULT_CHANNEL_LAYER
    add_updated_fields: bool = False
    encoder: type[json.JSONEncoder] | None = None
    push_type: Callable[[str], str] | None = None


def record(changes: list[Change], using: str = DEFAULT_DB_ALIAS) -> None:
    """Publish ``changes`` when the current transaction on ``using`` commits.

    In autocommit mode (outside ``atomic``) they are published at once.
    """
    if not changes:
        return
    connection = connections[using]
    if not connection.in_atomic_block:
        # Autocommit: the change is committed already. (Under manual transaction
        # management Django cannot tell when a commit happens: published now too.)
        _publish(changes)
        return
    batch: _Batch | None = getattr(connection, "_rohrpost_batch", None)
    if batch is None:
        batch = _Batch()
        setattr(connection, "_rohrpost_batch", batch)  # noqa: B010 - a private slot on Django's object
    batch.last += 1
    # Django drops this callback if a savepoint around it is rolled back...
    connection.on_commit(_Collect(batch, changes), robust=True)
    # ...but never this one (no savepoint ids): the last one registered publishes
    # everything collected, after every _Collect of the transaction has run.
    # (Entries are (savepoint ids, callback, robust) since Django 4.2; the stubs lag.)
    connection.run_on_commit.append((set(), _Flush(batch, batch.last), True))  # type: ignore[arg-type]


def publish(
    kind: ChangeKind,
    group: str,
    payload: Any,
    *,
    key: tuple[str, Any] | None = None,
    updated_fields: Iterable[str] | None = None,
    layer: str = DEFAULT_CHANNEL_LAYER,
    using: str = DEFAULT_DB_ALIAS,
) -> None:
    """Publish one change by hand, with the change feed's transaction rules.

    For models that cannot use the mixins, and for changes made with raw SQL::

        publish("update", "task-5", {"id": 5, "title": "New"}, key=("todo.task", 5))

    Args:
        kind: ``"create"``, ``"update"`` or ``"delete"``.
        group: The group to push to.
        payload: The ``object`` of the push (JSON-encodable).
        key: Identifies the object for coalescing within a transaction;
            ``None`` publishes this change whatever else happens.
        updated_fields: For an update, the fields it changed.
        layer: The channel-layer alias.
        using: The database alias whose transaction decides when to publish.
    """
    if kind not in ("create", "update", "delete"):
        raise ValueError(f"kind must be 'create', 'update' or 'delete', not {kind!r}")
    fields = None if updated_fields is None else frozenset(updated_fields)
    record([Change(kind, group, payload, key, fields, layer)], using)


class _Batch:
    """Per database connection: the changes of the transaction being committed."""

    __slots__ = ("collected", "last")

    def __init__(self) -> None:
        self.collected: list[Change] = []
        self.last = 0


class _Collect:
    """On commit: adds its changes to the batch (dropped with a rolled-back savepoint)."""

    __slots__ = ("batch", "changes")

    def __init__(self, batch: _Batch, changes: list[Change]) -> None:
        self.batch = batch
        self.changes = changes

    def __call__(self) -> None:
        self.batch.collected.extend(self.changes)


class _Flush:
    """On commit: the last one registered publishes the whole transaction, coalesced."""

    __slots__ = ("batch", "number")

    def __init__(self, batch: _Batch, number: int) -> None:
        self.batch = batch
        self.number = number

    def __call__(self) -> None:
        batch = self.batch
        if self.number != batch.last:
            return
        changes, batch.collected = batch.collected, []
        _publish(changes)


def _publish(changes: list[Change]) -> None:
    # Runs after commit: whatever fails is logged, never raised into the committer.
    items: list[tuple[str, str, str]] = []
    for change in coalesce(changes):
        try:
            items.append((change.layer, change.group, encode_push(change)))
        except Exception:  # a hook or encoder failing must not reach the committer
            logger.exception("The change-feed payload for group %r cannot be encoded", change.group)
    for observe in observers:
        observe(items)
    try:
        publisher.submit_many(items)
    except Exception:
        logger.exception("Publishing %d change-feed pushes failed", len(items))


def encode_push(change: Change) -> str:
    """Return the push frame for ``change``."""
    payload = change.payload
    if (
        change.add_updated_fields
        and change.updated_fields is not None
        and isinstance(payload, dict)
        and "updated_fields" not in payload
    ):
        payload = {**payload, "updated_fields": sorted(change.updated_fields)}
    kind = change.kind if change.push_type is None else change.push_type(change.kind)
    frame = {
        "id": generate_id(),
        "type": PUSH_TYPE,
        "data": {"type": kind, "group": change.group, "object": payload},
    }
    if change.encoder is None:
        return encoding.dumps(frame)
    # The model's own encoder (4.x's `encoder` attribute), with the wire's compact form.
    return json.dumps(
        frame, cls=change.encoder, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )


def coalesce(changes: list[Change]) -> list[Change]:
    """Fold the changes of one transaction into their net effect, per object and group.

    Changes without a ``key`` pass through. The result keeps the order in
    which each object first changed.
    """
    net: dict[Any, Change | None] = {}
    for index, change in enumerate(changes):
        slot: Any = (change.key, change.group) if change.key is not None else index
        before = net.get(slot)
        net[slot] = change if before is None else _fold(before, change)
    return [change for change in net.values() if change is not None]


def _fold(before: Change, after: Change) -> Change | None:
    if after.kind == "delete":
        return None if before.kind == "create" else after
    if before.kind == "create":
        return after._replace(kind="create", updated_fields=None)
    if before.kind == "delete":
        return after._replace(kind="update", updated_fields=None)
    if after.kind == "create":
        return after
    if before.updated_fields is None or after.updated_fields is None:
        return after._replace(updated_fields=None)
    return after._replace(updated_fields=before.updated_fields | after.updated_fields)
