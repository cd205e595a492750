"""What Prometheus metrics cost a ping round trip: server CPU with them on against off.

Usage::

    python -m bench.metrics            # 60 rounds (about 20 s)
    python -m bench.metrics --quick    # 6 rounds

One uvicorn process (:mod:`bench.metrics_app`) serves rohrpost's two
consumers with ``ROHRPOST["METRICS"]`` switchable at run time. The method is
:mod:`bench`'s: connections kept open, batches of sequential pings on every
connection at once, the server's CPU clock read before and after each batch.
Each round runs four batches (each consumer with metrics off, then on, the
order rotated every round) so that noise falls on both alike; the report
gives the median server CPU per round trip and the ratio on / off.
``ping`` is an ``inline`` handler that sends its own pong: with metrics on a
round trip records one frame counter and one histogram observation.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from bench.__main__ import (
    Contender,
    free_port,
    reading_cost,
    rotated,
    start_server,
    stop_server,
    wait_until_ready,
)

#: Each consumer's path in :mod:`bench.metrics_app`.
CONSUMERS = {"AsyncRohrpost": "/async-rohrpost", "SyncRohrpost": "/sync-rohrpost"}
WARM_UP_ROUND_TRIPS = 50


class Switched(Contender):
    """A consumer measured with metrics on or off: the switch is set before each batch."""

    def __init__(self, name: str, ws_path: str, metrics_on: bool) -> None:
        super().__init__(f"{name} metrics {'on' if metrics_on else 'off'}", ws_path)
        self.metrics_on = metrics_on

    async def switch(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        path = "/metrics/on" if self.metrics_on else "/metrics/off"
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        response = await reader.read()
        writer.close()
        expected = b'{"metrics": true}' if self.metrics_on else b'{"metrics": false}'
        if not response.endswith(expected):
            raise RuntimeError(f"GET {path} answered {response[-100:]!r}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    contenders = [
        Switched(name, ws_path, on) for name, ws_path in CONSUMERS.items() for on in (False, True)
    ]
    port = free_port()
    server = start_server(port, "bench.metrics_app:application")
    try:
        await wait_until_ready(server, port)
        for contender in contenders:
            await contender.open(port, args.clients)
            await contender.switch(port)
            await contender.batch(WARM_UP_ROUND_TRIPS)
        overhead = await reading_cost(port)
        for round_number in range(args.rounds):
            for contender in rotated(list(contenders), round_number):
                assert isinstance(contender, Switched)
                await contender.switch(port)
                await contender.measured_batch(port, args.round_trips, overhead)
        for contender in contenders:
            await contender.close()
    finally:
        stop_server(server)
    medians = {c.name: statistics.median(c.result.us_per_round_trip) for c in contenders}
    ratios = {
        name: medians[f"{name} metrics on"] / medians[f"{name} metrics off"] for name in CONSUMERS
    }
    return {"median_us": medians, "ratio_on_off": ratios}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="6 rounds instead of 60")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 60; --quick 6)")
    parser.add_argument("--clients", type=int, default=8, help="connections per batch (8)")
    parser.add_argument("--round-trips", type=int, default=25, help="pings per connection (25)")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 6 if args.quick else 60
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = asyncio.run(run(args))
    print(f"Server CPU per ping round trip, median of {args.rounds} rounds:")
    for name, median in data["median_us"].items():
        print(f"  {name:<24} {median:8.1f} us")
    for name, ratio in data["ratio_on_off"].items():
        print(f"  {name}: metrics on / off = {ratio:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
