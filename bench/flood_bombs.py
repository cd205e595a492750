"""The malicious frames of the flood benchmark, and how one is sent and its answer judged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed

from bench.flood_client import IO_SECONDS, bounded, open_client
from bench.flood_targets import TARGET_BOMB_MS
from rohrpost import protocol

__all__ = ["BOMBS", "HEAVY_FRAMES", "Bomb", "bomb_summary", "detonate"]

#: Close codes docs/protocol.md documents for an oversized frame.
DOCUMENTED_BOMB_CLOSES = {1009: "the ASGI server refused a frame over its own maximum"}


@dataclass(frozen=True)
class Bomb:
    """One malicious frame and what it must be answered with.

    Attributes:
        name: What the frame is.
        build: Makes the frame (bombs are built when sent, not kept in memory).
        expected: The error code of the reply, or ``"pong"`` for a frame that is valid.
        deflate: Send it compressed (permessage-deflate), so the server inflates it.
    """

    name: str
    build: Callable[[], str]
    expected: str
    deflate: bool = False


BOMBS = (
    Bomb("2 MB of [", lambda: "[" * 2_000_000, protocol.TOO_LARGE),
    # Compressed, 2 MB of `[` is 2 KB on the wire: the server inflates it first.
    Bomb("2 MB of [, deflated", lambda: "[" * 2_000_000, protocol.TOO_LARGE, deflate=True),
    Bomb("100,000-deep nesting", lambda: "[" * 100_000 + "]" * 100_000, protocol.TOO_DEEP),
    Bomb(
        "5000-digit integer",
        lambda: '{"id":1,"type":"ping","data":' + "9" * 5000 + "}",
        protocol.INVALID_JSON,
    ),
    Bomb("NaN", lambda: '{"id":1,"type":"ping","data":NaN}', protocol.INVALID_JSON),
)
#: Valid frames under every limit that still cost the server a lot: a phase of their own.
HEAVY_FRAMES = (
    # The brackets in the string make the depth check scan the whole frame.
    Bomb(
        "ping, data a 250 KB string of [",
        lambda: '{"id":1,"type":"ping","data":"' + "[" * 250_000 + '"}',
        "pong",
    ),
)


async def detonate(url: str, bomb: Bomb) -> dict[str, Any]:
    """Send one bomb on a fresh connection; time its answer and check it."""
    frame = bomb.build()
    connection = await open_client(url, deflate=bomb.deflate)
    result: dict[str, Any] = {"bomb": bomb.name, "expected": bomb.expected}
    try:
        started = time.perf_counter()
        try:
            await bounded(connection.send(frame), f"sending {bomb.name}")
            text = await bounded(connection.recv(), f"the answer to {bomb.name}")
        except ConnectionClosed as closed:
            result["window"] = (started, time.perf_counter())
            code = None if closed.rcvd is None else closed.rcvd.code
            result["answer"] = f"close {code}"
            result["correct"] = code in DOCUMENTED_BOMB_CLOSES
            return result
        result["window"] = (started, time.perf_counter())
        reply = json.loads(text)
        result["answer"] = reply.get("code") or reply.get("type") or text[:100]
        result["correct"] = result["answer"] == bomb.expected
        # An error reply leaves the connection open: it must still answer.
        await bounded(connection.send('{"id":"after","type":"ping"}'), "ping after a bomb")
        after = json.loads(await bounded(connection.recv(), "the pong after a bomb"))
        result["open_after"] = after == {"id": "after", "type": "pong"}
        result["correct"] = result["correct"] and result["open_after"]
        if bomb.deflate:
            result["deflate_negotiated"] = bool(connection.protocol.extensions)
        return result
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), IO_SECONDS)


def bomb_summary(bombs: Sequence[Bomb], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per bomb: its answers, how fast they came and the pingers' worst round trip meanwhile."""
    summary: dict[str, Any] = {}
    for bomb in bombs:
        mine = [result for result in results if result["bomb"] == bomb.name]
        if not mine:
            continue
        slowest = max(result["ms"] for result in mine)
        others = [result["others_worst_ms"] for result in mine if result["others_worst_ms"]]
        summary[bomb.name] = {
            "answers": sorted({str(result["answer"]) for result in mine}),
            "expected": bomb.expected,
            "correct": all(result["correct"] for result in mine),
            "median_ms": statistics.median(result["ms"] for result in mine),
            "max_ms": slowest,
            "others_worst_ms": max(others, default=None),
            "target_ms": TARGET_BOMB_MS,
            "met": slowest <= TARGET_BOMB_MS,
        }
    return summary
