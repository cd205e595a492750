"""Tests for rohrpost.handlers: the built-in ``ping`` handler."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rohrpost.handlers import handle_ping
from rohrpost.registry import HANDLERS, handler_mode
from rohrpost.tests import Consumer


def test_handle_ping_is_registered_as_ping_in_the_default_registry() -> None:
    assert HANDLERS["ping"] is handle_ping


def test_handle_ping_is_an_inline_handler() -> None:
    assert handler_mode(handle_ping) == "inline"


@pytest.mark.parametrize("request_id", [1, 0, "0", "abc", 2.5])
def test_handle_ping_answers_pong_with_the_request_id_and_no_data(request_id: Any) -> None:
    consumer = Consumer()
    result = handle_ping(consumer=consumer, request={"id": request_id, "type": "ping"})
    assert result is None
    assert consumer.frames == [f'{{"id":{json.dumps(request_id)},"type":"pong"}}']


def test_handle_ping_echoes_object_data_unchanged() -> None:
    consumer = Consumer()
    data = {"some": "data", "nested": {"list": [1, 2]}}
    handle_ping(consumer=consumer, request={"id": 1, "type": "ping", "data": data})
    assert consumer.messages == [{"id": 1, "type": "pong", "data": data}]


def test_handle_ping_echoes_an_empty_object_unchanged() -> None:
    consumer = Consumer()
    handle_ping(consumer=consumer, request={"id": 1, "type": "ping", "data": {}})
    assert consumer.messages == [{"id": 1, "type": "pong", "data": {}}]


@pytest.mark.parametrize("data", [[1, 2, 3, 4], "text", 0, 3.5, True, False, None, []])
def test_handle_ping_wraps_non_object_data(data: Any) -> None:
    consumer = Consumer()
    handle_ping(consumer=consumer, request={"id": 1, "type": "ping", "data": data})
    assert consumer.messages == [{"id": 1, "type": "pong", "data": {"data": data}}]


def test_handle_ping_ignores_other_request_fields() -> None:
    consumer = Consumer()
    handle_ping(consumer=consumer, request={"id": 1, "type": "ping", "auth_jwt": "token"})
    assert consumer.messages == [{"id": 1, "type": "pong"}]
