"""Tests for rohrpost.testing: the test client, push capture and the pytest fixtures."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.db import connections, transaction

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer, changefeed
from rohrpost.handlers import handle_ping
from rohrpost.message import asend_to_group
from rohrpost.registry import HandlerRegistry
from rohrpost.subscriptions import Subscriptions
from rohrpost.testing import CallError, PushCapture, TestClient, capture_pushes
from tests.feedapp.models import Note, Task

REGISTRY = HandlerRegistry()
REGISTRY.register("ping", handle_ping, inline=True)
subscriptions = Subscriptions()


@REGISTRY.handler("note.add")
def add_note(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    note = Note.objects.create(text=request["data"])
    return {"id": note.pk}


@REGISTRY.handler("shout")
async def shout(consumer: Any, request: dict[str, Any]) -> str:
    await asend_to_group("room-hall", {"id": 7, "type": "shout", "data": request.get("data")})
    return "sent"


@REGISTRY.handler("fail")
def fail(consumer: Any, request: dict[str, Any]) -> None:
    from rohrpost.exceptions import Forbidden

    raise Forbidden("No.", data={"why": "test"})


@subscriptions.declare("room", group=lambda data: f"room-{data['name']}")
def may_enter(user: Any, scope: Any, data: Any) -> bool:
    return True


subscriptions.install(REGISTRY)


class Endpoint(AsyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


class SyncEndpoint(SyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


def note_push(note: Note) -> tuple[str, str, Any]:
    return (f"notes-{note.pk}", "create", {"id": note.pk, "text": note.text, "kind": "create"})


# --- the client --------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_channel_layers")
@pytest.mark.parametrize("consumer_class", [Endpoint, SyncEndpoint], ids=["async", "sync"])
async def test_call_returns_the_data_and_raises_the_error_with_code_and_data(
    consumer_class: type[Any],
) -> None:
    async with TestClient(consumer_class.as_asgi(), user="ada") as client:
        assert client.scope["user"] == "ada"
        assert await client.call("ping") is None
        with pytest.raises(CallError) as caught:
            await client.call("fail")
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        "forbidden",
        "No.",
        {"why": "test"},
    )
    assert str(caught.value) == "forbidden: No."


@pytest.mark.usefixtures("fresh_channel_layers")
async def test_pushes_are_received_in_order_and_kept_while_a_call_waits() -> None:
    async with TestClient(Endpoint.as_asgi()) as client, TestClient(Endpoint.as_asgi()) as other:
        assert await client.subscribe({"type": "room", "name": "hall"}) == "room-hall"
        await client.assert_no_push()
        assert await other.call("shout", "one") == "sent"
        assert await other.call("shout", "two") == "sent"
        # The pushes arrive before this reply; they wait for receive_push.
        assert await client.call("ping") is None
        assert (await client.receive_push())["data"] == "one"
        assert (await client.receive_push())["data"] == "two"
        await client.assert_no_push()
        assert await client.unsubscribe({"type": "room", "name": "hall"}) == "room-hall"
        await other.call("shout", "three")
        await client.assert_no_push()


@pytest.mark.usefixtures("fresh_channel_layers")
async def test_assert_no_push_fails_for_a_push_kept_or_arriving() -> None:
    async with TestClient(Endpoint.as_asgi()) as client:
        await client.subscribe({"type": "room", "name": "hall"})
        await client.call("shout", "kept")
        with pytest.raises(AssertionError, match="Unexpected push"):
            await client.assert_no_push()
        with pytest.raises(AssertionError, match="kept"):
            await client.assert_no_push()
        assert (await client.receive_push())["data"] == "kept"
        await asend_to_group("room-hall", {"id": 8, "type": "shout", "data": "late"})
        with pytest.raises(AssertionError, match="late"):
            await client.assert_no_push()


async def test_a_refused_connection_raises() -> None:
    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 4003})

    with pytest.raises(AssertionError, match="4003"):
        await TestClient(refuse).connect()


async def test_a_missing_answer_times_out() -> None:
    async with TestClient(Endpoint.as_asgi(), timeout=0.2) as client:
        await client.send({"id": 1, "type": "ping"})
        await client.receive()
        with pytest.raises(asyncio.TimeoutError):
            await client.receive_push()


# --- capturing the change feed -------------------------------------------------------


@pytest.mark.django_db
def test_capture_works_inside_the_test_case_transaction() -> None:
    """pytest-django's default: the test's transaction never commits."""
    with capture_pushes() as pushes:
        note = Note.objects.create(text="hello")
        with transaction.atomic():
            note.text = "changed"
            note.save()
    assert pushes.changes == [
        # One create (coalesced) with the last payload, which the update built.
        (f"notes-{note.pk}", "create", {"id": note.pk, "text": "changed", "kind": "update"})
    ]
    assert pushes.groups == [f"notes-{note.pk}"]
    assert pushes.to(f"notes-{note.pk}")[0].frame["type"] == "subscription-update"


@pytest.mark.django_db
def test_capture_leaves_out_what_a_rolled_back_savepoint_did() -> None:
    with capture_pushes() as pushes:
        kept = Note.objects.create(text="kept")
        try:
            with transaction.atomic():
                Note.objects.create(text="gone")
                raise RuntimeError
        except RuntimeError:
            pass
    assert pushes.changes == [note_push(kept)]


@pytest.mark.django_db
def test_commit_false_publishes_nothing_inside_the_test_case_transaction() -> None:
    with capture_pushes(commit=False) as pushes:
        Note.objects.create(text="waits for a commit that never comes")
    assert len(pushes) == 0


@pytest.mark.django_db(transaction=True)
def test_capture_works_in_a_transactional_test() -> None:
    with capture_pushes() as pushes:
        first = Note.objects.create(text="autocommit")
        with transaction.atomic():
            second = Note.objects.create(text="committed")
        try:
            with transaction.atomic():
                Note.objects.create(text="rolled back")
                raise RuntimeError
        except RuntimeError:
            pass
    assert pushes.changes == [note_push(first), note_push(second)]


@pytest.mark.django_db(transaction=True)
def test_capture_inside_an_open_transaction_of_the_test_waits_for_its_commit() -> None:
    with transaction.atomic():
        with capture_pushes() as pushes:
            Note.objects.create(text="not yet")
        assert len(pushes) == 0


@pytest.mark.django_db(transaction=True)
def test_capture_sees_pushes_from_another_thread() -> None:
    def save() -> None:
        try:
            Task.objects.create(title="from a thread")
        finally:
            connections.close_all()

    with capture_pushes() as pushes:
        thread = threading.Thread(target=save)
        thread.start()
        [push] = pushes.wait(1)
        thread.join()
    assert push.kind == "create"
    assert push.group == f"task-{push.object['id']}"
    assert push.layer == "default"


def test_wait_fails_when_too_few_pushes_come() -> None:
    with capture_pushes() as pushes, pytest.raises(AssertionError, match="0 of 1 pushes"):
        pushes.wait(1, timeout=0.01)


@pytest.mark.django_db
def test_a_failing_robust_commit_hook_is_logged_and_the_rest_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> None:
        raise RuntimeError("hook")

    with capture_pushes(commit=True) as pushes:
        transaction.on_commit(broken, robust=True)
        note = Note.objects.create(text="after")
    assert pushes.changes == [note_push(note)]
    assert "A commit hook failed" in caplog.text


def test_the_observer_is_removed_after_the_block() -> None:
    with capture_pushes():
        assert len(changefeed.observers) == 1
    assert changefeed.observers == []


# --- the pytest plugin -------------------------------------------------------------


@pytest.mark.django_db
def test_the_pushes_fixture_shows_what_the_test_published_so_far(
    rohrpost_pushes: PushCapture,
) -> None:
    note = Note.objects.create(text="fixture")
    assert rohrpost_pushes.changes == [note_push(note)]
    with transaction.atomic():
        other = Note.objects.create(text="second")
    assert rohrpost_pushes.changes == [note_push(note), note_push(other)]
    assert len(rohrpost_pushes) == 2


@pytest.mark.django_db
def test_reading_inside_an_atomic_block_waits_for_its_end() -> None:
    with capture_pushes() as pushes:
        with transaction.atomic():
            note = Note.objects.create(text="inside")
            assert pushes.changes == []
        assert pushes.changes == [note_push(note)]


async def test_the_client_fixture_is_connected(rohrpost_client: TestClient) -> None:
    assert await rohrpost_client.call("ping") is None


async def test_the_connect_fixture_takes_the_clients_arguments(rohrpost_connect: Any) -> None:
    async with rohrpost_connect(Endpoint.as_asgi(), user="ada") as client:
        assert client.scope["user"] == "ada"
        with pytest.raises(CallError, match="forbidden"):
            await client.call("fail")


async def test_the_client_fixture_connects_to_the_projects_asgi_application(
    settings: Any, rohrpost_connect: Any
) -> None:
    settings.ASGI_APPLICATION = "tests.test_testing.APPLICATION"
    async with rohrpost_connect() as client:
        with pytest.raises(CallError, match="forbidden"):
            await client.call("fail")


APPLICATION = Endpoint.as_asgi()
