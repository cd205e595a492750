"""Tests for rohrpost.tests.Consumer, the test double that records what handlers send."""

from __future__ import annotations

import json
from typing import Any

from rohrpost.handlers import handle_ping
from rohrpost.main import handle_rohrpost_message
from rohrpost.message import asend_error, asend_message, send_error, send_message, send_success
from rohrpost.tests import Consumer


def test_new_double_has_recorded_nothing_and_is_open() -> None:
    consumer = Consumer()
    assert consumer.data == []
    assert consumer.frames == []
    assert consumer.messages == []
    assert consumer.closed is False
    assert consumer.close_code is None
    assert consumer.groups == set()


def test_module_docstring_example_holds() -> None:
    consumer = Consumer()
    handle_ping(consumer=consumer, request={"id": 1, "type": "ping"})
    assert consumer.messages == [{"id": 1, "type": "pong"}]


def test_send_records_decoded_messages_in_data_and_wire_text_in_frames() -> None:
    consumer = Consumer()
    consumer.send(text_data='{"id":1}')
    consumer.send('{"id":2}')
    assert consumer.data == [{"id": 1}, {"id": 2}]
    assert consumer.frames == ['{"id":1}', '{"id":2}']
    assert consumer.messages == [{"id": 1}, {"id": 2}]
    assert consumer.closed is False


def test_send_ignores_binary_frames() -> None:
    consumer = Consumer()
    consumer.send(bytes_data=b"\x00")
    assert consumer.data == []


def test_send_with_close_records_the_frame_then_closes() -> None:
    consumer = Consumer()
    consumer.send(text_data='{"id":1}', close=True)
    assert consumer.frames == ['{"id":1}']
    assert consumer.closed is True
    assert consumer.close_code is None


def test_send_with_close_and_no_frame_only_closes() -> None:
    consumer = Consumer()
    consumer.send(close=True)
    assert consumer.data == []
    assert consumer.closed is True


def test_close_records_the_code() -> None:
    consumer = Consumer()
    consumer.close(4001)
    assert (consumer.closed, consumer.close_code) == (True, 4001)
    consumer.close()
    assert (consumer.closed, consumer.close_code) == (True, None)


def test_groups_are_recorded_and_leaving_an_unknown_group_is_harmless() -> None:
    consumer = Consumer()
    consumer.add_to_group("a")
    consumer.add_to_group("b")
    consumer.add_to_group("a")
    consumer.remove_from_group("b")
    consumer.remove_from_group("never-joined")
    assert consumer.groups == {"a"}


def test_messages_decodes_what_the_send_helpers_recorded() -> None:
    consumer = Consumer()
    send_message(consumer, "note", message_id="n1", data={"text": "é"})
    assert consumer.frames == ['{"id":"n1","type":"note","data":{"text":"é"}}']
    assert consumer.messages == [{"id": "n1", "type": "note", "data": {"text": "é"}}]


def test_data_holds_decoded_messages_as_4x_tests_read_them() -> None:
    consumer = Consumer()
    handle_ping(consumer=consumer, request={"id": 7, "type": "ping", "data": {"a": 1}})
    assert consumer.data[-1]["type"] == "pong"
    assert consumer.data[-1]["data"] == {"a": 1}


def test_nothing_is_recorded_after_close() -> None:
    consumer = Consumer()
    send_message(consumer, "before", message_id=1)
    consumer.close()
    send_message(consumer, "after", message_id=2)
    consumer.send(text_data='{"id":3}')
    assert consumer.data == [{"id": 1, "type": "before"}]
    assert consumer.frames == ['{"id":1,"type":"before"}']


class HandWritten4xConsumer:
    """A double as 4.x applications wrote them: ``send(self, message)``, positional text."""

    def __init__(self) -> None:
        self.data: list[Any] = []
        self.closed = False

    def send(self, message: str) -> None:
        if not self.closed:
            self.data.append(json.loads(message))

    def close(self) -> None:
        self.closed = True


def test_a_hand_written_4x_double_works_with_the_sync_helpers() -> None:
    consumer = HandWritten4xConsumer()
    handle_ping(consumer=consumer, request={"id": 1, "type": "ping"})
    send_message(consumer=consumer, handler="note", message_id=2, data={"x": 1})
    send_error(consumer=consumer, handler="note", message_id=3, error="bad")
    send_success(consumer=consumer, handler="note", message_id=4)
    handle_rohrpost_message(consumer, '{"id": 5, "type": "ping"}')
    handle_rohrpost_message(consumer, "[]")
    assert consumer.data == [
        {"id": 1, "type": "pong"},
        {"id": 2, "type": "note", "data": {"x": 1}},
        {"id": 3, "type": "note", "error": "bad", "code": "error"},
        {"id": 4, "type": "note"},
        {"id": 5, "type": "pong"},
        {"error": "Expected a JSON object as message.", "code": "not_an_object"},
    ]


async def test_a_hand_written_4x_double_works_with_the_async_helpers() -> None:
    consumer = HandWritten4xConsumer()
    await asend_message(consumer, "note", message_id=1)
    await asend_error(consumer, "note", message_id=2, error="bad", code="invalid")
    assert consumer.data == [
        {"id": 1, "type": "note"},
        {"id": 2, "type": "note", "error": "bad", "code": "invalid"},
    ]


async def test_async_handlers_join_and_leave_groups_through_the_double() -> None:
    consumer = Consumer()
    await consumer.aadd_to_group("lobby")
    assert consumer.groups == {"lobby"}
    assert consumer.rohrpost_groups is consumer.groups
    await consumer.aremove_from_group("lobby")
    assert consumer.groups == set()


def test_the_double_carries_the_scope_a_handler_reads() -> None:
    assert Consumer().scope == {}
    user = object()
    assert Consumer(scope={"user": user}).scope["user"] is user


async def test_a_subscription_handler_runs_against_the_double() -> None:
    """Subscriptions read ``scope`` and ``rohrpost_groups`` and call ``aadd_to_group``."""
    from rohrpost.subscriptions import Subscriptions

    subscriptions = Subscriptions()

    @subscriptions.declare("room", group=lambda data: f"room-{int(data['id'])}")
    async def only_alice(user: str, scope: object, data: object) -> bool:
        return user == "alice"

    consumer = Consumer(scope={"user": "alice"})
    request = {"id": 1, "type": "subscribe", "data": {"type": "room", "id": 3}}
    assert await subscriptions.subscribe(consumer, request) == {"group": "room-3"}
    assert consumer.groups == {"room-3"}
