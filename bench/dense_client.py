"""The dense-frame client of the flood benchmark, a process of its own.

Usage (started by :mod:`bench.flood`, not by hand)::

    python -m bench.dense_client URL [--rate R] [--max-seconds S] [--nice N]

Over one connection it sends bracket-dense frames just under rohrpost's
default ``MAX_FRAME_BYTES``, cycling through :data:`DENSE_FRAMES`, at ``--rate``
frames per second (default :data:`DENSE_RATE`, a fifth of the default
``RATE_LIMIT``), until its stdin closes (or ``--max-seconds`` pass). Every
answer is checked against the frame it answers. When told to stop it waits
for the answers still due, then prints its statistics as one line of JSON.
Like :mod:`bench.flooder` it prints ``flooding`` once its connection is open,
runs apart from the pingers and at the niceness ``--nice``; a server close
is counted and the connection opened again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.protocol import State

from bench.flood_client import IO_SECONDS, open_client
from bench.flooder import until_stdin_closes
from rohrpost import conf, protocol
from rohrpost.limits import CLOSE_FLOODING, FrameGate

__all__ = ["DENSE_FRAMES", "DENSE_RATE", "DenseFrame", "dense_misbehaviour", "main", "send_dense"]

#: Frames per second: a fifth of the default ``RATE_LIMIT``, far from its refusals.
DENSE_RATE: float = conf.DEFAULTS["RATE_LIMIT"]["RATE"] / 5
#: Every frame's length: just under the default ``MAX_FRAME_BYTES`` (256 KiB),
#: with room for the id's digits.
DENSE_FRAME_CHARS: int = conf.DEFAULTS["MAX_FRAME_BYTES"] - 64
#: The dense client's own loopback address: not the pingers' (127.0.0.1), not
#: the flooder's (127.0.0.2, refused for ``FLOOD_COOLDOWN`` after its close).
DENSE_ADDRESS = "127.0.0.3"


@dataclass(frozen=True)
class DenseFrame:
    """One kind of dense frame and the answer it must get when it is not refused.

    Attributes:
        name: What the frame is.
        build: Makes the frame for a request id (kinds without an id ignore it).
        expected: ``"pong"``, or the error code of the reply.
        echoes_id: The answer carries the frame's id.
        echo: What a ``pong`` must carry as its ``data`` (the ping's data, wrapped).
    """

    name: str
    build: Callable[[int], str]
    expected: str
    echoes_id: bool
    echo: Any = None


_PING_HEAD = '{{"id":{},"type":"ping","data":['
#: Room for the longest head a frame gets (its id stays far below 16 digits).
_HEAD_ROOM = len(_PING_HEAD.format(10**15))


def _fill(unit: str, tail: str, room: int = _HEAD_ROOM) -> str:
    """``unit`` as often as fits in :data:`DENSE_FRAME_CHARS` after ``room``, then ``tail``."""
    return unit * ((DENSE_FRAME_CHARS - room - len(tail)) // len(unit)) + tail


# A ping whose data is ~87,000 empty arrays: valid, and before MAX_CONTAINERS
# decoded in full (about 10 ms) and echoed in a pong. Now refused by its count.
_PING_BODY = _fill("[],", "[]]}")
_PING_ECHO = {"data": json.loads("[" + _PING_BODY.removesuffix("}"))}
# Valid JSON, not an object: before MAX_CONTAINERS decoded in full before it
# could be refused; now refused by its count, with no id to echo.
_ARRAY = "[" + _fill("[],", "[]]", room=1)
# 4,159 arrays each nested to 33 levels (object, data, 31 more): one level too
# deep, many times over. It opens with a shallow `[]` so that no leading run of
# brackets gives the depth away: without the container cap, the depth check
# would have to peel every level.
_DEEP_BODY = "[]," + _fill("[" * 31 + "]" * 31 + ",", "[]]}", room=_HEAD_ROOM + 3)

DENSE_FRAMES = (
    DenseFrame(
        "ping, data [[],[],...]",
        lambda n: _PING_HEAD.format(n) + _PING_BODY,
        protocol.TOO_COMPLEX,
        True,
        echo=_PING_ECHO,
    ),
    DenseFrame("[[],[],...], not an object", lambda _: _ARRAY, protocol.TOO_COMPLEX, False),
    DenseFrame(
        "ping, data 4,159 arrays 33 deep",
        lambda n: _PING_HEAD.format(n) + _DEEP_BODY,
        protocol.TOO_COMPLEX,
        True,
    ),
)


@dataclass
class DenseStats:
    """What the dense client sent and got back, over all its connections."""

    sent: dict[str, int] = field(default_factory=lambda: {f.name: 0 for f in DENSE_FRAMES})
    bytes_sent: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    answer_ms: list[float] = field(default_factory=list)
    connections: int = 0
    connect_failures: int = 0
    server_closes: dict[str, int] = field(default_factory=dict)
    abnormal_closes: int = 0
    #: Frames sent on a connection the server closed before answering them.
    dropped_by_close: int = 0
    #: Frames still without an answer when the client stopped.
    unanswered: int = 0
    wrong_replies: int = 0
    wrong_reply_example: str = ""

    def count(self, answer: str) -> None:
        self.answers[answer] = self.answers.get(answer, 0) + 1

    def summary(self, seconds: float) -> dict[str, Any]:
        frames = sum(self.sent.values())
        times = sorted(self.answer_ms)
        return {
            "rate_target": DENSE_RATE,
            "frames_sent": frames,
            "frames_by_kind": self.sent,
            "bytes_sent": self.bytes_sent,
            "seconds": seconds,
            "rate": frames / seconds if seconds else 0.0,
            "answers": self.answers,
            "answer_median_ms": statistics.median(times) if times else None,
            "answer_max_ms": times[-1] if times else None,
            "connections": self.connections,
            "connect_failures": self.connect_failures,
            "server_closes": self.server_closes,
            "abnormal_closes": self.abnormal_closes,
            "dropped_by_close": self.dropped_by_close,
            "unanswered": self.unanswered,
            "wrong_replies": self.wrong_replies,
            "wrong_reply_example": self.wrong_reply_example,
        }


class DenseConnection:
    """One connection of the dense client: what it sent and how each answer matched."""

    def __init__(self, connection: ClientConnection, stats: DenseStats) -> None:
        self.connection = connection
        self.stats = stats
        self.sent = 0
        self.answered = 0
        self.closed_by_server = False
        #: The frames whose answer carries their id, by id, and when they were sent.
        self.awaiting: dict[int, tuple[DenseFrame, float]] = {}

    async def send(self, frame: DenseFrame, request_id: int) -> None:
        text = frame.build(request_id)
        if frame.echoes_id:
            self.awaiting[request_id] = (frame, time.perf_counter())
        await self.connection.send(text)
        self.sent += 1
        self.stats.sent[frame.name] += 1
        self.stats.bytes_sent += len(text)

    async def read_answers(self) -> None:
        """Match every answer until the connection closes; count closes and wrong answers."""
        while True:
            try:
                text = await self.connection.recv()
            except ConnectionClosed as closed:
                if closed.rcvd is None:
                    self.stats.abnormal_closes += 1
                elif closed.rcvd_then_sent:  # the server closed; else it answered our close
                    self.closed_by_server = True
                    code = str(closed.rcvd.code)
                    self.stats.server_closes[code] = self.stats.server_closes.get(code, 0) + 1
                return
            self.answered += 1
            answer = self.judge(text)
            if answer is None:
                self.stats.wrong_replies += 1
                self.stats.wrong_reply_example = repr(text)[:200]
            else:
                self.stats.count(answer)

    def judge(self, text: str | bytes) -> str | None:
        """The kind of a right answer (``pong``, an error code), or ``None`` for a wrong one."""
        if text == FrameGate.refusal:
            return protocol.RATE_LIMITED
        try:
            reply = json.loads(text)
        except ValueError:
            return None
        if not isinstance(reply, dict):
            return None
        if "id" not in reply:
            # Only the frame that is not an object has no id to echo.
            bare = next(frame for frame in DENSE_FRAMES if not frame.echoes_id)
            return bare.expected if reply.get("code") == bare.expected else None
        request_id = reply["id"]
        if type(request_id) is not int or request_id not in self.awaiting:
            return None
        frame, sent_at = self.awaiting.pop(request_id)
        if frame.expected == "pong":
            right = reply == {"id": request_id, "type": "pong", "data": frame.echo}
        else:
            right = reply.get("code") == frame.expected and reply.get("type") == "ping"
        if right:
            self.stats.answer_ms.append((time.perf_counter() - sent_at) * 1000)
        return frame.expected if right else None

    async def settle(self) -> None:
        """Wait (bounded) for the answers still due, close, and count what never came."""
        deadline = time.monotonic() + IO_SECONDS
        while self.answered < self.sent and not self.closed_by_server:
            if time.monotonic() > deadline or self.connection.state is State.CLOSED:
                break
            await asyncio.sleep(0.01)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), IO_SECONDS)
        missing = self.sent - self.answered
        if self.closed_by_server:
            self.stats.dropped_by_close += missing
        else:
            self.stats.unanswered += missing


async def send_dense(url: str, rate: float, max_seconds: float) -> dict[str, Any]:
    """Send dense frames to ``url`` at ``rate`` per second until stdin closes; return the stats."""
    stats = DenseStats()
    stop = asyncio.Event()
    watcher = asyncio.create_task(until_stdin_closes(stop))
    started = time.monotonic()
    deadline = started + max_seconds
    request_id = 0
    next_at = time.perf_counter()
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            connection = DenseConnection(await open_client(url, source=DENSE_ADDRESS), stats)
        except (OSError, InvalidHandshake, asyncio.TimeoutError):
            stats.connect_failures += 1
            await asyncio.sleep(0.1)
            continue
        if stats.connections == 0:
            print("flooding", flush=True)
        stats.connections += 1
        reader = asyncio.create_task(connection.read_answers())
        try:
            while not stop.is_set() and time.monotonic() < deadline and not reader.done():
                frame = DENSE_FRAMES[request_id % len(DENSE_FRAMES)]
                await connection.send(frame, request_id)
                request_id += 1
                # A steady pace; a late frame is not made up with a burst.
                next_at = max(next_at + 1 / rate, time.perf_counter())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), next_at - time.perf_counter())
        except ConnectionClosed:
            pass  # closed by the server: the reader counts how
        await connection.settle()
        await asyncio.wait_for(reader, IO_SECONDS)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    return stats.summary(time.monotonic() - started)


def dense_misbehaviour(stats: dict[str, Any]) -> list[str]:
    """What the server did wrong to the dense client (an empty list when nothing)."""
    problems = []
    if stats["wrong_replies"]:
        problems.append(
            f"the dense client got {stats['wrong_replies']} wrong replies, e.g. "
            f"{stats['wrong_reply_example']}"
        )
    if stats["unanswered"]:
        problems.append(f"{stats['unanswered']} dense frames were never answered")
    others = {code: n for code, n in stats["server_closes"].items() if code != str(CLOSE_FLOODING)}
    if others or stats["abnormal_closes"]:
        problems.append(
            f"dense client closes other than {CLOSE_FLOODING}: {others}, "
            f"{stats['abnormal_closes']} without a close frame"
        )
    return problems


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dense_client",
        description="The flood benchmark's dense-frame client (started by python -m bench.flood).",
    )
    parser.add_argument("url", metavar="URL", help="the WebSocket URL to send to")
    parser.add_argument(
        "--rate", type=float, default=DENSE_RATE, help=f"frames per second (default {DENSE_RATE:g})"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="stop after this long (default 60)"
    )
    parser.add_argument("--nice", type=int, default=0, help="niceness increment (default 0)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A `kill` ends the client like Ctrl-C does: quietly, without the statistics.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.nice(args.nice)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches the whole process group
        stats = asyncio.run(send_dense(args.url, args.rate, args.max_seconds))
        print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
