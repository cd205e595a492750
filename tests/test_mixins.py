"""Tests for rohrpost.mixins: the 4.x naming and payload rules, and bulk writes.

Every test saves real rows and reads the pushes from a channel that joined the
group, as a consumer would (see tests/feedapp/harness.py). The bulk-write
tests run on SQLite and PostgreSQL, on the in-memory layer and on Redis.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import models, transaction
from django.test.utils import isolate_apps

from rohrpost import publisher
from rohrpost.mixins import NotifyOnChange, NotifyQuerySetMixin
from tests.feedapp import harness
from tests.feedapp.harness import (
    DATABASES,
    SyncListener,
    push_shape_ok,
    summary,
)
from tests.feedapp.models import (
    Article,
    Attachment,
    Board,
    Checklist,
    Echo,
    Every,
    Invoice,
    Item,
    Label,
    Memo,
    Multi,
    Note,
    OnlyCreate,
    OnlyDelete,
    OnlyUpdate,
    Own,
    Plain,
    Quiet,
    Task,
    Ticket,
)

# Fixtures from the harness, used by name.
db_alias = harness.db_alias
fresh_layers = harness.fresh_layers
layer_kind = harness.layer_kind
listen = harness.listen

pytestmark = [
    pytest.mark.usefixtures("fresh_layers"),
    pytest.mark.django_db(transaction=True, databases=DATABASES),
]

Listen = Callable[..., SyncListener]


def kinds_by_group(pushes: list[dict[str, Any]]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for push in pushes:
        kinds.setdefault(push["data"]["group"], []).append(push["data"]["type"])
    return kinds


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every (layer, group, frame) the change feed hands to the publisher."""
    items: list[tuple[str, str, str]] = []
    original = publisher.submit_many

    def spy(batch: list[tuple[str, str, str]]) -> None:
        items.extend(batch)
        original(batch)

    monkeypatch.setattr(publisher, "submit_many", spy)
    return items


# --- groups ---------------------------------------------------------------------------------


def test_default_group_is_lowercase_class_name_and_pk_and_default_payload_is_id(
    listen: Listen,
) -> None:
    task = Task.objects.create(title="a")
    listener = listen(f"task-{task.pk}")
    task.title = "b"
    task.save()
    assert summary(listener.pushes()) == [("update", f"task-{task.pk}", {"id": task.pk})]


def test_group_name_attribute_is_formatted_with_pk(listen: Listen) -> None:
    note = Note.objects.create(text="a")
    listener = listen(f"notes-{note.pk}")
    note.save()
    assert summary(listener.pushes()) == [
        ("update", f"notes-{note.pk}", {"id": note.pk, "text": "a", "kind": "update"})
    ]


def test_get_group_name_wins_over_group_name_and_receives_the_message_type(
    listen: Listen,
) -> None:
    listener = listen("boards")
    board = Board.objects.create(name="a")
    listener.join(f"board-gone-{board.pk}", f"never-{board.pk}")
    board.save()
    pk = board.pk
    board.delete()
    assert summary(listener.pushes()) == [
        ("create", "boards", {"id": pk}),
        ("update", "boards", {"id": pk}),
        ("delete", f"board-gone-{pk}", {"id": pk}),
    ]


def test_get_group_name_returning_a_list_publishes_once_per_group(listen: Listen) -> None:
    everyone = listen("multi-all")
    multi = Multi.objects.create()
    one = listen(f"multi-{multi.pk}")
    multi.save()
    assert summary(one.pushes()) == [("update", f"multi-{multi.pk}", {"id": multi.pk})]
    assert summary(everyone.pushes()) == [
        ("create", "multi-all", {"id": multi.pk}),
        ("update", "multi-all", {"id": multi.pk}),
    ]


# --- payloads -------------------------------------------------------------------------------


def test_get_push_notification_data_gets_sorted_updated_fields_and_the_message_type(
    listen: Listen,
) -> None:
    echo = Echo.objects.create()
    listener = listen(f"echo-{echo.pk}")
    echo.save(update_fields=["b", "a"])
    echo.save()
    pk = echo.pk
    echo.delete()
    objects = [push["data"]["object"] for push in listener.pushes()]
    assert objects == [
        {"id": pk, "got": [["a", "b"], "update"], "updated_fields": ["a", "b"]},
        {"id": pk, "got": [None, "update"]},
        {"id": pk, "got": [None, "delete"]},
    ]


def test_serializer_class_data_is_the_payload_with_a_rest_framework_serializer(
    listen: Listen, settings: Any
) -> None:
    settings.TIME_ZONE = "UTC"
    listener = listen("article-41")
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    article = Article.objects.create(pk=41, title="Hello", published=when)
    article.title = "Hi"
    article.save(update_fields=["title"])
    assert summary(listener.pushes()) == [
        (
            "create",
            f"article-{article.pk}",
            {"id": article.pk, "title": "Hello", "published": "2024-05-06T07:08:09Z"},
        ),
        (
            "update",
            f"article-{article.pk}",
            {
                "id": article.pk,
                "title": "Hi",
                "published": "2024-05-06T07:08:09Z",
                "updated_fields": ["title"],
            },
        ),
    ]


def test_update_fields_are_added_sorted_as_updated_fields(listen: Listen) -> None:
    task = Task.objects.create()
    listener = listen(f"task-{task.pk}")
    task.save(update_fields=["title", "done"])
    assert summary(listener.pushes()) == [
        ("update", f"task-{task.pk}", {"id": task.pk, "updated_fields": ["done", "title"]})
    ]


def test_a_full_save_adds_no_updated_fields(listen: Listen) -> None:
    task = Task.objects.create()
    listener = listen(f"task-{task.pk}")
    task.save()
    assert summary(listener.pushes()) == [("update", f"task-{task.pk}", {"id": task.pk})]


def test_updated_fields_set_by_the_payload_itself_are_kept(listen: Listen) -> None:
    own = Own.objects.create()
    listener = listen(f"own-{own.pk}")
    own.save(update_fields=["value"])
    assert summary(listener.pushes()) == [
        ("update", f"own-{own.pk}", {"id": own.pk, "updated_fields": "mine"})
    ]


def test_push_has_exactly_the_4x_shape(listen: Listen) -> None:
    task = Task.objects.create()
    listener = listen(f"task-{task.pk}")
    task.save()
    (push,) = listener.pushes()
    assert push_shape_ok(push)
    assert push["data"] == {"type": "update", "group": f"task-{task.pk}", "object": {"id": task.pk}}


# --- rohrpost_always_send = False -----------------------------------------------------------


def test_always_send_false_skips_an_update_sharing_no_key_with_the_payload(
    listen: Listen,
) -> None:
    quiet = Quiet.objects.create(shown="s")
    listener = listen(f"quiet-{quiet.pk}")
    quiet.hidden = "h"
    quiet.save(update_fields=["hidden"])
    assert listener.pushes() == []


def test_always_send_false_publishes_an_update_that_overlaps_the_payload(
    listen: Listen,
) -> None:
    quiet = Quiet.objects.create(shown="s")
    listener = listen(f"quiet-{quiet.pk}")
    quiet.save(update_fields=["hidden", "shown"])
    assert summary(listener.pushes()) == [
        (
            "update",
            f"quiet-{quiet.pk}",
            {"id": quiet.pk, "shown": "s", "updated_fields": ["hidden", "shown"]},
        )
    ]


def test_always_send_false_publishes_a_full_save_create_and_delete(listen: Listen) -> None:
    listener = listen("quiet-41")
    quiet = Quiet.objects.create(pk=41, shown="s")
    quiet.save()
    quiet.delete()
    assert [kind for kind, _, _ in summary(listener.pushes())] == ["create", "update", "delete"]


def test_always_send_false_skips_a_queryset_update_of_other_fields(listen: Listen) -> None:
    quiet = Quiet.objects.create(shown="s")
    listener = listen(f"quiet-{quiet.pk}")
    Quiet.objects.filter(pk=quiet.pk).update(hidden="h")
    assert listener.pushes() == []
    Quiet.objects.filter(pk=quiet.pk).update(shown="t")
    assert summary(listener.pushes()) == [
        ("update", f"quiet-{quiet.pk}", {"id": quiet.pk, "shown": "t", "updated_fields": ["shown"]})
    ]


# --- which mixin publishes what -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "kinds"),
    [
        (OnlyCreate, ["create"]),
        (OnlyUpdate, ["update"]),
        (OnlyDelete, ["delete"]),
        (Every, ["create", "update", "delete"]),  # NotifyOnChange, every change kept
    ],
    ids=["create", "update", "delete", "change"],
)
def test_each_mixin_publishes_only_its_kinds(
    listen: Listen, model: type[models.Model], kinds: list[str]
) -> None:
    listener = listen(f"{model.__name__.lower()}-41")
    obj = model.objects.create(pk=41)  # type: ignore[attr-defined]
    obj.save()
    obj.delete()
    assert [kind for kind, _, _ in summary(listener.pushes())] == kinds


@pytest.mark.parametrize(
    ("model", "kinds"),
    [(OnlyCreate, ["create"]), (OnlyUpdate, ["update", "update"]), (OnlyDelete, ["delete"])],
    ids=["create", "update", "delete"],
)
def test_each_mixin_publishes_only_its_kinds_on_bulk_writes(
    listen: Listen, model: Any, kinds: list[str]
) -> None:
    listener = listen(f"{model.__name__.lower()}-41")
    (obj,) = model.objects.bulk_create([model(pk=41)])
    model.objects.filter(pk=obj.pk).update(value=1)
    obj.value = 2
    model.objects.bulk_update([obj], ["value"])
    model.objects.filter(pk=obj.pk).delete()
    assert [kind for kind, _, _ in summary(listener.pushes())] == kinds


def test_notify_on_change_publishes_create_update_and_delete(listen: Listen) -> None:
    listener = listen("task-41")
    task = Task.objects.create(pk=41)
    task.save()
    pk = task.pk
    task.delete()
    assert summary(listener.pushes()) == [
        ("create", f"task-{pk}", {"id": pk}),
        ("update", f"task-{pk}", {"id": pk}),
        ("delete", f"task-{pk}", {"id": pk}),
    ]


def test_a_model_without_a_mixin_publishes_nothing(submitted: list[Any]) -> None:
    plain = Plain.objects.create()
    plain.save()
    Plain.objects.bulk_create([Plain(), Plain()])
    Plain.objects.update(value=3)
    Plain.objects.bulk_update(list(Plain.objects.all()), ["value"])
    plain.delete()
    Plain.objects.all().delete()
    assert submitted == []
    assert not issubclass(Plain.objects.all().__class__, NotifyQuerySetMixin)


def test_loaddata_raw_saves_publish_nothing(tmp_path: Path, submitted: list[Any]) -> None:
    fixture = tmp_path / "tasks.json"
    fixture.write_text(
        json.dumps(
            [
                {"model": "feedapp.task", "pk": 7, "fields": {"title": "loaded", "done": False}},
                {"model": "feedapp.note", "pk": 8, "fields": {"text": "loaded", "rank": 1}},
            ]
        )
    )
    call_command("loaddata", str(fixture), verbosity=0)
    call_command("loaddata", str(fixture), verbosity=0)  # the rows exist: raw updates
    assert Task.objects.get(pk=7).title == "loaded"
    assert submitted == []


# --- bulk writes (both databases, both layers) ----------------------------------------------


def test_bulk_create_publishes_one_create_per_object_with_its_pk(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    listener = listen("boards")
    boards = Board.objects.using(db_alias).bulk_create([Board(name=n) for n in "abc"])
    assert all(board.pk is not None for board in boards)
    assert summary(listener.pushes()) == [("create", "boards", {"id": b.pk}) for b in boards]


def test_bulk_create_without_returned_pks_publishes_nothing_for_those(
    listen: Listen, submitted: list[Any]
) -> None:
    """ignore_conflicts=True: the database names no rows, so nothing can be named."""
    created = Board.objects.bulk_create([Board(name="a")], ignore_conflicts=True)
    assert created[0].pk is None
    assert submitted == []


def test_queryset_update_publishes_each_row_with_final_state_and_kwargs_as_updated_fields(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    notes = Note.objects.using(db_alias)
    first, second, other = (notes.create(text=t, rank=r) for t, r in [("a", 0), ("b", 0), ("c", 5)])
    listener = listen(*(f"notes-{n.pk}" for n in (first, second, other)))
    # After the update no row matches rank=0 any more: they are published all the same.
    assert notes.filter(rank=0).update(rank=models.F("rank") + 1, text="new") == 2
    assert summary(listener.pushes()) == [
        (
            "update",
            f"notes-{note.pk}",
            {"id": note.pk, "text": "new", "kind": "update", "updated_fields": ["rank", "text"]},
        )
        for note in (first, second)
    ]
    assert notes.filter(rank=1).count() == 2


def test_queryset_update_matching_no_row_publishes_nothing(submitted: list[Any]) -> None:
    assert Task.objects.filter(title="nobody").update(done=True) == 0
    assert submitted == []


def test_bulk_update_publishes_one_update_per_object_not_doubled(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    tasks = [Task.objects.using(db_alias).create() for _ in range(3)]
    listener = listen(*(f"task-{t.pk}" for t in tasks))
    for task in tasks:
        task.title = f"t{task.pk}"
    assert Task.objects.using(db_alias).bulk_update(tasks, ["title"], batch_size=2) == 3
    assert summary(listener.pushes()) == [
        ("update", f"task-{t.pk}", {"id": t.pk, "updated_fields": ["title"]}) for t in tasks
    ]


def test_queryset_delete_publishes_one_delete_per_object(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    notes = [Note.objects.using(db_alias).create(text=t) for t in "ab"]
    listener = listen(*(f"notes-{n.pk}" for n in notes))
    Note.objects.using(db_alias).all().delete()
    assert sorted(summary(listener.pushes())) == sorted(
        ("delete", f"notes-{n.pk}", {"id": n.pk, "text": n.text, "kind": "delete"}) for n in notes
    )


def test_cascade_deletes_publish_the_deletes_of_notifying_children(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    checklist = Checklist.objects.using(db_alias).create()
    items = [Item.objects.using(db_alias).create(checklist=checklist) for _ in range(2)]
    attachment = Attachment.objects.using(db_alias).create(checklist=checklist)
    listener = listen(*(f"item-{i.pk}" for i in items), f"attachment-{attachment.pk}")
    checklist.delete()
    assert sorted(summary(listener.pushes())) == sorted(
        [("delete", f"item-{i.pk}", {"id": i.pk}) for i in items]
        + [("delete", f"attachment-{attachment.pk}", {"id": attachment.pk})]
    )


def test_one_bulk_operation_reaches_a_group_as_one_push_per_event_by_default(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    listener = listen("boards")
    boards = Board.objects.using(db_alias).bulk_create([Board(name=str(n)) for n in range(5)])
    events = listener.events_now()
    # One frame per event, as 4.x sent it; "group" names the group it went to.
    assert all(set(event) == {"type", "message", "group"} for event in events)
    assert {event["group"] for event in events} == {"boards"}
    assert [json.loads(event["message"])["data"]["object"] for event in events] == [
        {"id": b.pk} for b in boards
    ]


def test_with_batching_on_one_bulk_operation_reaches_a_group_as_one_event(
    listen: Listen, layer_kind: str, db_alias: str, settings: Any
) -> None:
    settings.ROHRPOST = {"BATCH_GROUP_MESSAGES": True}
    listener = listen("boards")
    boards = Board.objects.using(db_alias).bulk_create([Board(name=str(n)) for n in range(5)])
    events = listener.events_now()
    assert len(events) == 1
    assert [json.loads(text)["data"]["object"] for text in events[0]["messages"]] == [
        {"id": b.pk} for b in boards
    ]


def test_related_manager_writes_publish(listen: Listen, layer_kind: str, db_alias: str) -> None:
    checklist = Checklist.objects.using(db_alias).create()
    items = [Item.objects.using(db_alias).create(checklist=checklist) for _ in range(2)]
    listener = listen(*(f"item-{i.pk}" for i in items))
    assert checklist.items.update(checked=True) == 2
    assert summary(listener.pushes()) == [
        ("update", f"item-{i.pk}", {"id": i.pk, "updated_fields": ["checked"]}) for i in items
    ]
    checklist.items.filter(pk=items[0].pk).delete()
    assert summary(listener.pushes()) == [("delete", f"item-{items[0].pk}", {"id": items[0].pk})]


@pytest.mark.parametrize(
    ("model", "field"), [(Ticket, "closed"), (Label, "color")], ids=["as_manager", "from_queryset"]
)
def test_a_model_with_a_custom_manager_publishes_on_bulk_writes(
    listen: Listen, model: Any, field: str
) -> None:
    name = model.__name__.lower()
    listener = listen(f"{name}-41", f"{name}-42")
    objs = model.objects.bulk_create([model(pk=41), model(pk=42)])
    pks = [41, 42]
    # A custom queryset method in the chain keeps the queryset notifying.
    custom = model.objects.open() if model is Ticket else model.objects.red()
    assert isinstance(custom, NotifyQuerySetMixin)
    model.objects.filter(pk=pks[0]).update(**{field: getattr(objs[0], field)})
    model.objects.bulk_update(objs[1:], [field])
    model.objects.filter(pk__in=pks).delete()
    # Each group gets its pushes in order (groups may interleave differently).
    assert kinds_by_group(listener.pushes()) == {
        f"{name}-41": ["create", "update", "delete"],
        f"{name}-42": ["create", "update", "delete"],
    }


def test_a_manager_that_builds_its_queryset_in_get_queryset_publishes_on_bulk_writes(
    listen: Listen,
) -> None:
    listener = listen("memo-41")
    (memo,) = Memo.objects.bulk_create([Memo(pk=41)])
    Memo.objects.filter(pk=memo.pk).update(pinned=True)
    assert [kind for kind, _, _ in summary(listener.pushes())] == ["create", "update"]


def test_notifying_models_with_the_same_manager_class_share_one_notifying_class() -> None:
    assert type(Task.objects) is type(Note.objects)
    assert type(Task.objects).__name__ == "Manager"
    assert isinstance(Task.objects.all(), NotifyQuerySetMixin)


def test_a_manager_already_built_on_notify_queryset_mixin_is_left_as_it_is() -> None:
    class NotifyingQuerySet(NotifyQuerySetMixin, models.QuerySet[Any]):
        pass

    with isolate_apps("tests.feedapp"):

        class Declared(NotifyOnChange, models.Model):
            objects = NotifyingQuerySet.as_manager()

            class Meta:
                app_label = "feedapp"

    assert type(Declared.objects.all()) is NotifyingQuerySet


@pytest.fixture
def rewire_models() -> Iterator[None]:
    """Wire the managers of every model up again after the test (see the test below)."""
    yield
    from django.apps import apps

    from rohrpost.mixins import _connect

    for model in apps.get_models():
        _connect(model)


@pytest.mark.usefixtures("rewire_models")
def test_bulk_writes_still_publish_after_the_app_registry_cache_is_cleared(
    listen: Listen,
) -> None:
    from django.apps import apps

    task = Task.objects.create()
    listener = listen(f"task-{task.pk}")
    apps.clear_cache()  # what registering a model after startup does
    Task.objects.filter(pk=task.pk).update(done=True)
    assert summary(listener.pushes()) == [
        ("update", f"task-{task.pk}", {"id": task.pk, "updated_fields": ["done"]})
    ]


def test_a_save_inside_a_transaction_publishes_through_the_mixin_on_commit(
    listen: Listen,
) -> None:
    listener = listen("boards")
    with transaction.atomic():
        board = Board.objects.create()
        assert listener.pushes() == []
    assert summary(listener.pushes()) == [("create", "boards", {"id": board.pk})]


# --- 4.x hooks: _get_message_type, encoder -------------------------------------------------


def test_the_default_message_type_hook_returns_the_kind_unchanged() -> None:
    assert [Task()._get_message_type(kind) for kind in ("create", "update", "delete")] == [
        "create",
        "update",
        "delete",
    ]


def test_the_message_type_hook_names_the_coalesced_kind(listen: Listen) -> None:
    listener = listen("invoices")
    with transaction.atomic():
        invoice = Invoice.objects.create(number="1")
        invoice.number = "2"
        invoice.save()
    [push] = listener.pushes()
    assert push["data"]["type"] == "issued"  # create + update in one transaction: a create
    assert push["data"]["object"]["number"] == "2"
    assert push["data"]["object"]["kind"] == "update"  # the payload of the last change
