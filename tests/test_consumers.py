"""Tests for rohrpost.consumers: both consumers, driven through WebsocketCommunicator."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.serializers.json import DjangoJSONEncoder

import rohrpost.consumers
from rohrpost.consumers import AsyncRohrpostConsumer, RohrpostConsumerMixin, SyncRohrpostConsumer
from rohrpost.exceptions import RohrpostError
from rohrpost.message import (
    GROUP_EVENT_TYPE,
    asend_message,
    asend_to_group,
    send_message,
    send_to_group,
)
from rohrpost.protocol import Limits
from rohrpost.registry import HandlerRegistry
from tests.communicators import ask, connect, connection_groups

ConsumerClass = type[SyncRohrpostConsumer] | type[AsyncRohrpostConsumer]


pytestmark = pytest.mark.usefixtures("fresh_channel_layers")


@pytest.fixture(params=[SyncRohrpostConsumer, AsyncRohrpostConsumer], ids=["sync", "async"])
def consumer_class(request: pytest.FixtureRequest) -> ConsumerClass:
    return request.param  # type: ignore[no-any-return]


async def assert_answers_ping(communicator: WebsocketCommunicator) -> None:
    """The connection is open and still answers requests."""
    assert await ask(communicator, {"id": 99, "type": "ping"}) == {"id": 99, "type": "pong"}


def register(
    registry: HandlerRegistry, name: str, kind: str, body: Callable[[Any, dict[str, Any]], Any]
) -> None:
    """Register ``body`` under ``name`` as a sync, async or inline handler."""
    if kind == "async":

        async def async_handler(consumer: Any, request: dict[str, Any]) -> Any:
            return body(consumer, request)

        registry.register(name, async_handler)
    else:

        def sync_handler(consumer: Any, request: dict[str, Any]) -> Any:
            return body(consumer, request)

        registry.register(name, sync_handler, inline=kind == "inline")


@pytest.fixture
def group_tools(registry: HandlerRegistry) -> HandlerRegistry:
    """Register helper handlers: who am I, join/leave a group (sync and async)."""

    @registry.handler("test.whoami", inline=True)
    def whoami(consumer: Any, request: dict[str, Any]) -> str:
        return consumer.channel_name  # type: ignore[no-any-return]

    @registry.handler("test.join")
    def join(consumer: Any, request: dict[str, Any]) -> dict[str, str]:
        consumer.add_to_group(request["data"])
        return {"joined": request["data"]}

    @registry.handler("test.leave")
    def leave(consumer: Any, request: dict[str, Any]) -> dict[str, str]:
        consumer.remove_from_group(request["data"])
        return {"left": request["data"]}

    @registry.handler("test.ajoin")
    async def ajoin(consumer: Any, request: dict[str, Any]) -> dict[str, str]:
        await consumer.aadd_to_group(request["data"])
        return {"joined": request["data"]}

    @registry.handler("test.aleave")
    async def aleave(consumer: Any, request: dict[str, Any]) -> dict[str, str]:
        await consumer.aremove_from_group(request["data"])
        return {"left": request["data"]}

    return registry


def rohrpost_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "rohrpost"]


# --- connection and ping ---------------------------------------------------------------


async def test_connect_is_accepted(consumer_class: ConsumerClass) -> None:
    communicator = WebsocketCommunicator(consumer_class.as_asgi(), "/ws/rohrpost/")
    connected, subprotocol = await communicator.connect(timeout=1)
    assert (connected, subprotocol) == (True, None)
    assert await communicator.receive_nothing()
    await communicator.disconnect(timeout=1)


@pytest.mark.parametrize("request_id", [1, 0, "0", "", 1.5, -7, "abc"])
async def test_ping_answers_pong_with_the_same_id(
    consumer_class: ConsumerClass, request_id: Any
) -> None:
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": request_id, "type": "ping"})
        assert reply == {"id": request_id, "type": "pong"}
        assert type(reply["id"]) is type(request_id)


async def test_ping_echoes_object_data_as_is(consumer_class: ConsumerClass) -> None:
    data = {"a": [1, 2], "b": {"c": None}}
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 1, "type": "ping", "data": data})
        assert reply == {"id": 1, "type": "pong", "data": data}


@pytest.mark.parametrize("data", [[1, 2, 3, 4], "text", 42, 1.5, None, True, []])
async def test_ping_wraps_non_object_data_as_data_field(
    consumer_class: ConsumerClass, data: Any
) -> None:
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 1, "type": "ping", "data": data})
        assert reply == {"id": 1, "type": "pong", "data": {"data": data}}


async def test_ping_without_data_answers_without_data_key(consumer_class: ConsumerClass) -> None:
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data='{"id": 5, "type": "ping"}')
        raw = await communicator.receive_from(timeout=1)
        assert json.loads(raw) == {"id": 5, "type": "pong"}
        assert "data" not in json.loads(raw)


async def test_one_reply_per_frame_for_consecutive_pings(consumer_class: ConsumerClass) -> None:
    async with connect(consumer_class) as communicator:
        for request_id in range(3):
            await communicator.send_to(text_data=json.dumps({"id": request_id, "type": "ping"}))
        replies = [json.loads(await communicator.receive_from(timeout=1)) for _ in range(3)]
        assert replies == [{"id": i, "type": "pong"} for i in range(3)]
        assert await communicator.receive_nothing()


# --- errors ----------------------------------------------------------------------------


async def test_unknown_type_answers_unknown_type_error_with_id_and_type(
    consumer_class: ConsumerClass,
) -> None:
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 12, "type": "no-such-type"})
        assert reply == {
            "id": 12,
            "type": "no-such-type",
            "error": "No registered handler called 'no-such-type'.",
            "code": "unknown_type",
        }
        assert await communicator.receive_nothing()
        await assert_answers_ping(communicator)


BAD_FRAMES = [
    pytest.param(
        {"text": ""}, {"error": "Received empty message.", "code": "empty_frame"}, id="empty"
    ),
    pytest.param(
        {"text": " \n\t"}, {"error": "Received empty message.", "code": "empty_frame"}, id="blank"
    ),
    pytest.param(
        {"bytes": b'{"id": 1, "type": "ping"}'},
        {"error": "Binary frames are not supported; send text.", "code": "binary_frame"},
        id="binary",
    ),
    pytest.param({"text": "{"}, {"code": "invalid_json"}, id="invalid-json"),
    pytest.param({"text": "NaN"}, {"code": "invalid_json"}, id="nan"),
    pytest.param(
        {"text": "[1, 2]"},
        {"error": "Expected a JSON object as message.", "code": "not_an_object"},
        id="array",
    ),
    pytest.param(
        {"text": '"ping"'},
        {"error": "Expected a JSON object as message.", "code": "not_an_object"},
        id="string",
    ),
    pytest.param(
        {"text": '{"type": "ping"}'},
        {"type": "ping", "error": "Missing required field 'id'.", "code": "missing_id"},
        id="missing-id",
    ),
    pytest.param(
        {"text": '{"id": 3}'},
        {"id": 3, "error": "Missing required field 'type'.", "code": "missing_type"},
        id="missing-type",
    ),
    pytest.param(
        {"text": '{"id": [3], "type": "ping"}'},
        {
            "type": "ping",
            "error": "The `id` must be an integer, a float or a string.",
            "code": "invalid_id",
        },
        id="invalid-id",
    ),
    pytest.param(
        {"text": '{"id": 3, "type": ""}'},
        {
            "id": 3,
            "error": "The `type` must be a non-empty string of at most 100 characters.",
            "code": "invalid_type",
        },
        id="invalid-type",
    ),
]


@pytest.mark.parametrize(("frame", "expected"), BAD_FRAMES)
async def test_bad_frame_gets_one_error_reply_and_connection_stays_open(
    consumer_class: ConsumerClass, frame: dict[str, Any], expected: dict[str, Any]
) -> None:
    async with connect(consumer_class) as communicator:
        await communicator.send_input({"type": "websocket.receive", **frame})
        reply = json.loads(await communicator.receive_from(timeout=1))
        if set(expected) == {"code"}:
            assert set(reply) == {"error", "code"}
            assert reply["code"] == expected["code"]
            assert reply["error"].startswith("Could not decode JSON message. Error:")
        else:
            assert reply == expected
        assert await communicator.receive_nothing()
        await assert_answers_ping(communicator)


async def test_binary_frame_sent_with_send_to_gets_binary_frame_error(
    consumer_class: ConsumerClass,
) -> None:
    async with connect(consumer_class) as communicator:
        await communicator.send_to(bytes_data=b"\x00\x01")
        reply = json.loads(await communicator.receive_from(timeout=1))
        assert reply == {
            "error": "Binary frames are not supported; send text.",
            "code": "binary_frame",
        }
        assert await communicator.receive_nothing()
        await assert_answers_ping(communicator)


# --- handlers: return values, errors ---------------------------------------------------

HANDLER_KINDS = ["sync", "async", "inline"]


@pytest.mark.parametrize("kind", HANDLER_KINDS)
async def test_handler_return_value_is_sent_as_reply_with_request_type(
    consumer_class: ConsumerClass, registry: HandlerRegistry, kind: str
) -> None:
    register(registry, "test.echo", kind, lambda consumer, request: {"got": request["data"]})
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": "r1", "type": "test.echo", "data": [1, "x"]})
        assert reply == {"id": "r1", "type": "test.echo", "data": {"got": [1, "x"]}}
        assert await communicator.receive_nothing()


@pytest.mark.parametrize("kind", HANDLER_KINDS)
async def test_handler_returning_falsy_non_none_value_still_replies(
    consumer_class: ConsumerClass, registry: HandlerRegistry, kind: str
) -> None:
    register(registry, "test.zero", kind, lambda consumer, request: 0)
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 0, "type": "test.zero"})
        assert reply == {"id": 0, "type": "test.zero", "data": 0}


@pytest.mark.parametrize("kind", HANDLER_KINDS)
async def test_handler_returning_none_sends_nothing(
    consumer_class: ConsumerClass, registry: HandlerRegistry, kind: str
) -> None:
    calls: list[dict[str, Any]] = []
    register(registry, "test.silent", kind, lambda consumer, request: calls.append(request))
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data='{"id": 1, "type": "test.silent", "auth_jwt": "t"}')
        assert await communicator.receive_nothing(timeout=0.3)
        assert calls == [{"id": 1, "type": "test.silent", "auth_jwt": "t"}]
        await assert_answers_ping(communicator)


@pytest.mark.parametrize("kind", HANDLER_KINDS)
async def test_handler_raising_value_error_answers_handler_error_and_logs_once(
    consumer_class: ConsumerClass,
    registry: HandlerRegistry,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(consumer: Any, request: dict[str, Any]) -> None:
        raise ValueError("secret detail")

    register(registry, "test.fail", kind, fail)
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 4, "type": "test.fail"})
        assert reply == {
            "id": 4,
            "type": "test.fail",
            "error": "The handler for 'test.fail' failed.",
            "code": "handler_error",
        }
        assert await communicator.receive_nothing()
        await assert_answers_ping(communicator)
    records = rohrpost_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].getMessage() == "Handler for 'test.fail' failed on request id 4"
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)
    assert str(records[0].exc_info[1]) == "secret detail"


async def test_handler_error_text_includes_exception_when_debug_is_on(
    consumer_class: ConsumerClass, registry: HandlerRegistry, settings: Any
) -> None:
    settings.DEBUG = True

    def fail(consumer: Any, request: dict[str, Any]) -> None:
        raise ValueError("detail")

    register(registry, "test.fail", "sync", fail)
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 4, "type": "test.fail"})
        assert reply["error"] == "The handler for 'test.fail' failed. ValueError: detail"
        assert reply["code"] == "handler_error"


@pytest.mark.parametrize("kind", HANDLER_KINDS)
async def test_handler_raising_rohrpost_error_answers_its_code_without_logging(
    consumer_class: ConsumerClass,
    registry: HandlerRegistry,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(consumer: Any, request: dict[str, Any]) -> None:
        raise RohrpostError("A name is required.", code="invalid", data={"field": "name"})

    register(registry, "test.refuse", kind, refuse)
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 8, "type": "test.refuse"})
        assert reply == {
            "id": 8,
            "type": "test.refuse",
            "error": "A name is required.",
            "code": "invalid",
            "data": {"field": "name"},
        }
        assert await communicator.receive_nothing()
    assert rohrpost_records(caplog) == []


@pytest.mark.parametrize("kind", HANDLER_KINDS)
async def test_unencodable_return_value_answers_handler_error(
    consumer_class: ConsumerClass,
    registry: HandlerRegistry,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    register(registry, "test.object", kind, lambda consumer, request: object())
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 2, "type": "test.object"})
        assert reply == {
            "id": 2,
            "type": "test.object",
            "error": "The handler for 'test.object' failed.",
            "code": "handler_error",
        }
    assert len(rohrpost_records(caplog)) == 1


# --- handlers sending messages ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "inline"])
async def test_sync_handler_sends_arrive_in_order_before_its_reply(
    consumer_class: ConsumerClass, registry: HandlerRegistry, kind: str
) -> None:
    def chatty(consumer: Any, request: dict[str, Any]) -> dict[str, bool]:
        for n in range(3):
            send_message(consumer, "note", message_id=request["id"], data={"n": n})
        return {"done": True}

    register(registry, "test.chatty", kind, chatty)
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data='{"id": 6, "type": "test.chatty"}')
        frames = [json.loads(await communicator.receive_from(timeout=1)) for _ in range(4)]
        assert frames == [
            {"id": 6, "type": "note", "data": {"n": 0}},
            {"id": 6, "type": "note", "data": {"n": 1}},
            {"id": 6, "type": "note", "data": {"n": 2}},
            {"id": 6, "type": "test.chatty", "data": {"done": True}},
        ]
        assert await communicator.receive_nothing()


async def test_sync_handler_under_async_consumer_runs_in_worker_thread_and_sends(
    registry: HandlerRegistry,
) -> None:
    seen: list[bool] = []

    def threaded(consumer: Any, request: dict[str, Any]) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            seen.append(True)  # no loop here: a worker thread
        send_message(consumer, "threaded", message_id=request["id"], data={"ok": True})

    registry.register("test.threaded", threaded)
    async with connect(AsyncRohrpostConsumer) as communicator:
        reply = await ask(communicator, {"id": 3, "type": "test.threaded"})
        assert reply == {"id": 3, "type": "threaded", "data": {"ok": True}}
        assert await communicator.receive_nothing()
    assert seen == [True]


async def test_inline_handler_under_async_consumer_runs_on_the_event_loop(
    registry: HandlerRegistry,
) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    @registry.handler("test.where", inline=True)
    def where(consumer: Any, request: dict[str, Any]) -> str:
        loops.append(asyncio.get_running_loop())
        return "loop"

    async with connect(AsyncRohrpostConsumer) as communicator:
        assert await ask(communicator, {"id": 1, "type": "test.where"}) == {
            "id": 1,
            "type": "test.where",
            "data": "loop",
        }
    assert loops == [asyncio.get_running_loop()]


async def test_inline_handler_sends_are_delivered_even_when_it_then_raises(
    registry: HandlerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.handler("test.half", inline=True)
    def half(consumer: Any, request: dict[str, Any]) -> None:
        send_message(consumer, "progress", message_id=request["id"], data={"step": 1})
        raise ValueError("then failed")

    async with connect(AsyncRohrpostConsumer) as communicator:
        await communicator.send_to(text_data='{"id": 1, "type": "test.half"}')
        assert json.loads(await communicator.receive_from(timeout=1)) == {
            "id": 1,
            "type": "progress",
            "data": {"step": 1},
        }
        assert json.loads(await communicator.receive_from(timeout=1)) == {
            "id": 1,
            "type": "test.half",
            "error": "The handler for 'test.half' failed.",
            "code": "handler_error",
        }
        assert await communicator.receive_nothing()


async def test_async_handler_calling_sync_send_message_on_async_consumer_gets_handler_error(
    registry: HandlerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.handler("test.wrong")
    async def wrong(consumer: Any, request: dict[str, Any]) -> None:
        send_message(consumer, "never", message_id=request["id"])

    async with connect(AsyncRohrpostConsumer) as communicator:
        reply = await ask(communicator, {"id": 9, "type": "test.wrong"})
        assert reply == {
            "id": 9,
            "type": "test.wrong",
            "error": "The handler for 'test.wrong' failed.",
            "code": "handler_error",
        }
        assert await communicator.receive_nothing()
        await assert_answers_ping(communicator)
    records = rohrpost_records(caplog)
    assert len(records) == 1
    exc = records[0].exc_info[1] if records[0].exc_info else None
    assert isinstance(exc, RuntimeError)
    assert str(exc) == (
        "The sync send helpers cannot block the event loop: in async code, "
        "use `await asend_message(...)` (or `await consumer.send(text_data=...)`)."
    )


async def test_outbox_is_reset_after_an_inline_handler_so_async_handlers_still_get_the_error(
    registry: HandlerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    @registry.handler("test.inline-fail", inline=True)
    def inline_fail(consumer: Any, request: dict[str, Any]) -> None:
        raise ValueError("x")

    @registry.handler("test.wrong")
    async def wrong(consumer: Any, request: dict[str, Any]) -> None:
        send_message(consumer, "never", message_id=request["id"])

    async with connect(AsyncRohrpostConsumer) as communicator:
        first = await ask(communicator, {"id": 1, "type": "test.inline-fail"})
        second = await ask(communicator, {"id": 2, "type": "test.wrong"})
        assert (first["code"], second["code"]) == ("handler_error", "handler_error")
        assert await communicator.receive_nothing()
    assert [type(r.exc_info[1]) for r in rohrpost_records(caplog) if r.exc_info] == [
        ValueError,
        RuntimeError,
    ]


async def test_async_handler_using_asend_message_sends_before_its_reply(
    consumer_class: ConsumerClass, registry: HandlerRegistry
) -> None:
    @registry.handler("test.asend")
    async def asend(consumer: Any, request: dict[str, Any]) -> dict[str, int]:
        await asend_message(consumer, "first", message_id=request["id"], data={"n": 1})
        return {"n": 2}

    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data='{"id": 1, "type": "test.asend"}')
        assert json.loads(await communicator.receive_from(timeout=1)) == {
            "id": 1,
            "type": "first",
            "data": {"n": 1},
        }
        assert json.loads(await communicator.receive_from(timeout=1)) == {
            "id": 1,
            "type": "test.asend",
            "data": {"n": 2},
        }


async def test_rohrpost_deliver_from_the_loop_outside_a_handler_raises_runtime_error() -> None:
    consumer = AsyncRohrpostConsumer()
    with pytest.raises(RuntimeError, match=r"use `await asend_message\(\.\.\.\)`"):
        consumer.rohrpost_deliver('{"id": 1, "type": "x"}')


# --- per-consumer registries ------------------------------------------------------------


async def test_consumer_with_own_registry_serves_only_its_handlers(
    consumer_class: ConsumerClass,
) -> None:
    own = HandlerRegistry()

    @own.handler("only-here")
    def only_here(consumer: Any, request: dict[str, Any]) -> str:
        return "here"

    custom = type("CustomConsumer", (consumer_class,), {"rohrpost_registry": own})
    async with connect(custom) as communicator:
        assert await ask(communicator, {"id": 1, "type": "only-here"}) == {
            "id": 1,
            "type": "only-here",
            "data": "here",
        }
        ping = await ask(communicator, {"id": 2, "type": "ping"})
        assert ping["code"] == "unknown_type"
    async with connect(consumer_class) as communicator:
        other = await ask(communicator, {"id": 3, "type": "only-here"})
        assert other["code"] == "unknown_type"


async def test_consumer_subclass_limits_bound_the_frame_size(consumer_class: ConsumerClass) -> None:
    small = type("SmallFrames", (consumer_class,), {"rohrpost_limits": Limits(max_frame_bytes=30)})
    async with connect(small) as communicator:
        reply = await ask(communicator, {"id": 1, "type": "ping", "data": "x" * 30})
        assert reply == {"error": "The frame is larger than 30 bytes.", "code": "too_large"}
        await assert_answers_ping(communicator)


@pytest.mark.parametrize("call", ["close", "send"])
async def test_sync_consumer_lets_a_sync_handler_call_close_and_send_directly(
    registry: HandlerRegistry, call: str
) -> None:
    """The 4.x way: ``consumer.send(text_data=...)`` and ``consumer.close()`` from a handler."""

    @registry.handler("test.direct")
    def direct(consumer: Any, request: dict[str, Any]) -> None:
        if call == "close":
            assert consumer.close() is None
        else:
            assert consumer.send(text_data='{"id":1,"type":"direct"}') is None

    async with connect(SyncRohrpostConsumer) as communicator:
        await communicator.send_to(text_data='{"id": 1, "type": "test.direct"}')
        expected = (
            {"type": "websocket.close"}
            if call == "close"
            else {"type": "websocket.send", "text": '{"id":1,"type":"direct"}'}
        )
        assert await communicator.receive_output(timeout=1) == expected


@pytest.mark.parametrize("call", ["close", "send"])
async def test_async_consumer_lets_a_sync_handler_call_close_and_send_directly(
    registry: HandlerRegistry, call: str
) -> None:
    outcomes: list[Any] = []

    @registry.handler("test.direct")
    def direct(consumer: Any, request: dict[str, Any]) -> None:
        if call == "close":
            outcome = consumer.close()
        else:
            outcome = consumer.send(text_data='{"id":1,"type":"direct"}')
        if inspect.iscoroutine(outcome):
            outcome.close()  # keep the un-awaited coroutine from warning at GC time
        outcomes.append(outcome)

    async with connect(AsyncRohrpostConsumer) as communicator:
        await communicator.send_to(text_data='{"id": 1, "type": "test.direct"}')
        arrived = not await communicator.receive_nothing(timeout=0.5)
        assert outcomes == [None]
        assert arrived


async def test_malformed_group_message_event_does_not_end_the_connection(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as communicator:
        channel = await channel_name_of(communicator)
        await layer.send(channel, {"type": GROUP_EVENT_TYPE})
        assert await communicator.receive_nothing(timeout=0.2)
        assert not communicator.future.done()
        await assert_answers_ping(communicator)


async def test_batched_group_message_event_delivers_every_frame_in_order(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as communicator:
        channel = await channel_name_of(communicator)
        frames = ['{"id":1,"type":"a"}', '{"id":2,"type":"b"}', '{"id":3,"type":"c"}']
        await layer.send(channel, {"type": GROUP_EVENT_TYPE, "messages": frames})
        assert [await communicator.receive_from(timeout=1) for _ in frames] == frames
        assert await communicator.receive_nothing(timeout=0.1)


async def test_batched_event_with_a_non_text_frame_is_dropped_whole(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as communicator:
        channel = await channel_name_of(communicator)
        await layer.send(channel, {"type": GROUP_EVENT_TYPE, "messages": ['{"id":1}', 2]})
        assert await communicator.receive_nothing(timeout=0.2)
        await assert_answers_ping(communicator)


async def test_unencodable_group_message_event_is_logged_and_dropped(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as communicator:
        channel = await channel_name_of(communicator)
        await layer.send(channel, {"type": GROUP_EVENT_TYPE, "message": {"raw": b"bytes"}})
        assert await communicator.receive_nothing(timeout=0.2)
        await assert_answers_ping(communicator)
    assert any("JSON cannot encode" in r.getMessage() for r in rohrpost_records(caplog))


class DjangoEncoded:
    """Mixed into a consumer: group messages sent as objects use DjangoJSONEncoder (4.x)."""

    json_encoder = DjangoJSONEncoder


async def test_a_custom_json_encoder_encodes_group_messages_sent_as_objects(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    layer = get_channel_layer()
    custom = type("Custom", (DjangoEncoded, consumer_class), {})
    async with connect(custom) as communicator:
        channel = await channel_name_of(communicator)
        event = {"id": 1, "data": {"wait": datetime.timedelta(days=1, minutes=2)}}
        await layer.send(channel, {"type": GROUP_EVENT_TYPE, "message": event})
        assert json.loads(await communicator.receive_from(timeout=1)) == {
            "id": 1,
            "data": {"wait": "P1DT00H02M00S"},
        }
        # Text and batches are forwarded as they are; the encoder is for objects only.
        await layer.send(channel, {"type": GROUP_EVENT_TYPE, "message": '{"id":2}'})
        assert await communicator.receive_from(timeout=1) == '{"id":2}'
        await layer.send(channel, {"type": GROUP_EVENT_TYPE, "messages": ['{"id":3}']})
        assert await communicator.receive_from(timeout=1) == '{"id":3}'
        await layer.send(channel, {"type": GROUP_EVENT_TYPE})
        assert await communicator.receive_nothing(timeout=0.1)


async def test_a_group_message_the_custom_json_encoder_refuses_is_logged_and_dropped(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    custom = type("Custom", (DjangoEncoded, consumer_class), {})
    async with connect(custom) as communicator:
        channel = await channel_name_of(communicator)
        await layer.send(channel, {"type": GROUP_EVENT_TYPE, "message": {"x": object()}})
        assert await communicator.receive_nothing(timeout=0.2)
        await assert_answers_ping(communicator)
    assert any("json_encoder refuses" in r.getMessage() for r in rohrpost_records(caplog))


def test_both_consumers_offer_the_4x_json_encoder_attribute() -> None:
    from rohrpost.message import TolerantJSONEncoder

    assert SyncRohrpostConsumer.json_encoder is TolerantJSONEncoder
    assert AsyncRohrpostConsumer.json_encoder is TolerantJSONEncoder


async def test_async_handler_can_await_close_on_the_async_consumer(
    registry: HandlerRegistry,
) -> None:
    @registry.handler("test.aclose")
    async def aclose(consumer: Any, request: dict[str, Any]) -> None:
        await consumer.close(code=4321)

    async with connect(AsyncRohrpostConsumer) as communicator:
        await communicator.send_to(text_data='{"id": 1, "type": "test.aclose"}')
        assert await communicator.receive_output(timeout=1) == {
            "type": "websocket.close",
            "code": 4321,
        }


# --- groups ------------------------------------------------------------------------------


async def channel_name_of(communicator: WebsocketCommunicator) -> str:
    reply = await ask(communicator, {"id": "who", "type": "test.whoami"})
    return reply["data"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("join", "leave"), [("test.join", "test.leave"), ("test.ajoin", "test.aleave")]
)
async def test_group_membership_decides_who_receives_group_messages(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry, join: str, leave: str
) -> None:
    async with (
        connect(consumer_class) as alice,
        connect(consumer_class) as bob,
        connect(consumer_class) as carol,
    ):
        for member in (alice, bob):
            reply = await ask(member, {"id": 1, "type": join, "data": "room"})
            assert reply == {"id": 1, "type": join, "data": {"joined": "room"}}

        await asend_to_group("room", {"id": 10, "type": "said", "data": "hi"})
        expected = {"id": 10, "type": "said", "data": "hi"}
        assert json.loads(await alice.receive_from(timeout=1)) == expected
        assert json.loads(await bob.receive_from(timeout=1)) == expected
        assert await carol.receive_nothing()

        reply = await ask(bob, {"id": 2, "type": leave, "data": "room"})
        assert reply == {"id": 2, "type": leave, "data": {"left": "room"}}
        await asend_to_group("room", {"id": 11, "type": "said", "data": "bye"})
        assert json.loads(await alice.receive_from(timeout=1))["id"] == 11
        assert await bob.receive_nothing()
        assert await carol.receive_nothing()


async def test_sync_send_to_group_from_a_sync_handler_reaches_the_members(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    @group_tools.handler("test.shout")
    def shout(consumer: Any, request: dict[str, Any]) -> None:
        send_to_group("room", {"id": 20, "type": "shout", "data": request["data"]})

    async with connect(consumer_class) as alice, connect(consumer_class) as bob:
        await ask(alice, {"id": 1, "type": "test.join", "data": "room"})
        await bob.send_to(text_data='{"id": 2, "type": "test.shout", "data": "hey"}')
        assert json.loads(await alice.receive_from(timeout=1)) == {
            "id": 20,
            "type": "shout",
            "data": "hey",
        }
        assert await bob.receive_nothing()


async def test_leaving_a_group_never_joined_is_harmless(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    async with connect(consumer_class) as communicator:
        for leave in ("test.leave", "test.aleave"):
            reply = await ask(communicator, {"id": 1, "type": leave, "data": "nowhere"})
            assert reply == {"id": 1, "type": leave, "data": {"left": "nowhere"}}


@pytest.mark.parametrize(
    ("message", "text"),
    [
        pytest.param(
            {"id": 1, "type": "said", "data": {"é": [1, 2.5]}},
            '{"id":1,"type":"said","data":{"é":[1,2.5]}}',
            id="dict",
        ),
        pytest.param(
            '{ "id" : 1,  "type": "raw" }', '{ "id" : 1,  "type": "raw" }', id="pre-encoded"
        ),
    ],
)
async def test_group_message_arrives_as_its_encoded_text(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry, message: Any, text: str
) -> None:
    async with connect(consumer_class) as communicator:
        await ask(communicator, {"id": 1, "type": "test.join", "data": "room"})
        await asend_to_group("room", message)
        assert await communicator.receive_from(timeout=1) == text


async def test_rohrpost_message_event_carrying_a_dict_is_encoded_and_forwarded(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    """A 4.x sender puts the message object itself into the event."""
    layer = get_channel_layer()
    async with connect(consumer_class) as communicator:
        await ask(communicator, {"id": 1, "type": "test.join", "data": "room"})
        await layer.group_send(
            "room", {"type": GROUP_EVENT_TYPE, "message": {"id": 3, "type": "x"}}
        )
        assert await communicator.receive_from(timeout=1) == '{"id":3,"type":"x"}'


async def test_disconnect_discards_every_joined_group(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as stayer:
        await ask(stayer, {"id": 1, "type": "test.join", "data": "shared"})

        async with connect(consumer_class) as leaver:
            for group in ("shared", "solo-a", "solo-b"):
                await ask(leaver, {"id": 1, "type": "test.join", "data": group})
            assert set(connection_groups()) == {"shared", "solo-a", "solo-b"}
            # One membership for the process, however many of its connections joined.
            assert len(layer.groups["shared"]) == 1

        for _ in range(100):
            if set(connection_groups()) == {"shared"}:
                break
            await asyncio.sleep(0.01)
        assert set(connection_groups()) == {"shared"}
        await asend_to_group("solo-a", {"id": 1, "type": "nobody"})
        assert await stayer.receive_nothing()
        await asend_to_group("shared", {"id": 2, "type": "everybody"})
        assert json.loads(await stayer.receive_from(timeout=1))["id"] == 2


async def test_disconnect_after_leaving_and_async_joining_discards_remaining_groups(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    async with connect(consumer_class) as communicator:
        await ask(communicator, {"id": 1, "type": "test.ajoin", "data": "a"})
        await ask(communicator, {"id": 2, "type": "test.join", "data": "b"})
        await ask(communicator, {"id": 3, "type": "test.leave", "data": "a"})
        assert set(connection_groups()) == {"b"}
    assert connection_groups() == {}


async def test_consumer_works_without_a_channel_layer(
    consumer_class: ConsumerClass, settings: Any
) -> None:
    settings.CHANNEL_LAYERS = {}
    channel_layers.backends = {}
    async with connect(consumer_class) as communicator:
        await assert_answers_ping(communicator)
    # Disconnecting with no layer must not raise (wait() re-raises the consumer's errors).
    assert communicator.future.done()
    assert communicator.future.exception() is None


# --- stray channel-layer events ------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        {"type": "nope.event"},
        {"type": "_aleave_all_groups"},
        {"type": "_aleave.all.groups"},
        {"type": "channel.name"},
        {"type": "rohrpost.groups"},
        {"type": 5},
    ],
    ids=["unknown", "underscore", "underscore-dotted", "attribute", "set-attribute", "not-str"],
)
async def test_stray_channel_layer_event_is_logged_and_ignored(
    consumer_class: ConsumerClass,
    group_tools: HandlerRegistry,
    event: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as communicator:
        await ask(communicator, {"id": 1, "type": "test.join", "data": "kept"})
        channel = await channel_name_of(communicator)
        await layer.send(channel, event)
        assert await communicator.receive_nothing(timeout=0.2)
        await assert_answers_ping(communicator)
        # The private method was not run: the group membership is intact.
        assert "kept" in connection_groups()
        await asend_to_group("kept", {"id": 9, "type": "still-kept"})
        assert json.loads(await communicator.receive_from(timeout=1))["id"] == 9
    warnings = [r for r in rohrpost_records(caplog) if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"Ignoring channel-layer event of unknown type {event['type']!r}"
    ]


async def test_rohrpost_message_event_sent_to_one_channel_is_forwarded(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as communicator:
        channel = await channel_name_of(communicator)
        await layer.send(channel, {"type": GROUP_EVENT_TYPE, "message": '{"id":1,"type":"direct"}'})
        assert await communicator.receive_from(timeout=1) == '{"id":1,"type":"direct"}'


async def test_sync_consumer_runs_inline_handlers_on_the_loop_and_sync_ones_in_a_thread(
    registry: HandlerRegistry,
) -> None:
    threads: dict[str, int] = {}

    @registry.handler("test.where-inline", inline=True)
    def where_inline(consumer: Any, request: dict[str, Any]) -> str:
        threads["inline"] = threading.get_ident()
        return "inline"

    @registry.handler("test.where-sync")
    def where_sync(consumer: Any, request: dict[str, Any]) -> str:
        threads["sync"] = threading.get_ident()
        return "sync"

    async with connect(SyncRohrpostConsumer) as communicator:
        assert (await ask(communicator, {"id": 1, "type": "test.where-inline"}))["data"] == "inline"
        assert (await ask(communicator, {"id": 2, "type": "test.where-sync"}))["data"] == "sync"
    assert threads["inline"] == threading.get_ident()
    assert threads["sync"] != threading.get_ident()


async def test_sync_consumer_subclass_overriding_receive_gets_every_frame_in_a_thread() -> None:
    seen: list[tuple[str | None, int]] = []

    class Recording(SyncRohrpostConsumer):
        def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            seen.append((text_data, threading.get_ident()))
            super().receive(text_data, bytes_data)

    async with connect(Recording) as communicator:
        await assert_answers_ping(communicator)
        await communicator.send_to(text_data="nope")
        assert json.loads(await communicator.receive_from(timeout=1))["code"] == "invalid_json"
    assert [text for text, _ in seen] == ['{"id": 99, "type": "ping"}', "nope"]
    assert all(thread != threading.get_ident() for _, thread in seen)


async def test_sync_consumer_subclass_overriding_rohrpost_message_receives_group_messages(
    group_tools: HandlerRegistry,
) -> None:
    forwarded: list[str] = []

    class Decorating(SyncRohrpostConsumer):
        def rohrpost_message(self, event: dict[str, Any]) -> None:
            forwarded.append(event["message"])
            self.send(text_data='{"wrapped":' + event["message"] + "}")

    async with connect(Decorating) as communicator:
        await ask(communicator, {"id": 1, "type": "test.join", "data": "deco"})
        await asend_to_group("deco", '{"id":5,"type":"x"}')
        assert await communicator.receive_from(timeout=1) == '{"wrapped":{"id":5,"type":"x"}}'
    assert forwarded == ['{"id":5,"type":"x"}']


async def test_sync_consumer_subclass_can_extend_rohrpost_message_with_super(
    group_tools: HandlerRegistry,
) -> None:
    class Counting(SyncRohrpostConsumer):
        count = 0

        def rohrpost_message(self, event: dict[str, Any]) -> None:
            Counting.count += 1
            super().rohrpost_message(event)

    async with connect(Counting) as communicator:
        await ask(communicator, {"id": 1, "type": "test.join", "data": "counted"})
        await asend_to_group("counted", {"id": 6, "type": "y"})
        assert await communicator.receive_from(timeout=1) == '{"id":6,"type":"y"}'
        channel = await channel_name_of(communicator)
        await get_channel_layer().send(channel, {"type": GROUP_EVENT_TYPE})  # no message
        assert await communicator.receive_nothing(timeout=0.2)
        await assert_answers_ping(communicator)
    assert Counting.count == 2


def test_both_consumers_share_the_mixin() -> None:
    assert issubclass(SyncRohrpostConsumer, RohrpostConsumerMixin)
    assert issubclass(AsyncRohrpostConsumer, RohrpostConsumerMixin)
    # Group bookkeeping and event routing are written once.
    shared = (
        "aadd_to_group",
        "aremove_from_group",
        "add_to_group",
        "rohrpost_deliver",
        "_rohrpost_run_inline",
    )
    for name in shared:
        assert getattr(SyncRohrpostConsumer, name) is getattr(RohrpostConsumerMixin, name)
        assert getattr(AsyncRohrpostConsumer, name) is getattr(RohrpostConsumerMixin, name)


async def test_async_consumer_checks_db_connections_before_async_handlers_only(
    registry: HandlerRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []

    async def record_check() -> None:
        checks.append("checked")

    monkeypatch.setattr(rohrpost.consumers, "_aclose_old_connections", record_check)

    @registry.handler("test.async-db")
    async def async_db(consumer: Any, request: dict[str, Any]) -> str:
        checks.append("handler")
        return "ok"

    async with connect(AsyncRohrpostConsumer) as communicator:
        await assert_answers_ping(communicator)  # inline: no check, no thread hop
        assert checks == []
        reply = await ask(communicator, {"id": 1, "type": "test.async-db"})
        assert reply == {"id": 1, "type": "test.async-db", "data": "ok"}
        assert checks == ["checked", "handler"]


# --- channels_redis ------------------------------------------------------------------------


@pytest.fixture
def redis_layer(redis_url: str, settings: Any) -> Iterator[str]:
    """Use channels_redis as the default layer, with a prefix unique to this test."""
    prefix = f"rohrpost-test-{uuid.uuid4().hex[:12]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": prefix},
        }
    }
    channel_layers.backends = {}
    yield prefix
    channel_layers.backends = {}


async def test_group_broadcast_over_channels_redis_reaches_exactly_the_members(
    consumer_class: ConsumerClass, group_tools: HandlerRegistry, redis_layer: str
) -> None:
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    try:
        async with (
            connect(consumer_class) as alice,
            connect(consumer_class) as bob,
            connect(consumer_class) as carol,
        ):
            await ask(alice, {"id": 1, "type": "test.join", "data": "redis-room"})
            await ask(bob, {"id": 1, "type": "test.ajoin", "data": "redis-room"})

            await asend_to_group("redis-room", {"id": 5, "type": "said", "data": {"x": 1}})
            await asend_to_group("redis-room", '{"id":6,"type":"raw"}')
            for member in (alice, bob):
                assert await member.receive_from(timeout=2) == (
                    '{"id":5,"type":"said","data":{"x":1}}'
                )
                assert await member.receive_from(timeout=2) == '{"id":6,"type":"raw"}'
            assert await carol.receive_nothing(timeout=0.3)

            await ask(bob, {"id": 2, "type": "test.leave", "data": "redis-room"})
            await asend_to_group("redis-room", {"id": 7, "type": "said"})
            assert json.loads(await alice.receive_from(timeout=2)) == {"id": 7, "type": "said"}
            assert await bob.receive_nothing(timeout=0.3)

        # Everyone disconnected: the group is empty on the Redis side too.
        await asend_to_group("redis-room", {"id": 8, "type": "said"})
        connection = layer.connection(layer.consistent_hash("redis-room"))
        group_key = layer._group_key("redis-room")
        assert await connection.zcard(group_key) == 0
    finally:
        await layer.flush()
        await layer.close_pools()


# --- the async consumer's short path for frames -------------------------------------


class SendRecordingConsumer(AsyncRohrpostConsumer):
    """Overrides ``send``, as 4.x code did to see or change every frame sent."""

    sent: ClassVar[list[str]] = []

    async def send(self, text_data: Any = None, bytes_data: Any = None, close: Any = False) -> None:
        type(self).sent.append(text_data)
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)


class ReceiveRecordingConsumer(AsyncRohrpostConsumer):
    """Overrides ``receive``, as 4.x code did to see every frame."""

    received: ClassVar[list[str]] = []

    async def receive(self, text_data: Any = None, bytes_data: Any = None) -> None:
        type(self).received.append(text_data)
        await super().receive(text_data=text_data, bytes_data=bytes_data)


class WebsocketReceiveRecordingConsumer(AsyncRohrpostConsumer):
    """Overrides Channels' ``websocket_receive``, one level above ``receive``."""

    received: ClassVar[list[str]] = []

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        type(self).received.append(message["text"])
        await super().websocket_receive(message)


async def test_a_subclass_that_overrides_send_sends_every_reply_through_it() -> None:
    SendRecordingConsumer.sent = []
    async with connect(SendRecordingConsumer) as communicator:
        reply = await ask(communicator, {"id": 1, "type": "ping", "data": {"n": 1}})
        assert reply == {"id": 1, "type": "pong", "data": {"n": 1}}
        error = await ask(communicator, {"id": 2})
        assert error["code"] == "missing_type"
    assert [json.loads(text) for text in SendRecordingConsumer.sent] == [reply, error]
    assert not SendRecordingConsumer(scope={})._rohrpost_short_receive


@pytest.mark.parametrize("consumer", [ReceiveRecordingConsumer, WebsocketReceiveRecordingConsumer])
async def test_a_subclass_that_overrides_a_receive_method_gets_every_frame(
    consumer: Any,
) -> None:
    consumer.received = []
    frame = json.dumps({"id": 1, "type": "ping"})
    async with connect(consumer) as communicator:
        await communicator.send_to(text_data=frame)
        assert json.loads(await communicator.receive_from(timeout=2)) == {"id": 1, "type": "pong"}
    assert consumer.received == [frame]
    assert not consumer(scope={})._rohrpost_short_receive


def test_the_plain_async_consumer_takes_the_short_path() -> None:
    assert AsyncRohrpostConsumer(scope={})._rohrpost_short_receive
