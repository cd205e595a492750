"""Requests and errors through a real uvicorn server, on both consumers.

Every test that talks to the server runs against ``ws/async/``
(AsyncRohrpostConsumer) and ``ws/sync/`` (SyncRohrpostConsumer) of
:mod:`tests.e2e.app`, on a server per JSON codec (orjson, then the standard library).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedError

from tests.e2e import BOOM_TEXT
from tests.e2e.conftest import Connect, E2EServer
from tests.e2e.wire import IO_SECONDS, assert_ping_works, call, recv_json, recv_text, send_json

pytestmark = pytest.mark.e2e

#: -(2**63 + 1): 19 digits, one below the int64 range.
NEGATIVE_19_DIGITS = -9223372036854775809


@pytest.mark.parametrize(
    "request_id",
    [1, 0, -7, "0", "", "ü-🚀", 1.5, 0.0, 1.0, 1e-7, 2**70, NEGATIVE_19_DIGITS],
    ids=[
        "int",
        "zero",
        "negative",
        "string-zero",
        "empty-string",
        "unicode",
        "float",
        "float-zero",
        "float-one",
        "float-small",
        "int-beyond-64-bits",
        "negative-19-digits-below-int64",
    ],
)
async def test_ping_answers_pong_with_the_same_id(ws: ClientConnection, request_id: Any) -> None:
    reply = await call(ws, {"id": request_id, "type": "ping"})
    assert reply == {"id": request_id, "type": "pong"}
    assert type(reply["id"]) is type(request_id)


async def test_ping_echoes_object_data_and_wraps_other_data(ws: ClientConnection) -> None:
    assert await call(ws, {"id": 1, "type": "ping", "data": {"a": [1, 2]}}) == {
        "id": 1,
        "type": "pong",
        "data": {"a": [1, 2]},
    }
    assert await call(ws, {"id": 2, "type": "ping", "data": [1, 2]}) == {
        "id": 2,
        "type": "pong",
        "data": {"data": [1, 2]},
    }


@pytest.mark.parametrize(
    "request_type",
    ["no-such-handler", "ü🚀", "__init__", "pong", "x" * 100],
    ids=["plain", "unicode", "dunder", "pong", "100-chars"],
)
async def test_unknown_type_is_an_error_that_echoes_id_and_type(
    ws: ClientConnection, request_type: str
) -> None:
    reply = await call(ws, {"id": 42, "type": request_type})
    assert reply["code"] == "unknown_type"
    assert reply["id"] == 42
    assert reply["type"] == request_type
    assert isinstance(reply["error"], str)
    assert reply["error"]
    await assert_ping_works(ws)


LIMIT = 256 * 1024  # the default Limits.max_frame_bytes
DEEP = 100
DEEP_DATA = "[" * DEEP + "]" * DEEP

#: (frame, expected code, expected id, expected type): id/type are echoed when readable.
BAD_FRAMES: dict[str, tuple[str, str, Any, Any]] = {
    "empty": ("", "empty_frame", None, None),
    "whitespace": (" \t\r\n ", "empty_frame", None, None),
    "invalid-json": ('{"id": 1, "type": "ping"', "invalid_json", None, None),
    "nan": ('{"id": 1, "type": "ping", "data": NaN}', "invalid_json", None, None),
    "infinity": ('{"id": 1, "type": "ping", "data": -Infinity}', "invalid_json", None, None),
    "float-overflow": ('{"id": 1, "type": "ping", "data": 1e999}', "invalid_json", None, None),
    "trailing-garbage": ('{"id": 1, "type": "ping"} x', "invalid_json", None, None),
    "two-objects": (
        '{"id": 1, "type": "ping"}{"id": 2, "type": "ping"}',
        "invalid_json",
        None,
        None,
    ),
    "not-an-object": ("[1, 2, 3]", "not_an_object", None, None),
    "bare-string": ('"ping"', "not_an_object", None, None),
    "null": ("null", "not_an_object", None, None),
    "missing-id": ('{"type": "ping"}', "missing_id", None, "ping"),
    "null-id": ('{"id": null, "type": "ping"}', "invalid_id", None, "ping"),
    "bool-id": ('{"id": true, "type": "ping"}', "invalid_id", None, "ping"),
    "list-id": ('{"id": [1], "type": "ping"}', "invalid_id", None, "ping"),
    "missing-type": ('{"id": 5}', "missing_type", 5, None),
    "type-not-a-string": ('{"id": 5, "type": 5}', "invalid_type", 5, None),
    "empty-type": ('{"id": 5, "type": ""}', "invalid_type", 5, None),
    "type-too-long": (json.dumps({"id": 5, "type": "x" * 101}), "invalid_type", 5, None),
    "lone-surrogate": ('{"id": 1, "type": "ping", "data": "\\ud800"}', "invalid_json", None, None),
    "lone-low-surrogate-in-key": (
        '{"id": 1, "type": "ping", "data": {"\\udc00": 1}}',
        "invalid_json",
        None,
        None,
    ),
    "5000-digit-integer": (
        '{"id": 1, "type": "ping", "data": ' + "7" * 5000 + "}",
        "invalid_json",
        None,
        None,
    ),
    "5000-digit-id": ('{"id": ' + "7" * 5000 + ', "type": "ping"}', "invalid_json", None, None),
    "100-deep": ('{"id": 9, "type": "ping", "data": ' + DEEP_DATA + "}", "too_deep", 9, "ping"),
    "100-deep-unknown-type": (
        '{"id": 9, "type": "nope", "data": ' + DEEP_DATA + "}",
        "too_deep",
        9,
        "nope",
    ),
    "200000-deep": ("[" * 200_000, "too_deep", None, None),
    "30000-deep-objects": ('{"a":' * 30_000 + "1" + "}" * 30_000, "too_deep", None, None),
    "one-byte-over-the-limit": (
        json.dumps({"id": 1, "type": "ping", "data": "x" * (LIMIT - 36)}),
        "too_large",
        None,
        None,
    ),
    "300-KiB": (
        json.dumps({"id": 1, "type": "ping", "data": "x" * (300 * 1024)}),
        "too_large",
        None,
        None,
    ),
    "300-KiB-of-multibyte": (
        json.dumps({"id": 1, "type": "ping", "data": "é" * (150 * 1024 + 8)}, ensure_ascii=False),
        "too_large",
        None,
        None,
    ),
}


@pytest.mark.parametrize(
    ("frame", "code", "request_id", "request_type"),
    list(BAD_FRAMES.values()),
    ids=list(BAD_FRAMES),
)
async def test_bad_frame_gets_exactly_one_error_and_the_connection_stays_open(
    ws: ClientConnection, frame: str, code: str, request_id: Any, request_type: Any
) -> None:
    await asyncio.wait_for(ws.send(frame), IO_SECONDS)
    error = await recv_json(ws)
    assert error["code"] == code, error
    assert isinstance(error["error"], str)
    assert error["error"]
    assert error.get("id") == request_id
    assert error.get("type") == request_type
    # The next frame is the pong: no second answer to the bad frame, no close.
    await assert_ping_works(ws)


async def test_binary_frame_gets_binary_frame_error(ws: ClientConnection) -> None:
    await asyncio.wait_for(ws.send(b'{"id": 1, "type": "ping"}'), IO_SECONDS)
    error = await recv_json(ws)
    assert error["code"] == "binary_frame"
    assert "id" not in error
    await assert_ping_works(ws)


async def test_empty_binary_frame_gets_binary_frame_error(ws: ClientConnection) -> None:
    await asyncio.wait_for(ws.send(b""), IO_SECONDS)
    assert (await recv_json(ws))["code"] == "binary_frame"
    await assert_ping_works(ws)


def test_the_size_limit_frames_are_what_they_claim() -> None:
    assert len(BAD_FRAMES["one-byte-over-the-limit"][0].encode()) == LIMIT + 1
    assert len(BAD_FRAMES["300-KiB-of-multibyte"][0]) < LIMIT  # too large in bytes only


async def test_frame_of_exactly_the_size_limit_is_served(ws: ClientConnection) -> None:
    envelope = len(json.dumps({"id": 1, "type": "ping", "data": {"s": ""}}))
    frame = json.dumps({"id": 1, "type": "ping", "data": {"s": "x" * (LIMIT - envelope)}})
    assert len(frame.encode()) == LIMIT
    reply = await call(ws, json.loads(frame))
    assert reply["type"] == "pong"
    assert len(reply["data"]["s"]) == LIMIT - envelope


@pytest.mark.parametrize("handler", ["say", "asay"])
async def test_messages_a_handler_sends_arrive_before_its_reply(
    ws: ClientConnection, handler: str
) -> None:
    await send_json(ws, {"id": 6, "type": handler})
    assert [await recv_json(ws) for _ in range(3)] == [
        {"id": 6, "type": "said", "data": "first"},
        {"id": 6, "type": "said", "data": "second"},
        {"id": 6, "type": handler, "data": "done"},
    ]
    await assert_ping_works(ws)


async def test_server_runs_the_codec_asked_for(ws: ClientConnection, e2e_server: E2EServer) -> None:
    assert await call(ws, {"id": 1, "type": "codec"}) == {
        "id": 1,
        "type": "codec",
        "data": e2e_server.codec,
    }


@pytest.mark.parametrize("kind", ["object", "lone-surrogate", "bytes"])
async def test_unencodable_reply_is_handler_error(ws: ClientConnection, kind: str) -> None:
    error = await call(ws, {"id": 7, "type": "badreply", "data": kind})
    assert error["code"] == "handler_error"
    assert error["id"] == 7
    assert error["type"] == "badreply"
    await assert_ping_works(ws)


@pytest.mark.parametrize("kind", ["nan", "infinity"])
async def test_non_finite_float_in_a_reply_is_sent_as_null(ws: ClientConnection, kind: str) -> None:
    reply = await call(ws, {"id": 7, "type": "badreply", "data": kind})
    assert reply == {"id": 7, "type": "badreply", "data": None}


async def test_handler_exception_is_handler_error_without_its_text(
    ws: ClientConnection, e2e_server: E2EServer
) -> None:
    await send_json(ws, {"id": "b-1", "type": "boom"})
    text = await recv_text(ws)
    error = json.loads(text)
    assert error["code"] == "handler_error"
    assert error["id"] == "b-1"
    assert error["type"] == "boom"
    assert BOOM_TEXT not in text
    assert "RuntimeError" not in text
    assert "Traceback" not in text
    await assert_ping_works(ws)
    # ...but the server logged it, traceback included.
    assert BOOM_TEXT in e2e_server.log()


async def test_rohrpost_error_answers_with_its_code_message_and_data(
    ws: ClientConnection,
) -> None:
    assert await call(ws, {"id": 3, "type": "refuse"}) == {
        "id": 3,
        "type": "refuse",
        "error": "Not for you.",
        "code": "forbidden",
        "data": {"why": "e2e"},
    }
    await assert_ping_works(ws)


async def test_sync_handler_gets_extra_top_level_fields_untouched(ws: ClientConnection) -> None:
    request = {"id": 4, "type": "echo", "data": {"x": [1, None]}, "auth_jwt": "tok.en"}
    assert await call(ws, request) == {"id": 4, "type": "echo", "data": request}


async def test_async_handler_reply(ws: ClientConnection) -> None:
    assert await call(ws, {"id": 5, "type": "aecho", "data": "hi"}) == {
        "id": 5,
        "type": "aecho",
        "data": {"echo": "hi"},
    }


async def test_200_pipelined_pings_get_200_pongs_in_order(ws: ClientConnection) -> None:
    count = 200
    for request_id in range(count):
        await asyncio.wait_for(ws.send(json.dumps({"id": request_id, "type": "ping"})), IO_SECONDS)
    replies = [await recv_json(ws) for _ in range(count)]
    assert [reply["id"] for reply in replies] == list(range(count))
    assert all(reply["type"] == "pong" for reply in replies)


async def test_bad_and_good_frames_interleaved_keep_their_order(ws: ClientConnection) -> None:
    frames = [
        '{"id": 1, "type": "ping"}',
        "not json",
        '{"id": 2}',
        b"\x00",
        '{"id": 3, "type": "boom"}',
        '{"id": 4, "type": "ping"}',
    ]
    for frame in frames:
        await asyncio.wait_for(ws.send(frame), IO_SECONDS)
    replies = [await recv_json(ws) for _ in frames]
    assert [(reply.get("id"), reply.get("code")) for reply in replies] == [
        (1, None),
        (None, "invalid_json"),
        (2, "missing_type"),
        (None, "binary_frame"),
        (3, "handler_error"),
        (4, None),
    ]


async def test_many_concurrent_connections_each_get_their_own_pongs(
    ws_connect: Connect, endpoint: str
) -> None:
    async def client(number: int) -> None:
        connection = await ws_connect(endpoint)
        for sequence in range(5):
            await assert_ping_works(connection, f"{number}-{sequence}")

    await asyncio.gather(*(client(number) for number in range(30)))


async def test_text_frame_of_invalid_utf8_fails_the_connection_with_1007(
    ws: ClientConnection, ws_connect: Connect, endpoint: str
) -> None:
    """RFC 6455 makes the server fail the connection; rohrpost never sees such a frame."""
    # A UTF-8-encoded lone surrogate: the only way to smuggle one into a text frame.
    await asyncio.wait_for(ws.send(b'{"id": 1, "type": "\xed\xa0\x80"}', text=True), IO_SECONDS)
    with pytest.raises(ConnectionClosedError) as closed:
        await recv_text(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1007
    await assert_ping_works(await ws_connect(endpoint))
