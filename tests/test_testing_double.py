"""Tests for rohrpost.tests.Consumer, the test double that records what handlers send."""

from __future__ import annotations

from rohrpost.handlers import handle_ping
from rohrpost.message import send_message
from rohrpost.tests import Consumer


def test_new_double_has_recorded_nothing_and_is_open() -> None:
    consumer = Consumer()
    assert consumer.data == []
    assert consumer.messages == []
    assert consumer.closed is False
    assert consumer.close_code is None
    assert consumer.groups == set()


def test_module_docstring_example_holds() -> None:
    consumer = Consumer()
    handle_ping(consumer=consumer, request={"id": 1, "type": "ping"})
    assert consumer.messages == [{"id": 1, "type": "pong"}]


def test_send_records_text_frames_in_order_as_wire_text() -> None:
    consumer = Consumer()
    consumer.send(text_data='{"id":1}')
    consumer.send('{"id":2}')
    assert consumer.data == ['{"id":1}', '{"id":2}']
    assert consumer.messages == [{"id": 1}, {"id": 2}]
    assert consumer.closed is False


def test_send_ignores_binary_frames() -> None:
    consumer = Consumer()
    consumer.send(bytes_data=b"\x00")
    assert consumer.data == []


def test_send_with_close_records_the_frame_then_closes() -> None:
    consumer = Consumer()
    consumer.send(text_data='{"id":1}', close=True)
    assert consumer.data == ['{"id":1}']
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
    assert consumer.data == ['{"id":"n1","type":"note","data":{"text":"é"}}']
    assert consumer.messages == [{"id": "n1", "type": "note", "data": {"text": "é"}}]
