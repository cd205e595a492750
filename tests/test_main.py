"""Tests for rohrpost.main.handle_rohrpost_message, the sync entry point for one frame."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rohrpost.exceptions import RohrpostError
from rohrpost.main import handle_rohrpost_message
from rohrpost.message import asend_message, send_message
from rohrpost.protocol import Limits
from rohrpost.registry import HandlerRegistry
from rohrpost.tests import Consumer


@pytest.fixture
def own() -> HandlerRegistry:
    """A registry of handlers for these tests, one of each kind."""
    registry = HandlerRegistry()

    @registry.handler("sync")
    def sync_handler(consumer: Any, request: dict[str, Any]) -> Any:
        return {"sync": request.get("data")}

    @registry.handler("async")
    async def async_handler(consumer: Any, request: dict[str, Any]) -> Any:
        await asend_message(consumer, "progress", message_id=request["id"])
        return {"async": request.get("data")}

    @registry.handler("inline", inline=True)
    def inline_handler(consumer: Any, request: dict[str, Any]) -> Any:
        send_message(consumer, "progress", message_id=request["id"])
        return {"inline": request.get("data")}

    @registry.handler("silent")
    def silent(consumer: Any, request: dict[str, Any]) -> None:
        return None

    @registry.handler("fail")
    def fail(consumer: Any, request: dict[str, Any]) -> None:
        raise KeyError("missing")

    @registry.handler("afail")
    async def afail(consumer: Any, request: dict[str, Any]) -> None:
        raise ValueError("async failure")

    @registry.handler("refuse")
    def refuse(consumer: Any, request: dict[str, Any]) -> None:
        raise RohrpostError("No.", code="invalid")

    return registry


def test_ping_with_the_default_registry_sends_pong_to_the_test_double() -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 1, "type": "ping", "data": [1]}')
    assert consumer.frames == ['{"id":1,"type":"pong","data":{"data":[1]}}']
    assert consumer.closed is False


def test_sync_handler_return_value_is_the_reply(own: HandlerRegistry) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 2, "type": "sync", "data": "x"}', registry=own)
    assert consumer.messages == [{"id": 2, "type": "sync", "data": {"sync": "x"}}]


def test_async_handler_runs_to_completion_and_its_sends_precede_the_reply(
    own: HandlerRegistry,
) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 3, "type": "async", "data": 1}', registry=own)
    assert consumer.messages == [
        {"id": 3, "type": "progress"},
        {"id": 3, "type": "async", "data": {"async": 1}},
    ]


def test_inline_handler_is_called_directly_and_its_sends_precede_the_reply(
    own: HandlerRegistry,
) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 4, "type": "inline"}', registry=own)
    assert consumer.messages == [
        {"id": 4, "type": "progress"},
        {"id": 4, "type": "inline", "data": {"inline": None}},
    ]


def test_handler_returning_none_sends_nothing(own: HandlerRegistry) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 5, "type": "silent"}', registry=own)
    assert consumer.data == []


@pytest.mark.parametrize(("handler", "exc_type"), [("fail", KeyError), ("afail", ValueError)])
def test_failing_handler_sends_handler_error_and_logs_it(
    own: HandlerRegistry, caplog: pytest.LogCaptureFixture, handler: str, exc_type: type
) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, f'{{"id": 6, "type": "{handler}"}}', registry=own)
    assert consumer.messages == [
        {
            "id": 6,
            "type": handler,
            "error": f"The handler for '{handler}' failed.",
            "code": "handler_error",
        }
    ]
    records = [r for r in caplog.records if r.name == "rohrpost"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None
    assert type(records[0].exc_info[1]) is exc_type


def test_rohrpost_error_sends_its_code(own: HandlerRegistry) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 7, "type": "refuse"}', registry=own)
    assert consumer.messages == [{"id": 7, "type": "refuse", "error": "No.", "code": "invalid"}]


def test_unknown_type_sends_unknown_type_error(own: HandlerRegistry) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 8, "type": "ping"}', registry=own)
    assert consumer.messages == [
        {
            "id": 8,
            "type": "ping",
            "error": "No registered handler called 'ping'.",
            "code": "unknown_type",
        }
    ]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (None, "empty_frame"),
        ("", "empty_frame"),
        ("{", "invalid_json"),
        ("[]", "not_an_object"),
        ('{"type": "ping"}', "missing_id"),
        ('{"id": 1}', "missing_type"),
    ],
)
def test_bad_frame_sends_exactly_one_error(text: str | None, code: str) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, text)
    assert len(consumer.messages) == 1
    assert consumer.messages[0]["code"] == code
    assert "error" in consumer.messages[0]
    assert consumer.closed is False


def test_binary_frame_sends_binary_frame_error() -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, None, b"\x00")
    assert consumer.messages == [
        {"error": "Binary frames are not supported; send text.", "code": "binary_frame"}
    ]


def test_limits_argument_bounds_the_frame_size() -> None:
    consumer = Consumer()
    handle_rohrpost_message(
        consumer, '{"id": 1, "type": "ping"}', limits=Limits(max_frame_bytes=10)
    )
    assert consumer.messages == [
        {"error": "The frame is larger than 10 bytes.", "code": "too_large"}
    ]


def test_works_with_a_plain_custom_sync_consumer() -> None:
    class MyConsumer:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def send(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            assert text_data is not None
            self.sent.append(text_data)

    consumer = MyConsumer()
    handle_rohrpost_message(consumer, '{"id": "a", "type": "ping", "data": {"k": 1}}')
    assert consumer.sent == ['{"id":"a","type":"pong","data":{"k":1}}']


@pytest.mark.parametrize(
    "frame",
    [
        b'{"id": 1, "type": "ping", "data": "\xc3\xa9"}',
        bytearray(b'{"id": 1, "type": "ping", "data": "\xc3\xa9"}'),
    ],
)
def test_bytes_as_text_data_are_decoded_as_utf8_as_4x_did(frame: bytes) -> None:
    """A custom consumer's receive may pass its frame on as bytes."""
    consumer = Consumer()
    handle_rohrpost_message(consumer, frame)
    assert consumer.messages == [{"id": 1, "type": "pong", "data": {"data": "é"}}]


def test_bytes_that_are_not_utf8_are_answered_with_invalid_json() -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer, b'{"id": 1, "type": "ping", "data": "\xff"}')
    [reply] = consumer.messages
    assert reply["code"] == "invalid_json"
    assert reply["error"].startswith("Could not decode JSON message. Error: ")
    assert "id" not in reply
