"""The demo's uvicorn refuses what rohrpost would refuse, before rohrpost sees it.

``make demo`` runs uvicorn with ``--ws-max-size`` equal to rohrpost's
``MAX_FRAME_BYTES`` and with a ping interval and timeout (the Makefile's
``UVICORN_WS``; docs/deployment.md says what each guards). These tests start
the demo exactly so (:mod:`tests.demo_server`) and send it frames around the
limit with a real WebSocket client, and with a raw socket where the client
library would not send what an attacker sends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from tests.demo_server import (
    EXAMPLE_DIR,
    MAX_FRAME_BYTES,
    UVICORN_WS_OPTIONS,
    WS_PATH,
    DemoServer,
    run_demo,
)

pytestmark = pytest.mark.e2e

IO_TIMEOUT = 10.0
ROOT = EXAMPLE_DIR.parent
MESSAGE_TOO_BIG = 1009
OPCODE_TEXT, OPCODE_CONTINUATION, OPCODE_CLOSE = 0x1, 0x0, 0x8


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    # uvicorn's --ws-max-size is what these tests are about; granian has no such
    # option (docs/deployment.md), so ROHRPOST_DEMO_SERVER does not apply here.
    with run_demo(tmp_path_factory.mktemp("limits"), server="uvicorn") as server:
        yield server


def _connect(server: DemoServer, *, compress: bool = False) -> connect:
    return connect(
        server.ws_url,
        origin=server.base_url,  # type: ignore[arg-type]
        open_timeout=IO_TIMEOUT,
        close_timeout=IO_TIMEOUT,
        compression="deflate" if compress else None,
        max_size=None,
    )


def _echo_frame(size: int) -> str:
    """An ``echo`` request of exactly ``size`` UTF-8 bytes, padded with two-byte characters.

    The padding makes characters and bytes differ, so the test shows that
    uvicorn and rohrpost both count bytes.
    """
    empty = json.dumps({"id": 1, "type": "echo", "data": ""}, ensure_ascii=False)
    room = size - len(empty.encode())
    padding = "ü" * (room // 2) + "u" * (room % 2)
    frame = json.dumps({"id": 1, "type": "echo", "data": padding}, ensure_ascii=False)
    assert len(frame.encode()) == size
    return frame


async def _closed_by_server(connection: ClientConnection, frame: str) -> int | None:
    """Send ``frame``, then return the code of the server's close frame."""

    async def send_and_receive() -> None:
        await connection.send(frame)
        await connection.recv()

    with pytest.raises(ConnectionClosedError) as excinfo:
        await asyncio.wait_for(send_and_receive(), IO_TIMEOUT)
    received = excinfo.value.rcvd
    return None if received is None else received.code


# The command lines -------------------------------------------------------------


def test_make_demo_runs_uvicorn_with_the_options_the_tests_use(tmp_path: Path) -> None:
    """``make demo``, tests/demo_server.py and the JS tests' server agree on uvicorn's options."""
    plan = subprocess.run(
        ["make", "--dry-run", "demo", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    command = next(line for line in plan.splitlines() if " uvicorn " in line)
    assert command.split("--lifespan off", 1)[1].split() == list(UVICORN_WS_OPTIONS)
    js_server = (ROOT / "clients" / "js" / "test" / "server.js").read_text()
    js_arguments = re.findall(r'^\s+"([^"]+)",$', js_server.split('"off",', 1)[1], re.MULTILINE)
    assert js_arguments[: len(UVICORN_WS_OPTIONS)] == list(UVICORN_WS_OPTIONS)


def test_the_demo_max_size_is_its_max_frame_bytes(demo: DemoServer) -> None:
    result = demo.manage(
        "shell",
        "--no-imports",
        "-c",
        "from rohrpost import conf; print(conf.get('MAX_FRAME_BYTES'))",
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == MAX_FRAME_BYTES
    assert UVICORN_WS_OPTIONS[:2] == ("--ws-max-size", str(MAX_FRAME_BYTES))


# Frames around the limit -------------------------------------------------------


async def test_a_16_mib_frame_is_closed_with_1009_by_uvicorn(demo: DemoServer) -> None:
    """rohrpost answers an oversized frame with `too_large` and stays open: 1009 is uvicorn's."""
    async with _connect(demo) as connection:
        assert await _closed_by_server(connection, "x" * (16 * 1024 * 1024)) == MESSAGE_TOO_BIG


async def test_a_frame_one_byte_over_max_frame_bytes_is_closed_with_1009(
    demo: DemoServer,
) -> None:
    async with _connect(demo) as connection:
        code = await _closed_by_server(connection, _echo_frame(MAX_FRAME_BYTES + 1))
    assert code == MESSAGE_TOO_BIG


async def test_a_frame_of_max_frame_bytes_is_answered_by_rohrpost(demo: DemoServer) -> None:
    frame = _echo_frame(MAX_FRAME_BYTES)
    async with _connect(demo) as connection:
        await asyncio.wait_for(connection.send(frame), IO_TIMEOUT)
        reply = json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))
        assert reply == json.loads(frame)
        # The connection stays open for the next request.
        await connection.send(json.dumps({"id": 2, "type": "ping"}))
        assert json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT)) == {
            "id": 2,
            "type": "pong",
        }


async def test_a_compressed_16_mib_message_is_refused_as_it_inflates(demo: DemoServer) -> None:
    """permessage-deflate squeezes 16 MiB of one letter into a few KiB; the limit still holds."""
    async with _connect(demo, compress=True) as connection:
        assert connection.protocol.extensions, "the server did not agree to compression"
        assert await _closed_by_server(connection, "x" * (16 * 1024 * 1024)) == MESSAGE_TOO_BIG


# What a client library would not send ------------------------------------------


def _handshake(server: DemoServer) -> socket.socket:
    """Open a raw WebSocket connection to the demo (no compression)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: {server.base_url}\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, response
        response += chunk
    assert response.startswith(b"HTTP/1.1 101 "), response
    return sock


def _frame_header(opcode: int, length: int, *, fin: bool) -> bytes:
    """A client frame's header announcing ``length`` bytes, with an all-zero mask."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return struct.pack("!BB", first, 0x80 | length) + bytes(4)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 0x80 | 126, length) + bytes(4)
    return struct.pack("!BBQ", first, 0x80 | 127, length) + bytes(4)


def _read_close_code(sock: socket.socket) -> int:
    """Read server frames until the close frame; return its code."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, f"the connection ended without a close frame: {data[:80]!r}"
        data += chunk
        # Server frames are unmasked; a close frame's payload starts with its code.
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            assert length < 126, data[:80]
            if len(data) < 2 + length:
                break
            if opcode == OPCODE_CLOSE:
                code: int = struct.unpack("!H", data[2:4])[0]
                return code
            data = data[2 + length :]


def test_an_announced_16_mib_frame_is_refused_before_its_payload_arrives(
    demo: DemoServer,
) -> None:
    """uvicorn does not hold an unfinished frame over the limit: the header is enough."""
    with _handshake(demo) as sock:
        sock.sendall(_frame_header(OPCODE_TEXT, 16 * 1024 * 1024, fin=True) + b"x" * 1024)
        assert _read_close_code(sock) == MESSAGE_TOO_BIG


def test_fragments_adding_up_to_more_than_the_limit_are_refused(demo: DemoServer) -> None:
    """A message sent as many small fragments is bounded by the same limit."""
    fragment = b" " * 1024
    with _handshake(demo) as sock:
        sock.sendall(_frame_header(OPCODE_TEXT, 1, fin=False) + b"[")
        for _ in range(MAX_FRAME_BYTES // len(fragment)):
            header = _frame_header(OPCODE_CONTINUATION, len(fragment), fin=False)
            sock.sendall(header + fragment)
        # 1 byte and 256 fragments of 1 KiB: the last fragment is one byte too many.
        assert _read_close_code(sock) == MESSAGE_TOO_BIG
