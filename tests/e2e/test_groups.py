"""Group membership and broadcasts through a real uvicorn server.

Channel-layer delivery to one connection is first in, first out, so after a
broadcast each test sends a second, *marker* broadcast: once the marker has
arrived, any duplicate of the first one would have arrived before it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.conftest import ENDPOINTS, Connect, E2EServer
from tests.e2e.wire import assert_ping_works, call, recv_text, send_json

pytestmark = pytest.mark.e2e

_ids = itertools.count(1)
#: How long the server may take to process a client's disconnect.
DISCONNECT_SECONDS = 3.0


def push_text(text: str) -> str:
    """The exact frame a member receives when someone shouts ``text``."""
    return json.dumps({"type": "shout", "data": {"text": text}}, separators=(",", ":"))


async def join(connection: ClientConnection, group: str, handler: str = "join") -> None:
    request_id = next(_ids)
    reply = await call(connection, {"id": request_id, "type": handler, "data": {"group": group}})
    assert reply == {"id": request_id, "type": handler, "data": {"group": group}}


async def shout(connection: ClientConnection, group: str, text: str, handler: str) -> int:
    """Send a shout request (without waiting for anything) and return its id."""
    request_id = next(_ids)
    await send_json(
        connection, {"id": request_id, "type": handler, "data": {"group": group, "text": text}}
    )
    return request_id


async def frames_until_push(
    connection: ClientConnection, text: str, *, with_replies: int = 0
) -> list[str]:
    """Receive frames until the push of ``text`` and ``with_replies`` replies have arrived."""
    frames: list[str] = []
    while push_text(text) not in frames or len(replies(frames)) < with_replies:
        frames.append(await recv_text(connection))
    return frames


def pushes(frames: list[str]) -> list[str]:
    return [frame for frame in frames if '"id"' not in frame]


def replies(frames: list[str]) -> list[Any]:
    return [json.loads(frame) for frame in frames if '"id"' in frame]


PAIRS = list(itertools.product(ENDPOINTS, repeat=2))
SHOUTS = ["shout", "ashout", "ishout"]


@pytest.mark.parametrize("shout_handler", SHOUTS)
@pytest.mark.parametrize(("endpoint_a", "endpoint_b"), PAIRS, ids=["-".join(p) for p in PAIRS])
async def test_broadcast_reaches_each_member_exactly_once(
    ws_connect: Connect, endpoint_a: str, endpoint_b: str, shout_handler: str
) -> None:
    a = await ws_connect(endpoint_a)
    b = await ws_connect(endpoint_b)
    await join(a, "room", "join")
    await join(b, "room", "ajoin")

    first = await shout(a, "room", "hello", shout_handler)
    second = await shout(a, "room", "marker", shout_handler)

    frames_a = await frames_until_push(a, "marker", with_replies=2)
    frames_b = await frames_until_push(b, "marker")

    assert pushes(frames_a) == [push_text("hello"), push_text("marker")]
    assert replies(frames_a) == [
        {"id": first, "type": shout_handler, "data": {"sent": True}},
        {"id": second, "type": shout_handler, "data": {"sent": True}},
    ]
    assert frames_b == [push_text("hello"), push_text("marker")]
    await assert_ping_works(a)
    await assert_ping_works(b)


async def members(connection: ClientConnection, group: str) -> int:
    """How many channels the server's channel layer holds in ``group``."""
    reply = await call(connection, {"id": next(_ids), "type": "members", "data": {"group": group}})
    return int(reply["data"])


async def wait_for_members(connection: ClientConnection, group: str, expected: int) -> None:
    """Wait (boundedly) until ``group`` has ``expected`` members: disconnects are asynchronous."""
    deadline = time.monotonic() + DISCONNECT_SECONDS
    while (count := await members(connection, group)) != expected:
        assert time.monotonic() < deadline, f"{group!r} still has {count} members, not {expected}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("how", ["close", "abort"])
@pytest.mark.parametrize(("endpoint_a", "endpoint_b"), PAIRS, ids=["-".join(p) for p in PAIRS])
async def test_a_member_that_disconnects_leaves_and_broadcast_goes_on(
    ws_connect: Connect, endpoint_a: str, endpoint_b: str, how: str
) -> None:
    lobby = f"lobby-{next(_ids)}"
    a = await ws_connect(endpoint_a)
    b = await ws_connect(endpoint_b)
    await join(a, lobby)
    await join(b, lobby, "ajoin")
    assert await members(a, lobby) == 2
    if how == "close":
        await b.close()
    else:  # the TCP connection drops without a closing handshake
        b.transport.abort()
    await wait_for_members(a, lobby, 1)

    request_id = await shout(a, lobby, "anyone?", "shout")
    frames = await frames_until_push(a, "anyone?", with_replies=1)
    assert pushes(frames) == [push_text("anyone?")]
    assert replies(frames) == [{"id": request_id, "type": "shout", "data": {"sent": True}}]
    await assert_ping_works(a)

    # A newcomer in the same group is served as before.
    c = await ws_connect(endpoint_b)
    await join(c, lobby)
    await shout(a, lobby, "welcome", "ashout")
    assert await frames_until_push(c, "welcome") == [push_text("welcome")]
    await assert_ping_works(c)


async def test_joining_twice_delivers_once(ws_connect: Connect, endpoint: str) -> None:
    a = await ws_connect(endpoint)
    await join(a, "twice", "join")
    await join(a, "twice", "ajoin")
    await shout(a, "twice", "once", "ashout")
    await shout(a, "twice", "marker", "ashout")
    assert pushes(await frames_until_push(a, "marker")) == [push_text("once"), push_text("marker")]


async def test_a_connection_that_left_gets_nothing(ws_connect: Connect, endpoint: str) -> None:
    a = await ws_connect(endpoint)
    b = await ws_connect(endpoint)
    await join(a, "hall")
    await join(b, "hall")
    await call(a, {"id": 1, "type": "leave", "data": {"group": "hall"}})
    await shout(b, "hall", "behind your back", "shout")
    await frames_until_push(b, "behind your back")

    await join(a, "hall")
    await shout(b, "hall", "marker", "shout")
    assert await frames_until_push(a, "marker") == [push_text("marker")]


async def test_stray_channel_layer_events_are_ignored(
    ws_connect: Connect, endpoint: str, e2e_server: E2EServer
) -> None:
    a = await ws_connect(endpoint)
    await join(a, "strays")
    request_id = await shout(a, "strays", "real", "stray")
    frames = await frames_until_push(a, "real", with_replies=1)
    assert pushes(frames) == [push_text("real")]
    assert replies(frames) == [{"id": request_id, "type": "stray", "data": {"sent": True}}]
    await assert_ping_works(a)
    assert "Ignoring channel-layer event of unknown type 'no.such.event'" in e2e_server.log()


@pytest.mark.parametrize("handler", ["join", "ajoin"])
async def test_invalid_group_name_is_a_handler_error(ws: ClientConnection, handler: str) -> None:
    reply = await call(ws, {"id": 8, "type": handler, "data": {"group": "no spaces allowed!"}})
    assert reply["code"] == "handler_error"
    assert reply["id"] == 8
    await assert_ping_works(ws)


async def test_broadcast_fans_out_to_many_crowd_memberson_both_endpoints(
    ws_connect: Connect,
) -> None:
    crowd = f"crowd-{next(_ids)}"
    crowd_members = await asyncio.gather(*(ws_connect(ENDPOINTS[i % 2]) for i in range(20)))
    await asyncio.gather(*(join(member, crowd, "ajoin") for member in crowd_members))
    await shout(crowd_members[0], crowd, "to all", "ashout")
    await shout(crowd_members[0], crowd, "marker", "shout")
    received = await asyncio.gather(
        *(frames_until_push(member, "marker") for member in crowd_members)
    )
    for frames in received:
        assert pushes(frames) == [push_text("to all"), push_text("marker")]
