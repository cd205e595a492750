"""Tests for rohrpost.dispatch: from a frame to a handler call and from its outcome to a reply."""

from __future__ import annotations

import json
import logging
from typing import Any

import django.conf
import pytest
from django.conf import LazySettings

from rohrpost import dispatch, encoding, protocol
from rohrpost.dispatch import Call, prepare_call
from rohrpost.exceptions import Forbidden, RohrpostError
from rohrpost.registry import HandlerRegistry


def echo(consumer: Any, request: dict[str, Any]) -> Any:
    return request.get("data")


async def async_echo(consumer: Any, request: dict[str, Any]) -> Any:
    return request.get("data")


def make_call(request_id: Any = 1, request_type: str = "echo", **extra: Any) -> Call:
    return Call(echo, "sync", {"id": request_id, "type": request_type, **extra})


def rohrpost_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "rohrpost"]


@pytest.fixture
def handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("echo", echo)
    registry.register("aecho", async_echo)
    return registry


def test_module_exports_call_and_prepare_call() -> None:
    assert sorted(dispatch.__all__) == ["Call", "prepare_call"]


def test_prepare_call_returns_a_call_with_handler_mode_and_request(
    handlers: HandlerRegistry,
) -> None:
    call = prepare_call(handlers, '{"id": 7, "type": "echo", "data": [1], "auth_jwt": "t"}')

    assert call == Call(echo, "sync", {"id": 7, "type": "echo", "data": [1], "auth_jwt": "t"})


def test_prepare_call_reports_async_mode_for_an_async_handler(handlers: HandlerRegistry) -> None:
    call = prepare_call(handlers, '{"id": 1, "type": "aecho"}')

    assert isinstance(call, Call)
    assert call.handler is async_echo
    assert call.mode == "async"


def test_prepare_call_answers_an_unknown_type_with_unknown_type_error(
    handlers: HandlerRegistry,
) -> None:
    reply = prepare_call(handlers, '{"id": 3, "type": "x"}')

    assert isinstance(reply, str)
    assert json.loads(reply) == {
        "id": 3,
        "type": "x",
        "error": "No registered handler called 'x'.",
        "code": "unknown_type",
    }


@pytest.mark.parametrize("request_id", [0, "0", 1.5, ""])
def test_prepare_call_unknown_type_echoes_the_id_exactly(
    handlers: HandlerRegistry, request_id: Any
) -> None:
    reply = prepare_call(handlers, json.dumps({"id": request_id, "type": "nope"}))

    assert reply == (
        f'{{"id":{json.dumps(request_id)},"type":"nope",'
        '"error":"No registered handler called \'nope\'.","code":"unknown_type"}'
    )


@pytest.mark.parametrize("request_id", [0, "0", 1.5, ""])
def test_handler_error_reply_echoes_the_id_exactly(request_id: Any) -> None:
    reply = json.loads(make_call(request_id=request_id).reply_for_error(RuntimeError()))

    assert reply["code"] == "handler_error"
    assert reply["id"] == request_id
    assert type(reply["id"]) is type(request_id)


def test_prepare_call_returns_the_encoded_frame_error_for_an_invalid_frame(
    handlers: HandlerRegistry,
) -> None:
    reply = prepare_call(handlers, '{"id": 5}')

    assert reply == '{"id":5,"error":"Missing required field \'type\'.","code":"missing_type"}'


def test_prepare_call_refuses_a_binary_frame(handlers: HandlerRegistry) -> None:
    reply = prepare_call(handlers, None, b'{"id": 1, "type": "echo"}')

    assert isinstance(reply, str)
    assert json.loads(reply)["code"] == "binary_frame"


def test_prepare_call_applies_the_given_limits(handlers: HandlerRegistry) -> None:
    frame = '{"id": 1, "type": "echo", "data": "' + "a" * 100 + '"}'

    assert isinstance(prepare_call(handlers, frame), Call)
    reply = prepare_call(handlers, frame, None, protocol.Limits(max_frame_bytes=50))
    assert isinstance(reply, str)
    assert json.loads(reply) == {
        "error": "The frame is larger than 50 bytes.",
        "code": "too_large",
    }


def test_reply_for_none_is_none_so_nothing_is_sent() -> None:
    assert make_call().reply_for(None) is None


def test_reply_for_a_value_encodes_id_type_and_data() -> None:
    reply = make_call(request_id="abc", data="ignored").reply_for({"ok": True, "n": [1, 2]})

    assert reply == '{"id":"abc","type":"echo","data":{"ok":true,"n":[1,2]}}'


@pytest.mark.parametrize("result", [0, False, "", [], {}])
def test_reply_for_a_falsy_value_other_than_none_still_replies(result: Any) -> None:
    reply = make_call().reply_for(result)

    assert reply is not None
    assert json.loads(reply) == {"id": 1, "type": "echo", "data": result}


@pytest.mark.parametrize("request_id", [0, "0", 1.5, "", -3, 12345678901234567890123])
def test_reply_for_echoes_the_request_id_exactly(request_id: Any) -> None:
    reply = make_call(request_id=request_id).reply_for("pong")

    assert reply is not None
    decoded = json.loads(reply)
    assert decoded["id"] == request_id
    assert type(decoded["id"]) is type(request_id)


def test_reply_for_an_unserializable_result_answers_handler_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reply = make_call(request_id=9).reply_for(object())

    assert reply == (
        '{"id":9,"type":"echo","error":"The handler for \'echo\' failed.","code":"handler_error"}'
    )
    [record] = rohrpost_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], TypeError)


def test_reply_for_a_result_with_a_lone_surrogate_answers_handler_error() -> None:
    reply = make_call().reply_for({"text": "\ud800"})

    assert reply is not None
    assert json.loads(reply)["code"] == "handler_error"


def test_reply_for_error_uses_the_rohrpost_error_code_message_and_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = RohrpostError("A name is required.", code="invalid", data={"field": "name"})

    reply = make_call(request_id=0).reply_for_error(exc)

    assert reply == (
        '{"id":0,"type":"echo","error":"A name is required.","code":"invalid",'
        '"data":{"field":"name"}}'
    )
    assert rohrpost_records(caplog) == []


def test_reply_for_error_of_a_subclass_uses_its_default_code_and_omits_empty_data() -> None:
    reply = make_call(request_id="0").reply_for_error(Forbidden())

    assert reply == (
        '{"id":"0","type":"echo","error":"You are not allowed to do this.","code":"forbidden"}'
    )


def test_reply_for_error_with_unserializable_data_answers_handler_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exc = RohrpostError("Bad.", code="bad", data={"when": object()})

    reply = make_call().reply_for_error(exc)

    assert json.loads(reply) == {
        "id": 1,
        "type": "echo",
        "error": "The handler for 'echo' failed.",
        "code": "handler_error",
    }
    [record] = rohrpost_records(caplog)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], TypeError)


def test_reply_for_error_of_a_generic_exception_hides_its_text_without_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reply = make_call(request_id=1.5, request_type="save").reply_for_error(
        RuntimeError("secret database password")
    )

    assert reply == (
        '{"id":1.5,"type":"save","error":"The handler for \'save\' failed.","code":"handler_error"}'
    )
    assert "secret" not in reply


def test_reply_for_error_logs_a_generic_exception_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as raised:
        exc = raised

    make_call(request_id=4, request_type="save").reply_for_error(exc)

    [record] = rohrpost_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "Handler for 'save' failed on request id 4"
    assert record.exc_info is not None
    assert record.exc_info[1] is exc
    assert record.exc_info[2] is exc.__traceback__
    assert caplog.text.count("Traceback (most recent call last)") == 1
    assert "RuntimeError: boom" in caplog.text


def test_reply_for_error_includes_the_exception_text_when_debug_is_on(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DEBUG = True

    reply = make_call(request_type="save").reply_for_error(ValueError("bad value"))

    assert json.loads(reply) == {
        "id": 1,
        "type": "save",
        "error": "The handler for 'save' failed. ValueError: bad value",
        "code": "handler_error",
    }
    assert len(rohrpost_records(caplog)) == 1


def test_reply_for_an_unserializable_result_names_the_type_error_when_debug_is_on(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DEBUG = True

    reply = make_call().reply_for(object())

    assert reply is not None
    assert json.loads(reply)["error"] == (
        "The handler for 'echo' failed. TypeError: Object of type object is not JSON serializable"
    )


def test_reply_for_error_hides_the_text_when_settings_are_not_configured(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setattr(django.conf, "settings", LazySettings())

    reply = make_call().reply_for_error(RuntimeError("boom"))

    assert json.loads(reply)["error"] == "The handler for 'echo' failed."


def test_prepare_call_answers_a_raw_lone_surrogate_type_instead_of_raising(
    handlers: HandlerRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encoding, "loads", encoding.STDLIB.loads)
    monkeypatch.setattr(encoding, "dumps", encoding.STDLIB.dumps)

    reply = prepare_call(handlers, '{"id": 1, "type": "\ud800"}')

    assert isinstance(reply, str)
    assert json.loads(reply)["code"] == "invalid_json"


def test_prepare_call_with_the_orjson_codec_refuses_a_raw_lone_surrogate_as_invalid_json(
    handlers: HandlerRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert encoding.ORJSON is not None
    monkeypatch.setattr(encoding, "loads", encoding.ORJSON.loads)
    monkeypatch.setattr(encoding, "dumps", encoding.ORJSON.dumps)

    reply = prepare_call(handlers, '{"id": 1, "type": "\ud800"}')

    assert reply == (
        '{"error":"Could not decode JSON message. Error: The text holds a lone UTF-16 '
        'surrogate.","code":"invalid_json"}'
    )
