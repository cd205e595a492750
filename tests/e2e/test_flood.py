"""Rate limiting and flood close through a real uvicorn server, on both consumers.

The server runs with the default settings: 100 frames per second, a burst of
200, and a close with code 4029 after more than 100 refused frames in one second.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import Connect
from tests.e2e.wire import IO_SECONDS, assert_ping_works, call

pytestmark = pytest.mark.e2e

REFUSAL = {"error": "Too many requests: slow down.", "code": "rate_limited"}
#: Frames the flooding client sends before it reads anything.
FLOOD_FRAMES = 2000
#: The default burst: this many frames at once are always answered.
BURST = 200
#: The default FLOOD_CLOSE_AFTER: one more refusal within a second closes the connection.
FLOOD_CLOSE_AFTER = 100
#: Bound on the whole flood: sending, reading to the close.
FLOOD_SECONDS = 10.0
#: Where each test's flooder connects from, per endpoint: a flood-closed address
#: is refused for ROHRPOST["FLOOD_COOLDOWN"] (10 s), so no two floods share one.
FLOODER_ADDRESS = {
    ("refused", "async"): "127.0.0.2",
    ("refused", "sync"): "127.0.0.3",
    ("neighbour", "async"): "127.0.0.4",
    ("neighbour", "sync"): "127.0.0.5",
}


async def flood(connection: ClientConnection) -> None:
    """Send :data:`FLOOD_FRAMES` pings as fast as possible, reading nothing."""
    frames = [json.dumps({"id": request_id, "type": "ping"}) for request_id in range(FLOOD_FRAMES)]
    try:
        for frame in frames:
            await connection.send(frame)
    except ConnectionClosed:
        pass  # the server closed the connection before the client was done: that is the point


async def read_until_closed(connection: ClientConnection) -> tuple[list[Any], ConnectionClosed]:
    """Return every frame received, decoded, and how the connection closed."""
    received: list[Any] = []
    while True:
        try:
            received.append(json.loads(await connection.recv()))
        except ConnectionClosed as closed:
            return received, closed


async def test_a_flooding_client_is_refused_then_closed_4029(
    ws_connect: Connect, endpoint: str
) -> None:
    connection = await ws_connect(endpoint, FLOODER_ADDRESS["refused", endpoint])

    await asyncio.wait_for(flood(connection), FLOOD_SECONDS)
    received, closed = await asyncio.wait_for(read_until_closed(connection), FLOOD_SECONDS)

    assert closed.rcvd is not None, "the server did not send a close frame"
    assert closed.rcvd.code == 4029
    pongs = [frame for frame in received if frame != REFUSAL]
    refusals = [frame for frame in received if frame == REFUSAL]
    # The burst is answered in order; a few more pings earn a refilled token meanwhile.
    assert pongs[:BURST] == [{"id": request_id, "type": "pong"} for request_id in range(BURST)]
    assert all(frame["type"] == "pong" for frame in pongs)
    assert BURST <= len(pongs) < FLOOD_FRAMES
    # Refusals up to FLOOD_CLOSE_AFTER keep the connection; the next one closes it.
    assert len(refusals) >= FLOOD_CLOSE_AFTER + 1
    assert received[-1] == REFUSAL
    assert len(received) < FLOOD_FRAMES, "the server answered every frame instead of closing"


async def test_a_well_behaved_client_is_served_during_and_after_a_flood(
    ws_connect: Connect, endpoint: str
) -> None:
    flooder = await ws_connect(endpoint, FLOODER_ADDRESS["neighbour", endpoint])
    neighbour = await ws_connect(endpoint)

    async def ping_steadily(stop: asyncio.Event) -> int:
        """Ping every 10 ms (the rate allows 100/s) until ``stop``; return how many."""
        count = 0
        while not stop.is_set():
            count += 1
            reply = await call(neighbour, {"id": count, "type": "ping"})
            assert reply == {"id": count, "type": "pong"}
            await asyncio.sleep(0.01)
        return count

    async def flood_to_the_close() -> ConnectionClosed:
        await flood(flooder)
        _, closed = await read_until_closed(flooder)
        return closed

    stop = asyncio.Event()
    neighbour_task = asyncio.create_task(ping_steadily(stop))
    try:
        closed = await asyncio.wait_for(flood_to_the_close(), FLOOD_SECONDS)
    finally:
        stop.set()
        pings_during_flood = await asyncio.wait_for(neighbour_task, IO_SECONDS)

    assert closed.rcvd is not None
    assert closed.rcvd.code == 4029
    assert pings_during_flood >= 1
    # After the flood: the neighbour's connection is healthy and never rate limited.
    for request_id in range(5):
        await assert_ping_works(neighbour, f"after-{request_id}")
    # The flooder's address is refused at the handshake for a while (HTTP 403)...
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(endpoint, FLOODER_ADDRESS["neighbour", endpoint])
    assert refused.value.response.status_code == 403
    # ...while other clients connect as usual.
    await assert_ping_works(await ws_connect(endpoint), "new client")
