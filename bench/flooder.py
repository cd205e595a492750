"""The flooding client of the flood benchmark, a process of its own.

Usage (started by :mod:`bench.flood`, not by hand)::

    python -m bench.flooder URL [--max-seconds S] [--nice N]

It sends pings to ``URL`` as fast as it can without waiting for the answers,
and reconnects as soon as the server closes it, until its stdin closes (or
``--max-seconds`` pass). It prints ``flooding`` once the first connection is
open and, at the end, its statistics as one line of JSON. It runs apart from
the pingers so that its sending loop does not stall their event loop, at the
niceness ``--nice`` so that it does not take the server's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.flood_client import IO_SECONDS, open_client
from bench.flood_server import REPO_ROOT, SERVER_START_SECONDS
from rohrpost.limits import FrameGate

__all__ = ["Flooder", "flood", "main"]

#: The flooder yields to its own event loop this often, so that it reads its replies.
FLOOD_YIELD_EVERY = 64
#: The answer to one of the flooder's pings, ``{"id":<n>,"type":"pong"}``, as the server writes it.
PONG = re.compile(r'\{"id":[0-9]+,"type":"pong"\}')

#: The flooder's own loopback address (all of 127/8 is loopback on Linux). The
#: server refuses a flood-closed address for ROHRPOST["FLOOD_COOLDOWN"]; from
#: 127.0.0.1 that would refuse the pingers' and bombers' connections too, as
#: it would for clients sharing a NAT address with a flooder.
FLOODER_ADDRESS = "127.0.0.2"


async def until_stdin_closes(stop: asyncio.Event) -> None:
    """Set ``stop`` when the parent closes our stdin (or dies)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        await reader.read()
    finally:
        transport.close()
        stop.set()


async def read_flood_replies(connection: ClientConnection, stats: dict[str, Any]) -> None:
    """Count the replies to the flood until the connection closes; note any wrong one."""
    while True:
        try:
            text = await connection.recv()
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                stats["abnormal_closes"] += 1
            elif closed.rcvd_then_sent:  # the server closed; else it answered our close
                code = str(closed.rcvd.code)
                stats["server_closes"][code] = stats["server_closes"].get(code, 0) + 1
            return
        if text == FrameGate.refusal:
            stats["refusals"] += 1
        elif PONG.fullmatch(str(text)):
            stats["pongs"] += 1
        else:
            stats["wrong_replies"] += 1
            stats["wrong_reply_example"] = repr(text)[:200]


async def flood_one_connection(
    connection: ClientConnection, stats: dict[str, Any], stop: asyncio.Event, deadline: float
) -> None:
    reader = asyncio.create_task(read_flood_replies(connection, stats))
    sent = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            await connection.send(f'{{"id":{sent},"type":"ping"}}')
            sent += 1
            if sent % FLOOD_YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let the reader see the replies and the close
    except ConnectionClosed:
        pass  # closed by the server: the reader counts how
    finally:
        stats["frames_sent"] += sent
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), IO_SECONDS)
    await asyncio.wait_for(reader, IO_SECONDS)


async def flood(url: str, max_seconds: float) -> dict[str, Any]:
    """Flood ``url`` over and over until stdin closes; return what happened."""
    stats: dict[str, Any] = {
        "frames_sent": 0,
        "connections": 0,
        "connect_failures": 0,
        "server_closes": {},
        "abnormal_closes": 0,
        "pongs": 0,
        "refusals": 0,
        "wrong_replies": 0,
    }
    stop = asyncio.Event()
    watcher = asyncio.create_task(until_stdin_closes(stop))
    started = time.monotonic()
    deadline = started + max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            connection = await open_client(url, source=FLOODER_ADDRESS)
        except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
            stats["connect_failures"] += 1
            stats["connect_failure_example"] = repr(exc)[:200]
            await asyncio.sleep(0.01)
            continue
        if stats["connections"] == 0:
            print("flooding", flush=True)
        stats["connections"] += 1
        await flood_one_connection(connection, stats, stop, deadline)
    stats["seconds"] = time.monotonic() - started
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    return stats


class Flooder:
    """The flooding process, seen from the benchmark.

    Args:
        url: The WebSocket URL to flood.
        max_seconds: The process stops by itself after this long.
        nice: Its niceness increment.
        module: The client it runs: this module, or another one with the same
            command line, ready line and statistics line (:mod:`bench.dense_client`).
    """

    def __init__(
        self, url: str, max_seconds: float, nice: int, module: str = "bench.flooder"
    ) -> None:
        self.url = url
        self.max_seconds = max_seconds
        self.nice = nice
        self.module = module
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        command = [sys.executable, "-m", self.module, self.url]
        command += ["--max-seconds", str(self.max_seconds), "--nice", str(self.nice)]
        self.process = await asyncio.create_subprocess_exec(
            *command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), SERVER_START_SECONDS)
        if line.strip() != b"flooding":
            raise RuntimeError(f"{self.module} did not start flooding: {line!r:.200}")

    async def stop(self) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.close()
        output, _ = await asyncio.wait_for(self.process.communicate(), 2 * IO_SECONDS + 5)
        stats: dict[str, Any] = json.loads(output)
        return stats

    async def kill(self) -> None:
        """Make sure the process is gone (after :meth:`stop`, or instead of it)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flooder",
        description="The flood benchmark's flooding client (started by python -m bench.flood).",
    )
    parser.add_argument("url", metavar="URL", help="the WebSocket URL to flood")
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="stop after this long (default 60)"
    )
    parser.add_argument("--nice", type=int, default=0, help="niceness increment (default 0)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A `kill` ends the flood like Ctrl-C does: quietly, without the statistics.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.nice(args.nice)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches the whole process group
        print(json.dumps(asyncio.run(flood(args.url, args.max_seconds))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
