"""The fan-out benchmark's subscribers: many WebSocket connections in one lean process.

Run by :mod:`bench.fanout` as ``python -m bench.fanout_client CONFIG_JSON``;
it talks to its parent in JSON lines (commands on stdin, answers on stdout):

- at start it opens ``connections`` WebSockets, spread over ``urls``, and
  sends ``hello`` (a join or a ping frame) on each; once every connection has
  its first reply it prints ``{"ready": n, "deflated": k}`` (``k`` connections
  negotiated permessage-deflate, offered as browsers do with ``"deflate": true``);
- ``{"expect": B}`` arms a phase: it answers ``{"armed": B}``, then
  ``{"done": t, ...}`` once every connection got B more pushes (``t`` is
  ``time.monotonic()`` of the last one: the clock is shared by the processes
  of one machine), or ``{"failed": ...}`` after ``timeout`` seconds or on a
  wrong push;
- ``{"quit": true}`` (or the end of stdin) closes everything and exits.

The client is a plain :class:`asyncio.Protocol` that parses the server's
frames itself instead of a full WebSocket library, so that 100,000 pushes
cost the client little of the machine's two cores: the server's figures are
what is measured. Every push is checked: the first one of each connection
is decoded and compared with ``expected`` (a JSON object), every later one
must be the same text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import sys
import time
from typing import Any, cast
from urllib.parse import urlsplit

__all__ = ["Subscriber", "main"]

OPCODE_TEXT, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x8, 0x9, 0xA
#: What browsers offer (``deflate: true``): the server then keeps compression state per socket.
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
#: Connections opened at once: more would overflow the server's accept backlog.
CONNECT_CONCURRENCY = 50


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, final client frame (RFC 6455 section 5.2)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return head + mask + masked


class Subscriber(asyncio.Protocol):
    """One WebSocket connection that counts and checks the text frames it receives."""

    def __init__(
        self, host: str, path: str, hello: bytes, expected: Any, run: Run, deflate: bool
    ) -> None:
        offer = f"{DEFLATE_OFFER}\r\n" if deflate else ""
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n{offer}\r\n"
        ).encode()
        self.deflated = False
        self.hello, self.expected, self.run = hello, expected, run
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.ready = asyncio.get_running_loop().create_future()
        self.first_push: bytes | None = None
        self.pushes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.fail(f"a connection was lost: {exc!r}")
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the first reply"))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.run.fail(f"upgrade refused: {bytes(buffer[:80])!r}")
                return
            self.deflated = b"permessage-deflate" in buffer[:end].lower()
            del buffer[: end + 4]
            self.upgraded = True
            self.send(OPCODE_TEXT, self.hello)
        position, size = 0, len(buffer)
        while size - position >= 2:
            opcode, length = buffer[position] & 0x0F, buffer[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                (length,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif length == 127:
                if size - position < 10:
                    break
                (length,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            if size < start + length:
                break
            self.frame(opcode, bytes(buffer[start : start + length]))
            position = start + length
        del buffer[:position]

    def send(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(opcode, payload))

    def frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OPCODE_PING:
            self.send(OPCODE_PONG, payload)
        elif opcode == OPCODE_CLOSE:
            self.run.fail(f"the server closed a connection: {payload[:80]!r}")
        elif opcode != OPCODE_TEXT:
            return
        elif not self.ready.done():
            self.ready.set_result(None)  # the reply to the hello: joined
        elif self.first_push is None and json.loads(payload) != self.expected:
            self.run.fail(f"wrong push: {payload[:200]!r}, expected {self.expected!r}")
        elif self.first_push is not None and payload != self.first_push:
            self.run.fail(f"a push differs from the first: {payload[:200]!r}")
        else:
            self.first_push = payload
            self.pushes += 1
            self.run.pushed()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(OPCODE_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()


class Run:
    """All connections of this process, and the phase they are in."""

    def __init__(self) -> None:
        self.subscribers: list[Subscriber] = []
        self.target = 0  # total pushes the current phase ends at
        self.received = 0
        self.phase_done: asyncio.Future[str] | None = None
        self.closing = False

    def pushed(self) -> None:
        self.received += 1
        if self.received == self.target and self.phase_done and not self.phase_done.done():
            self.phase_done.set_result("done")

    def fail(self, reason: str) -> None:
        if self.closing:
            return
        if self.phase_done is not None and not self.phase_done.done():
            self.phase_done.set_result(reason)
        else:
            print(json.dumps({"failed": reason}), flush=True)


def emit(answer: dict[str, Any]) -> None:
    print(json.dumps(answer), flush=True)


async def open_all(config: dict[str, Any], run: Run) -> None:
    loop = asyncio.get_running_loop()
    hello = json.dumps(config.get("hello") or {"id": 1, "type": "ping"}).encode()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(url: str) -> None:
        parts = urlsplit(url)
        async with gate:
            subscriber: Subscriber | None = None

            def factory() -> Subscriber:
                nonlocal subscriber
                host = f"{parts.hostname}:{parts.port}"
                subscriber = Subscriber(
                    host,
                    parts.path,
                    hello,
                    config.get("expected"),
                    run,
                    config.get("deflate", False),
                )
                return subscriber

            await loop.create_connection(factory, parts.hostname, parts.port)
            assert subscriber is not None
            run.subscribers.append(subscriber)
            await asyncio.wait_for(subscriber.ready, config["timeout"])

    urls = config["urls"]
    tasks = [open_one(urls[index % len(urls)]) for index in range(config["connections"])]
    await asyncio.wait_for(asyncio.gather(*tasks), config["timeout"] * 4)


async def serve(config: dict[str, Any]) -> None:
    run = Run()
    await open_all(config, run)
    deflated = sum(subscriber.deflated for subscriber in run.subscribers)
    emit({"ready": len(run.subscribers), "deflated": deflated})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if "expect" not in command:
                break
            run.target = run.received + command["expect"] * len(run.subscribers)
            run.phase_done = loop.create_future()
            emit({"armed": command["expect"]})
            try:
                outcome = await asyncio.wait_for(run.phase_done, config["timeout"])
            except asyncio.TimeoutError:
                outcome = f"timed out: {run.target - run.received} pushes missing"
            if outcome == "done":
                emit({"done": time.monotonic(), "received": run.received})
            else:
                emit({"failed": outcome})
    finally:
        run.closing = True
        for subscriber in run.subscribers:
            subscriber.close()
        await asyncio.sleep(0.05)


def main() -> None:
    config = json.loads(sys.argv[1])
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    try:
        runner(serve(config))
    except Exception as exc:  # reported to the parent as an answer, not a traceback
        emit({"failed": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
