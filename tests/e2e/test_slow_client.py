"""A client that never reads cannot grow the server's memory: it is closed with 4008."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from rohrpost.outbox import CLOSE_TOO_SLOW
from tests.e2e.conftest import E2EServer
from tests.e2e.wire import call

_ids = itertools.count(1)
#: 10,000 pushes of 1,000 characters: 10 MB, far more than the socket buffers hold.
PUSHES, SIZE = 10_000, 1_000


async def test_a_client_that_never_reads_is_closed_and_its_pushes_do_not_pile_up(
    e2e_server: E2EServer,
) -> None:
    url = e2e_server.url("async")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", e2e_server.port))
    # max_queue=1: the client library stops reading the socket once a frame waits.
    async with (
        connect(url, sock=sock, max_queue=1, compression=None) as stalled,
        connect(url) as other,
    ):
        group = f"slow-{next(_ids)}"
        reply = await call(stalled, {"id": 1, "type": "ajoin", "data": {"group": group}})
        assert reply["data"] == {"group": group}
        before = (await call(other, {"id": 2, "type": "rss"}))["data"]
        request = {
            "id": 3,
            "type": "burst",
            "data": {"group": group, "count": PUSHES, "size": SIZE},
        }
        assert (await call(other, request))["data"] == {"sent": PUSHES}
        after = (await call(other, {"id": 4, "type": "rss"}))["data"]
        members = await call(other, {"id": 5, "type": "members", "data": {"group": group}})
        # The stalled connection left the group when it fell 1 MiB behind ...
        assert members["data"] == 0
        # ... and the server holds far less than the 10 MB sent to it.
        assert after - before < 8 * 1024, f"RSS grew by {after - before} kB"
        # Reading again, the client gets what was queued before, then the close.
        received: list[object] = []
        with pytest.raises(ConnectionClosed) as closed:
            await read_for(stalled, 10.0, received)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_TOO_SLOW
        assert len(received) < PUSHES


async def read_for(connection: ClientConnection, seconds: float, into: list[object]) -> None:
    """Receive frames into ``into`` for at most ``seconds`` (raises once the connection closes)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        into.append(await asyncio.wait_for(connection.recv(), deadline - time.monotonic()))
