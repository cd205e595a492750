"""Tests for rohrpost.message: building messages and sending them to a connection or a group."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers, get_channel_layer

from rohrpost import message, protocol
from rohrpost.message import (
    GROUP_EVENT_TYPE,
    asend_error,
    asend_message,
    asend_success,
    asend_to_group,
    build_message,
    deliver,
    group_event,
    send_error,
    send_message,
    send_success,
    send_to_group,
)
from rohrpost.tests import Consumer
from tests.communicators import connection_groups


@pytest.fixture(autouse=True)
def fresh_channel_layers() -> Iterator[None]:
    """Each test gets new channel-layer instances (they hold per-loop state)."""
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture
def no_channel_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {}
    channel_layers.backends = {}


class PlainSyncConsumer:
    """A 4.x-style custom consumer: a sync ``send`` and nothing rohrpost-specific."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        assert text_data is not None
        self.frames.append(text_data)


class AsyncSendConsumer:
    """A consumer whose ``send`` is a coroutine function (like AsyncWebsocketConsumer's)."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.threads: list[int] = []

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        assert text_data is not None
        self.threads.append(threading.get_ident())
        self.frames.append(text_data)


# --- build_message -------------------------------------------------------------------------


def test_build_message_with_generate_id_uses_a_generated_integer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol, "generate_id", lambda: 4242)
    assert build_message("note", generate_id=True) == {"id": 4242, "type": "note"}


def test_build_message_generated_id_is_a_positive_javascript_safe_integer() -> None:
    ids = {build_message("note", generate_id=True)["id"] for _ in range(50)}
    assert all(type(i) is int and 1 <= i < 2**53 for i in ids)
    assert len(ids) > 1


@pytest.mark.parametrize("message_id", [0, "0", "", 0.0, 7, "abc"])
def test_build_message_keeps_any_given_id_even_falsy(message_id: Any) -> None:
    built = build_message("note", message_id)
    assert built == {"id": message_id, "type": "note"}
    assert type(built["id"]) is type(message_id)


def test_build_message_with_error_and_code_includes_both() -> None:
    assert build_message("x", 1, "It broke.", code="broken") == {
        "id": 1,
        "type": "x",
        "error": "It broke.",
        "code": "broken",
    }


def test_build_message_with_error_and_no_code_has_no_code_key() -> None:
    assert build_message("x", 1, error={"detail": "object errors allowed"}) == {
        "id": 1,
        "type": "x",
        "error": {"detail": "object errors allowed"},
    }


def test_build_message_ignores_code_without_error() -> None:
    assert build_message("x", 1, code="unused") == {"id": 1, "type": "x"}


def test_build_message_leaves_out_data_only_when_none() -> None:
    assert "data" not in build_message("x", 1, data=None)


@pytest.mark.parametrize("data", [[], {}, 0, False, "", [1, 2], {"a": 1}])
def test_build_message_includes_falsy_and_non_object_data(data: Any) -> None:
    assert build_message("x", 1, data=data) == {"id": 1, "type": "x", "data": data}


def test_build_message_orders_keys_id_type_error_code_data() -> None:
    built = build_message("x", 1, "e", {"d": 1}, code="c")
    assert list(built) == ["id", "type", "error", "code", "data"]


# --- send_* with the test double and with custom consumers ----------------------------------


def test_send_message_sends_compact_json_text_to_the_test_double() -> None:
    consumer = Consumer()
    send_message(consumer, "pong", message_id=1, data={"a": [1, 2], "é": "ü"})
    assert consumer.frames == ['{"id":1,"type":"pong","data":{"a":[1,2],"é":"ü"}}']


def test_send_message_accepts_the_4x_keyword_call() -> None:
    consumer = Consumer()
    send_message(consumer=consumer, handler="pong", message_id=3, error="bad", data={"x": 1})
    assert consumer.messages == [{"id": 3, "type": "pong", "error": "bad", "data": {"x": 1}}]


def test_send_message_with_code_sends_error_and_code() -> None:
    consumer = Consumer()
    send_message(consumer, "x", 1, "nope", code="forbidden")
    assert consumer.messages == [{"id": 1, "type": "x", "error": "nope", "code": "forbidden"}]


def test_send_error_defaults_its_code_to_error() -> None:
    consumer = Consumer()
    send_error(consumer, "save", 5, "Could not save.")
    assert consumer.messages == [
        {"id": 5, "type": "save", "error": "Could not save.", "code": "error"}
    ]


def test_send_error_carries_custom_code_and_data() -> None:
    consumer = Consumer()
    send_error(
        consumer=consumer,
        handler="save",
        message_id=5,
        error="Invalid.",
        data={"field": "name"},
        code="invalid",
    )
    assert consumer.messages == [
        {"id": 5, "type": "save", "error": "Invalid.", "code": "invalid", "data": {"field": "name"}}
    ]


def test_send_success_sends_data_without_error() -> None:
    consumer = Consumer()
    send_success(consumer=consumer, handler="save", message_id=5, data={"ok": True})
    assert consumer.messages == [{"id": 5, "type": "save", "data": {"ok": True}}]


def test_send_success_without_id_generates_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "generate_id", lambda: 77)
    consumer = Consumer()
    send_success(consumer, "save")
    assert consumer.messages == [{"id": 77, "type": "save"}]


def test_send_helpers_work_with_a_plain_sync_custom_consumer() -> None:
    consumer = PlainSyncConsumer()
    send_message(consumer, "a", 1)
    send_error(consumer, "b", 2, "err")
    send_success(consumer, "c", 3, {"x": 1})
    assert [json.loads(frame) for frame in consumer.frames] == [
        {"id": 1, "type": "a"},
        {"id": 2, "type": "b", "error": "err", "code": "error"},
        {"id": 3, "type": "c", "data": {"x": 1}},
    ]


def test_send_message_to_an_async_send_from_plain_sync_code() -> None:
    consumer = AsyncSendConsumer()
    send_message(consumer, "a", 1, data={"x": 1})
    assert consumer.frames == ['{"id":1,"type":"a","data":{"x":1}}']


async def test_send_message_to_an_async_send_from_a_worker_thread_runs_it_on_the_loop() -> None:
    consumer = AsyncSendConsumer()
    loop_thread = threading.get_ident()
    await sync_to_async(send_message)(consumer, "a", 1)
    await sync_to_async(send_error)(consumer, "b", 2, "err", code="c")
    await sync_to_async(send_success)(consumer, "c", 3, [1])
    assert [json.loads(frame) for frame in consumer.frames] == [
        {"id": 1, "type": "a"},
        {"id": 2, "type": "b", "error": "err", "code": "c"},
        {"id": 3, "type": "c", "data": [1]},
    ]
    assert consumer.threads == [loop_thread] * 3


def test_deliver_prefers_the_consumers_rohrpost_deliver() -> None:
    class WithDeliver(PlainSyncConsumer):
        def __init__(self) -> None:
            super().__init__()
            self.delivered: list[str] = []

        def rohrpost_deliver(self, text: str) -> None:
            self.delivered.append(text)

    consumer = WithDeliver()
    deliver(consumer, '{"id":1,"type":"x"}')
    send_message(consumer, "y", 2)
    assert consumer.delivered == ['{"id":1,"type":"x"}', '{"id":2,"type":"y"}']
    assert consumer.frames == []


# --- asend_* --------------------------------------------------------------------------------


async def test_asend_message_awaits_an_async_send_on_the_loop_thread() -> None:
    consumer = AsyncSendConsumer()
    await asend_message(consumer, "a", 1, data={"x": 1})
    assert consumer.frames == ['{"id":1,"type":"a","data":{"x":1}}']
    assert consumer.threads == [threading.get_ident()]


async def test_asend_message_runs_a_sync_send_in_a_worker_thread() -> None:
    threads: list[int] = []

    class ThreadRecordingConsumer(Consumer):
        def send(self, text_data: str | None = None, **kwargs: Any) -> None:
            threads.append(threading.get_ident())
            super().send(text_data=text_data, **kwargs)

    consumer = ThreadRecordingConsumer()
    await asend_message(consumer, "a", "id-1", "oops", code="bad")
    assert consumer.messages == [{"id": "id-1", "type": "a", "error": "oops", "code": "bad"}]
    assert threads != [threading.get_ident()]
    assert len(threads) == 1


async def test_asend_error_and_asend_success_mirror_their_sync_twins() -> None:
    consumer = Consumer()
    await asend_error(consumer, "save", 5, "Could not save.")
    await asend_error(consumer, "save", 6, "Invalid.", {"f": 1}, code="invalid")
    await asend_success(consumer, "save", 7, {"ok": True})
    await asend_success(consumer, "save", 8)
    assert consumer.messages == [
        {"id": 5, "type": "save", "error": "Could not save.", "code": "error"},
        {"id": 6, "type": "save", "error": "Invalid.", "code": "invalid", "data": {"f": 1}},
        {"id": 7, "type": "save", "data": {"ok": True}},
        {"id": 8, "type": "save"},
    ]


async def test_asend_helpers_with_an_async_send_consumer() -> None:
    consumer = AsyncSendConsumer()
    await asend_error(consumer, "e", 1, "x")
    await asend_success(consumer, "s", 2, 0)
    assert [json.loads(frame) for frame in consumer.frames] == [
        {"id": 1, "type": "e", "error": "x", "code": "error"},
        {"id": 2, "type": "s", "data": 0},
    ]


# --- groups ---------------------------------------------------------------------------------


def test_group_event_encodes_an_object_once_and_takes_text_as_is() -> None:
    assert GROUP_EVENT_TYPE == "rohrpost.message"
    assert group_event({"id": 1, "type": "x"}) == {
        "type": "rohrpost.message",
        "message": '{"id":1,"type":"x"}',
    }
    assert group_event('{ "raw" : true }') == {
        "type": "rohrpost.message",
        "message": '{ "raw" : true }',
    }


async def _member_of(group: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    return channel  # type: ignore[no-any-return]


async def _receive(channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(get_channel_layer().receive(channel), timeout=1)  # type: ignore[no-any-return]


def test_send_to_group_from_plain_sync_code_without_a_loop() -> None:
    channel = async_to_sync(_member_of)("g")
    send_to_group("g", {"id": 1, "type": "said", "data": "hi"})
    assert async_to_sync(_receive)(channel) == {
        "type": "rohrpost.message",
        "message": '{"id":1,"type":"said","data":"hi"}',
        "group": "g",
    }


async def test_asend_to_group_reaches_every_member_with_the_same_text() -> None:
    first, second = await _member_of("g"), await _member_of("g")
    outsider = await get_channel_layer().new_channel()
    await asend_to_group("g", {"id": 1, "type": "said"})
    expected = {"type": "rohrpost.message", "message": '{"id":1,"type":"said"}', "group": "g"}
    assert await _receive(first) == expected
    assert await _receive(second) == expected
    assert outsider not in get_channel_layer().channels


async def test_send_to_group_from_a_worker_thread_while_a_loop_runs() -> None:
    """No "You cannot use AsyncToSync in the same thread as an async event loop" error."""
    channel = await _member_of("g")
    await sync_to_async(send_to_group)("g", '{"id":2,"type":"said"}')
    assert await _receive(channel) == {
        "type": "rohrpost.message",
        "message": '{"id":2,"type":"said"}',
        "group": "g",
    }


async def test_send_to_group_on_the_event_loop_thread_schedules_the_send() -> None:
    channel = await _member_of("g")
    before = set(message._background_sends)
    send_to_group("g", {"id": 3, "type": "said"})
    scheduled = message._background_sends - before
    assert len(scheduled) == 1
    assert await _receive(channel) == {
        "type": "rohrpost.message",
        "message": '{"id":3,"type":"said"}',
        "group": "g",
    }
    await asyncio.wait(scheduled, timeout=1)
    await asyncio.sleep(0)
    assert not (message._background_sends & scheduled)


async def test_send_to_group_uses_the_named_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        "other": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    }
    channel_layers.backends = {}
    other = get_channel_layer("other")
    channel = await other.new_channel()
    await other.group_add("g", channel)
    await asend_to_group("g", {"id": 1, "type": "x"}, layer="other")
    await sync_to_async(send_to_group)("g", {"id": 2, "type": "x"}, layer="other")
    received = [
        await asyncio.wait_for(other.receive(channel), timeout=1),
        await asyncio.wait_for(other.receive(channel), timeout=1),
    ]
    assert [event["message"] for event in received] == [
        '{"id":1,"type":"x"}',
        '{"id":2,"type":"x"}',
    ]
    assert connection_groups() == {}


def test_send_to_group_without_a_channel_layer_raises_runtime_error(
    no_channel_layer: None,
) -> None:
    with pytest.raises(
        RuntimeError, match=r"^No channel layer 'default' is configured: set CHANNEL_LAYERS\.$"
    ):
        send_to_group("g", {"id": 1, "type": "x"})


async def test_asend_to_group_without_a_channel_layer_raises_runtime_error(
    no_channel_layer: None,
) -> None:
    with pytest.raises(RuntimeError, match=r"^No channel layer 'missing' is configured"):
        await asend_to_group("g", {"id": 1, "type": "x"}, layer="missing")


async def test_scheduled_group_send_failure_is_logged_on_the_rohrpost_logger(
    no_channel_layer: None, caplog: pytest.LogCaptureFixture
) -> None:
    before = set(message._background_sends)
    send_to_group("g", {"id": 1, "type": "x"})
    scheduled = message._background_sends - before
    await asyncio.wait(scheduled, timeout=1)
    await asyncio.sleep(0)
    records = [r for r in caplog.records if r.name == "rohrpost"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.ERROR, "Sending to a group failed")
    ]
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)
    assert not (message._background_sends & scheduled)


async def test_cancelled_scheduled_group_send_is_forgotten_without_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = await _member_of("g")
    before = set(message._background_sends)
    send_to_group("g", {"id": 1, "type": "x"})
    (task,) = message._background_sends - before
    task.cancel()
    await asyncio.wait([task], timeout=1)
    await asyncio.sleep(0)
    assert task.cancelled()
    assert task not in message._background_sends
    assert [r for r in caplog.records if r.name == "rohrpost"] == []
    assert channel not in get_channel_layer().channels


def test_build_message_takes_4x_keywords_generate_id_handler_and_data() -> None:
    """4.x's mixins called build_message(generate_id=True, handler=..., data=...)."""
    built = build_message(generate_id=True, handler="subscription-update", data={"a": 1})
    assert set(built) == {"id", "type", "data"}
    assert type(built["id"]) is int
    assert built["type"] == "subscription-update"
    assert built["data"] == {"a": 1}


def test_build_message_without_id_leaves_the_id_out_unless_asked_as_in_4x() -> None:
    assert build_message(handler="note") == {"type": "note"}
    assert build_message(handler="note", generate_id=False) == {"type": "note"}
    assert build_message(handler="note", message_id=0, generate_id=False) == {
        "id": 0,
        "type": "note",
    }


def test_a_message_without_handler_leaves_type_out() -> None:
    """4.x: handler=None gives a frame without "type" (never "type": null)."""
    assert build_message(handler=None, message_id=1, error="bad") == {"id": 1, "error": "bad"}
    consumer = Consumer()
    send_message(consumer=consumer, handler=None, message_id=None, data={"x": 1})
    send_error(consumer=consumer, handler=None, message_id=2, error="oops")
    [first, second] = consumer.data
    assert set(first) == {"id", "data"}
    assert second == {"id": 2, "error": "oops", "code": "error"}
    assert all('"type"' not in frame for frame in consumer.frames)


def test_message_id_is_the_request_id_type_under_its_4x_name() -> None:
    assert message.MessageID == protocol.RequestId


def test_tolerant_json_encoder_is_importable_from_rohrpost_message() -> None:
    encoded = json.dumps({"price": Decimal("9.99")}, cls=message.TolerantJSONEncoder)
    assert json.loads(encoded) == {"price": 9.99}


def test_group_event_passes_an_object_the_codec_cannot_encode_on_as_4x_did() -> None:
    """The receiving consumer encodes it with its json_encoder (see test_consumers)."""
    message = {"id": 1, "data": {"wait": datetime.timedelta(seconds=5)}}
    assert group_event(message) == {"type": "rohrpost.message", "message": message}
