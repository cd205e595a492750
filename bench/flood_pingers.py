"""The flood benchmark's well-behaved clients, and the statistics of their round trips."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.flood_client import IO_SECONDS, WrongAnswer, bounded, open_client

__all__ = ["Pingers", "RoundTrip", "latency_summary", "worst_overlapping"]

#: One pinger round trip: when it started (``time.perf_counter()``) and how long it took (ms).
RoundTrip = tuple[float, float]


async def gather_or_cancel(steps: Sequence[Awaitable[Any]]) -> list[Any]:
    """Gather ``steps``; when one fails, cancel the others before raising."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def check_pong(text: Any, request_id: int) -> None:
    try:
        reply = json.loads(text)
    except (TypeError, ValueError):
        raise WrongAnswer(f"a pinger got a frame that is not JSON text: {text!r:.200}") from None
    if reply != {"id": request_id, "type": "pong"}:
        raise WrongAnswer(f"a pinger sent ping {request_id} and got {text!r:.200}")


class Pingers:
    """Well-behaved clients: one ping per interval each, waiting for every pong."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.connections: list[ClientConnection] = []
        self.next_id = 1

    async def open(self, url: str, count: int) -> None:
        for _ in range(count):
            self.connections.append(await open_client(url))

    async def close(self) -> None:
        for connection in self.connections:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), IO_SECONDS)
        self.connections = []

    async def run(self, rounds: int | None, stop: asyncio.Event | None = None) -> list[RoundTrip]:
        """Ping ``rounds`` times per connection (or until ``stop``, at least once).

        Returns:
            Every round trip, in the order they ended.
        """
        latencies: list[RoundTrip] = []
        steps = []
        for connection in self.connections:
            steps.append(self.ping_paced(connection, self.next_id, rounds, stop, latencies))
            self.next_id += 1_000_000  # the ids of one connection never meet another's
        await gather_or_cancel(steps)
        return latencies

    async def ping_paced(
        self,
        connection: ClientConnection,
        request_id: int,
        rounds: int | None,
        stop: asyncio.Event | None,
        latencies: list[RoundTrip],
    ) -> None:
        # A random phase, so that the pingers do not all send at the same instant.
        next_at = time.perf_counter() + random.uniform(0, self.interval)
        done = 0
        while not finished(done, rounds, stop):
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            started = time.perf_counter()
            try:
                await bounded(connection.send(f'{{"id":{request_id},"type":"ping"}}'), "ping")
                text = await bounded(connection.recv(), f"the pong to ping {request_id}")
            except ConnectionClosed as closed:
                raise WrongAnswer(f"a pinger's connection was closed: {closed}") from None
            latencies.append((started, (time.perf_counter() - started) * 1000))
            check_pong(text, request_id)
            request_id += 1
            done += 1
            # At most one ping per interval: a late round trip is not made up with a burst.
            next_at = max(next_at + self.interval, time.perf_counter())


def finished(done: int, rounds: int | None, stop: asyncio.Event | None) -> bool:
    """``rounds`` round trips done, or (without ``rounds``) ``stop`` set after at least one."""
    if rounds is not None:
        return done >= rounds
    return done > 0 and stop is not None and stop.is_set()


def latency_summary(round_trips: list[RoundTrip]) -> dict[str, Any]:
    latencies = [ms for _, ms in round_trips]
    cuts = (
        statistics.quantiles(latencies, n=100, method="inclusive")
        if len(latencies) > 1
        else latencies * 99
    )
    return {
        "samples": len(latencies),
        "p50_ms": cuts[49],
        "p99_ms": cuts[98],
        "max_ms": max(latencies),
    }


def worst_overlapping(round_trips: list[RoundTrip], start: float, end: float) -> float | None:
    """The slowest round trip that was under way at some point from ``start`` to ``end``."""
    overlapping = [ms for began, ms in round_trips if began <= end and began + ms / 1000 >= start]
    return max(overlapping, default=None)
