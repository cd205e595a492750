"""Tests for rohrpost.changefeed: transactions, coalescing, failures and every kind of caller.

The transaction tests run on SQLite and PostgreSQL, on the in-memory layer and
on Redis. Pushes are read from a channel that joined the group (see
tests/feedapp/harness.py), from WebSocket consumers, and from a separate
process that saves and exits.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from rohrpost import changefeed, publisher
from rohrpost.changefeed import Change, coalesce, publish, record
from rohrpost.consumers import AsyncRohrpostConsumer, SyncRohrpostConsumer, group_message_frames
from rohrpost.registry import HandlerRegistry
from tests.feedapp import harness
from tests.feedapp.harness import (
    DATABASES,
    Listener,
    SyncListener,
    push_shape_ok,
    redis_layers,
    summary,
    use_layers,
)
from tests.feedapp.models import Board, Every, Ledger, Note, Task
from tests.services import POSTGRES, require_service

# Fixtures from the harness, used by name.
alisten = harness.alisten
db_alias = harness.db_alias
fresh_layers = harness.fresh_layers
layer_kind = harness.layer_kind
listen = harness.listen

pytestmark = [
    pytest.mark.usefixtures("fresh_layers"),
    pytest.mark.django_db(transaction=True, databases=DATABASES),
]

Listen = Callable[..., SyncListener]
ROOT = Path(__file__).resolve().parent.parent


class Rollback(Exception):
    """Raised inside ``atomic`` to roll it back."""


def close_thread_connections() -> None:
    """Close this thread's database connections, SQLite's in-memory one included.

    Django keeps an in-memory SQLite connection open on ``close()`` so as not to
    lose the database; the main thread's connection keeps it alive here. An open
    connection left in a worker thread would meet the next test that may not use
    the database.
    """
    for connection in connections.all(initialized_only=True):
        BaseDatabaseWrapper.close(connection)


@pytest.fixture
async def close_worker_connections() -> Any:
    """Close the connections the async ORM opened in asgiref's worker thread."""
    yield
    await sync_to_async(close_thread_connections)()


def boards(db: str) -> Any:
    return Board.objects.using(db)


def fail_in_atomic(db: str, work: Callable[[], object]) -> None:
    """Run ``work`` in ``atomic`` (a savepoint when nested), then roll it back."""
    with transaction.atomic(using=db):
        work()
        raise Rollback


# --- transactions (both databases, both layers) ---------------------------------------------


def test_nothing_is_published_before_commit_and_everything_after(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    listener = listen("boards")
    with transaction.atomic(using=db_alias):
        board = boards(db_alias).create(name="a")
        assert listener.pushes() == []  # the publisher's queue is empty: nothing was sent
    assert summary(listener.pushes()) == [("create", "boards", {"id": board.pk})]


def test_nothing_is_published_after_a_rollback(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    listener = listen("boards")
    with pytest.raises(Rollback):
        fail_in_atomic(db_alias, lambda: boards(db_alias).create(name="a"))
    with transaction.atomic(using=db_alias):
        boards(db_alias).create(name="b")
        transaction.set_rollback(True, using=db_alias)
    assert listener.pushes() == []
    assert not boards(db_alias).exists()


def test_a_rolled_back_savepoint_publishes_nothing_while_the_outer_commit_publishes_the_rest(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    listener = listen("boards")
    with transaction.atomic(using=db_alias):
        first = boards(db_alias).create(name="first")
        with transaction.atomic(using=db_alias):
            kept = boards(db_alias).create(name="kept")  # a savepoint that is released

        def dropped() -> None:
            boards(db_alias).create(name="dropped")
            first.save()  # an update of an object created outside the savepoint

        with pytest.raises(Rollback):
            fail_in_atomic(db_alias, dropped)
        last = boards(db_alias).create(name="last")
    assert summary(listener.pushes()) == [
        ("create", "boards", {"id": board.pk}) for board in (first, kept, last)
    ]


def test_transactions_publish_in_commit_order(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    listener = listen("boards")
    with transaction.atomic(using=db_alias):
        a = boards(db_alias).create(name="a")
        b = boards(db_alias).create(name="b")
    with transaction.atomic(using=db_alias):
        b.save()
        a.save()
    c = boards(db_alias).create(name="c")  # autocommit
    assert [(kind, obj["id"]) for kind, _, obj in summary(listener.pushes())] == [
        ("create", a.pk),
        ("create", b.pk),
        ("update", b.pk),
        ("update", a.pk),
        ("create", c.pk),
    ]


def test_concurrent_transactions_publish_in_commit_order_not_start_order(
    listen: Listen, layer_kind: str
) -> None:
    """Two connections on PostgreSQL: the transaction that began first commits last."""
    require_service("PostgreSQL", str(POSTGRES["HOST"]), int(POSTGRES["PORT"]))
    listener = listen("boards")
    started, other_done = threading.Event(), threading.Event()
    pks: dict[str, int] = {}

    def early() -> None:
        try:
            with transaction.atomic(using="postgres"):
                pks["early"] = boards("postgres").create(name="early").pk
                started.set()
                assert other_done.wait(10)
        finally:
            connections.close_all()

    def late() -> None:
        try:
            assert started.wait(10)
            with transaction.atomic(using="postgres"):
                pks["late"] = boards("postgres").create(name="late").pk
        finally:
            connections.close_all()
            other_done.set()

    threads = [threading.Thread(target=early), threading.Thread(target=late)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert [obj["id"] for _, _, obj in summary(listener.pushes())] == [pks["late"], pks["early"]]


@pytest.mark.xfail(
    strict=True,
    reason="KNOWN LIMITATION (docs/change-feed.md, Pitfalls): a change made by an "
    "on_commit callback registered before the transaction's last change is published "
    "before that transaction's changes, although it commits after them",
)
def test_a_change_made_by_an_on_commit_callback_is_published_after_the_transaction(
    listen: Listen,
) -> None:
    listener = listen("boards")
    with transaction.atomic():
        first = boards("default").create(name="first")
        transaction.on_commit(lambda: boards("default").create(name="after commit"))
        third = boards("default").create(name="third")
    ids = [obj["id"] for _, _, obj in summary(listener.pushes())]
    assert ids[:2] == [first.pk, third.pk]


def test_a_change_in_autocommit_is_handed_to_the_publisher_during_save(
    monkeypatch: pytest.MonkeyPatch, listen: Listen, layer_kind: str, db_alias: str
) -> None:
    listener = listen("boards")
    handed: list[Any] = []
    submit_many = publisher.submit_many

    def spy(items: list[Any]) -> None:
        handed.extend(items)
        submit_many(items)

    monkeypatch.setattr(publisher, "submit_many", spy)
    board = boards(db_alias).create(name="a")
    assert len(handed) == 1  # before save() returned: no commit hook involved
    assert summary(listener.pushes()) == [("create", "boards", {"id": board.pk})]


def test_a_delete_payload_is_built_while_the_row_still_exists(
    listen: Listen, layer_kind: str, db_alias: str
) -> None:
    ledger = Ledger.objects.using(db_alias).create(amount=5)
    other = Ledger.objects.using(db_alias).create(amount=1)
    listener = listen(f"ledger-{ledger.pk}", f"ledger-{other.pk}")
    pk = ledger.pk
    ledger.delete()
    with transaction.atomic(using=db_alias):
        Ledger.objects.using(db_alias).filter(pk=other.pk).update(amount=9)
        Ledger.objects.using(db_alias).filter(pk=other.pk).delete()
    assert summary(listener.pushes()) == [
        ("delete", f"ledger-{pk}", {"id": pk, "stored_amount": 5}),
        ("delete", f"ledger-{other.pk}", {"id": other.pk, "stored_amount": 9}),
    ]


# --- a subscriber that reads the database when the push arrives -----------------------------

feed_handlers = HandlerRegistry()


@feed_handlers.handler("join")
def join(consumer: Any, request: dict[str, Any]) -> str:
    consumer.add_to_group(request["data"])
    return "joined"


@feed_handlers.handler("save-board")
def save_board(consumer: Any, request: dict[str, Any]) -> int:
    with transaction.atomic():
        board = Board.objects.create(name="draft")
        board.name = request["data"]
        board.save()
    return int(board.pk)


@feed_handlers.handler("asave-board")
async def asave_board(consumer: Any, request: dict[str, Any]) -> int:
    board = await Board.objects.acreate(name="draft")
    board.name = request["data"]
    await board.asave(update_fields=["name"])
    return int(board.pk)


class SyncFeedConsumer(SyncRohrpostConsumer):
    rohrpost_registry = feed_handlers


class AsyncFeedConsumer(AsyncRohrpostConsumer):
    rohrpost_registry = feed_handlers


class ReadingConsumer(AsyncFeedConsumer):
    """Reads the pushed row from the database (its own connection) as each push arrives."""

    using = "default"

    async def rohrpost_message(self, event: dict[str, Any]) -> None:
        for text in group_message_frames(event):
            push = json.loads(text)
            pk = push["data"]["object"]["id"]
            stored = await database_sync_to_async(self.stored_name)(pk)
            await self.send(text_data=json.dumps({"push": push, "stored": stored}))

    def stored_name(self, pk: int) -> str | None:
        return Board.objects.using(self.using).filter(pk=pk).values_list("name", flat=True).first()


async def connect(consumer: Any, *groups: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(consumer, "/ws/")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    for group in groups:
        await communicator.send_to(text_data=json.dumps({"id": 1, "type": "join", "data": group}))
        assert json.loads(await communicator.receive_from(timeout=5))["data"] == "joined"
    return communicator


@pytest.mark.usefixtures("close_worker_connections")
async def test_a_subscriber_reading_the_database_on_receipt_sees_the_committed_row(
    layer_kind: str, db_alias: str
) -> None:
    reader_class = type("Reader", (ReadingConsumer,), {"using": db_alias})
    reader = await connect(reader_class.as_asgi(), "boards")

    def save_in_a_transaction() -> int:
        try:
            with transaction.atomic(using=db_alias):
                board = boards(db_alias).create(name="draft")
                board.name = "final"
                board.save()
            return int(board.pk)
        finally:
            close_thread_connections()

    # Another thread, another database connection than the reader's.
    pk = await sync_to_async(save_in_a_transaction, thread_sensitive=False)()
    seen = json.loads(await reader.receive_from(timeout=5))
    assert seen["stored"] == "final"
    assert seen["push"]["data"] == {"type": "create", "group": "boards", "object": {"id": pk}}
    await reader.disconnect()


# --- every caller ---------------------------------------------------------------------------


@pytest.mark.usefixtures("close_worker_connections")
@pytest.mark.parametrize(
    ("consumer_class", "handler", "kinds"),
    [
        (SyncFeedConsumer, "save-board", ["create"]),  # one transaction: coalesced
        (AsyncFeedConsumer, "save-board", ["create"]),
        (AsyncFeedConsumer, "asave-board", ["create", "update"]),  # two autocommits
    ],
    ids=["sync-consumer", "async-consumer-sync-handler", "async-consumer-async-handler"],
)
async def test_a_handler_that_saves_reaches_another_connection_in_the_group(
    layer_kind: str, consumer_class: type[Any], handler: str, kinds: list[str]
) -> None:
    subscriber = await connect(AsyncFeedConsumer.as_asgi(), "boards")
    saver = await connect(consumer_class.as_asgi())
    await saver.send_to(text_data=json.dumps({"id": 2, "type": handler, "data": "saved"}))
    pk = json.loads(await saver.receive_from(timeout=5))["data"]
    pushes = [json.loads(await subscriber.receive_from(timeout=5)) for _ in kinds]
    assert all(push_shape_ok(push) for push in pushes)
    assert [(p["data"]["type"], p["data"]["object"]["id"]) for p in pushes] == [
        (kind, pk) for kind in kinds
    ]
    assert await subscriber.receive_nothing(timeout=0.05)
    await saver.disconnect()
    await subscriber.disconnect()


@pytest.mark.usefixtures("close_worker_connections")
async def test_async_orm_calls_publish_on_the_callers_loop(
    alisten: Any, layer_kind: str, db_alias: str
) -> None:
    listener: Listener = await alisten("boards")
    manager = boards(db_alias)
    created = await manager.abulk_create([Board(name="x"), Board(name="y")])
    board = await manager.acreate(name="a")
    board.name = "b"
    await board.asave(update_fields=["name"])
    assert await manager.filter(pk=created[0].pk).aupdate(name="z") == 1
    assert summary(await listener.apushes()) == [
        ("create", "boards", {"id": created[0].pk}),
        ("create", "boards", {"id": created[1].pk}),
        ("create", "boards", {"id": board.pk}),
        ("update", "boards", {"id": board.pk, "updated_fields": ["name"]}),
        ("update", "boards", {"id": created[0].pk, "updated_fields": ["name"]}),
    ]
    pk = board.pk
    await listener.ajoin(f"board-gone-{pk}")
    await board.adelete()
    assert summary(await listener.apushes()) == [("delete", f"board-gone-{pk}", {"id": pk})]


def test_a_separate_process_that_exits_at_once_still_publishes(
    tmp_path: Path, settings: Any, listen: Listen, redis_url: str
) -> None:
    prefix = f"rohrpost-test-{uuid.uuid4().hex}"
    use_layers(settings, redis_layers(redis_url, prefix))
    listener = listen("task-4242")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.feedapp.script",
            redis_url,
            prefix,
            str(tmp_path / "db"),
            "4242",
        ],
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    (push,) = listener.pushes()
    assert push_shape_ok(push)
    assert push["data"] == {"type": "create", "group": "task-4242", "object": {"id": 4242}}


# --- failures -------------------------------------------------------------------------------


def test_a_failing_group_send_breaks_neither_the_commit_nor_later_callbacks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, listen: Listen
) -> None:
    listener = listen("boards")

    async def group_send(group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("the layer is down")

    monkeypatch.setattr(get_channel_layer(), "group_send", group_send)
    later: list[str] = []
    with transaction.atomic():
        Board.objects.create(name="a")
        transaction.on_commit(lambda: later.append("ran"))
    assert publisher.flush()
    Board.objects.create(name="b")
    assert listener.pushes() == []
    assert later == ["ran"]
    assert Board.objects.count() == 2
    failures = [r for r in caplog.records if r.name == "rohrpost" and r.exc_info]
    assert [r.getMessage() for r in failures] == [
        "Publishing 1 frames to group 'boards' failed"
    ] * 2


def test_a_publisher_that_raises_is_logged_and_later_callbacks_still_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def submit_many(items: list[Any]) -> None:
        raise RuntimeError("no loop")

    monkeypatch.setattr(publisher, "submit_many", submit_many)
    later: list[str] = []
    with transaction.atomic():
        Board.objects.create(name="a")
        transaction.on_commit(lambda: later.append("ran"))
    assert later == ["ran"]
    (failure,) = [r for r in caplog.records if r.name == "rohrpost"]
    assert failure.getMessage() == "Publishing 1 change-feed pushes failed"
    assert failure.levelno == logging.ERROR


def test_an_unencodable_payload_is_logged_and_the_other_pushes_still_go_out(
    caplog: pytest.LogCaptureFixture, listen: Listen
) -> None:
    listener = listen("boards", "odd")
    with transaction.atomic():
        publish("update", "odd", {"value": object()})
        board = Board.objects.create(name="a")
    assert summary(listener.pushes()) == [("create", "boards", {"id": board.pk})]
    (failure,) = [r for r in caplog.records if r.name == "rohrpost"]
    assert failure.getMessage() == "The change-feed payload for group 'odd' cannot be encoded"


# --- coalescing -----------------------------------------------------------------------------


def test_create_then_updates_publish_one_create_with_the_final_payload(listen: Listen) -> None:
    listener = listen("notes-41")
    with transaction.atomic():
        note = Note.objects.create(pk=41, text="a")
        note.text = "b"
        note.save(update_fields=["text"])
        note.text = "c"
        note.save()
    assert summary(listener.pushes()) == [
        ("create", "notes-41", {"id": 41, "text": "c", "kind": "update"})
    ]


def test_updates_publish_one_update_with_the_union_of_updated_fields(listen: Listen) -> None:
    task = Task.objects.create()
    listener = listen(f"task-{task.pk}")
    with transaction.atomic():
        task.save(update_fields=["title"])
        task.save(update_fields=["done"])
        Task.objects.filter(pk=task.pk).update(title="x")
    assert summary(listener.pushes()) == [
        ("update", f"task-{task.pk}", {"id": task.pk, "updated_fields": ["done", "title"]})
    ]


@pytest.mark.parametrize(
    "full_save_first", [False, True], ids=["fields-then-full", "full-then-fields"]
)
def test_an_update_with_fields_and_a_full_save_publish_one_update_without_updated_fields(
    listen: Listen, full_save_first: bool
) -> None:
    task = Task.objects.create()
    listener = listen(f"task-{task.pk}")
    with transaction.atomic():
        if full_save_first:
            task.save()
        task.save(update_fields=["title"])
        if not full_save_first:
            task.save()
    assert summary(listener.pushes()) == [("update", f"task-{task.pk}", {"id": task.pk})]


def test_create_then_delete_publishes_nothing(listen: Listen) -> None:
    listener = listen("task-41")
    with transaction.atomic():
        task = Task.objects.create(pk=41)
        task.save()
        task.delete()
    assert listener.pushes() == []


def test_update_then_delete_publishes_one_delete(listen: Listen) -> None:
    note = Note.objects.create(text="a")
    listener = listen(f"notes-{note.pk}")
    pk = note.pk
    with transaction.atomic():
        note.text = "b"
        note.save()
        note.delete()
    assert summary(listener.pushes()) == [
        ("delete", f"notes-{pk}", {"id": pk, "text": "b", "kind": "delete"})
    ]


def test_changes_to_different_objects_stay_separate_in_first_change_order(
    listen: Listen,
) -> None:
    a, b = Board.objects.create(name="a"), Board.objects.create(name="b")
    listener = listen("boards")
    with transaction.atomic():
        a.save()
        b.save()
        a.save(update_fields=["name"])
        Note.objects.create(text="other model")
    assert summary(listener.pushes()) == [
        ("update", "boards", {"id": a.pk}),
        ("update", "boards", {"id": b.pk}),
    ]


def test_a_model_that_does_not_coalesce_publishes_every_change(listen: Listen) -> None:
    listener = listen("every-41")
    with transaction.atomic():
        every = Every.objects.create(pk=41)
        every.value = 1
        every.save(update_fields=["value"])
        every.save()
        every.delete()
    assert summary(listener.pushes()) == [
        ("create", "every-41", {"id": 41}),
        ("update", "every-41", {"id": 41, "updated_fields": ["value"]}),
        ("update", "every-41", {"id": 41}),
        ("delete", "every-41", {"id": 41}),
    ]


# --- publish() by hand ----------------------------------------------------------------------


def test_publish_in_autocommit_sends_at_once_without_updated_fields(listen: Listen) -> None:
    listener = listen("hand")
    publish("update", "hand", {"id": 1}, updated_fields=["a"])
    (push,) = listener.pushes()
    assert push_shape_ok(push)
    assert push["data"] == {"type": "update", "group": "hand", "object": {"id": 1}}


def test_publish_with_a_key_coalesces_and_without_a_key_does_not(listen: Listen) -> None:
    listener = listen("hand")
    key = ("todo.task", 5)
    with transaction.atomic():
        publish("update", "hand", {"v": 1}, key=key, updated_fields=["a"])
        publish("update", "hand", {"v": "free"})
        publish("update", "hand", {"v": 2}, key=key, updated_fields=["b"])
        publish("update", "hand", {"v": "free"})
    assert [push["data"]["object"] for push in listener.pushes()] == [
        {"v": 2},
        {"v": "free"},
        {"v": "free"},
    ]


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (["delete", "create"], ("update", 2)),
        (["update", "create"], ("create", 2)),
        (["create", "delete", "create"], ("create", 3)),
        (["update", "update", "delete"], ("delete", 3)),
    ],
    ids=["delete-create", "update-create", "create-delete-create", "update-update-delete"],
)
def test_publish_coalesces_any_sequence_into_its_net_change(
    listen: Listen, kinds: list[str], expected: tuple[str, int]
) -> None:
    listener = listen("hand")
    with transaction.atomic():
        for number, kind in enumerate(kinds, start=1):
            publish(kind, "hand", {"v": number}, key=("app.model", 1))  # type: ignore[arg-type]
    assert [(p["data"]["type"], p["data"]["object"]["v"]) for p in listener.pushes()] == [expected]


def test_publish_follows_the_transaction_of_the_given_database(
    listen: Listen, db_alias: str
) -> None:
    listener = listen("hand")
    with transaction.atomic(using=db_alias):
        publish("create", "hand", {"id": 1}, using=db_alias)
        assert listener.pushes() == []
    assert len(listener.pushes()) == 1


def test_publish_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be 'create', 'update' or 'delete', not 'x'"):
        publish("x", "hand", {})  # type: ignore[arg-type]


def test_record_of_no_changes_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changefeed, "_publish", pytest.fail)
    record([])
    with transaction.atomic():
        record([])


def test_coalesce_keeps_unkeyed_changes_and_first_change_order() -> None:
    changes = [
        Change("update", "g", 1, ("m", 1), frozenset({"a"})),
        Change("update", "g", 2),
        Change("update", "h", 3, ("m", 1)),
        Change("update", "g", 4, ("m", 1), None),
    ]
    assert coalesce(changes) == [
        Change("update", "g", 4, ("m", 1), None),
        Change("update", "g", 2),
        Change("update", "h", 3, ("m", 1)),
    ]
