"""Measure the server CPU time of one ping round trip: rohrpost, plain Channels, bare ASGI.

Usage::

    python -m bench                  # the full run (under a minute on 2 cores)
    python -m bench --quick          # a smoke run (a few seconds)
    python -m bench --json out.json  # also write the results as JSON

One uvicorn server process (see :mod:`bench.app`) serves the six contenders;
this process is the client. For each contender it keeps ``--clients``
WebSocket connections open, and a batch is every connection doing
``--round-trips`` sequential ping / pong round trips at the same time. The
server's CPU clock is read over HTTP before and after each batch, so a batch
costs ``(after - before - reading cost) / round trips`` of server CPU per round
trip, where the reading cost is measured once at the start. Batches
are interleaved (one per contender per round, the order rotated every round)
so that noise on the machine falls on every contender alike, and the table
shows the median and the minimum over the rounds. Every reply is checked; a
contender that answers wrongly is reported and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

#: The contenders in report order, with the path :mod:`bench.app` serves each on
#: (its routes are the other half of this table).
CONTENDERS: dict[str, str] = {
    "AsyncRohrpost": "/async-rohrpost",
    "ChannelsAsyncJson": "/async-channels",
    "SyncRohrpost": "/sync-rohrpost",
    "SyncRohrpostThreaded": "/sync-rohrpost-threaded",
    "ChannelsSyncJson": "/sync-channels",
    # A handler that checks its data and builds its reply by hand, against the same
    # handler typed (pydantic validates the data, the returned model is encoded).
    "HandCheckedRohrpost": "/hand-checked-rohrpost",
    "TypedRohrpost": "/typed-rohrpost",
    "BareASGIEcho": "/bare-echo",
}

#: The reply ``type`` of contenders that answer by returning (the request's type).
REPLY_TYPES: dict[str, str] = {"HandCheckedRohrpost": "ping", "TypedRohrpost": "ping"}

#: (rohrpost contender, its baseline, the highest ratio that meets the target).
COMPARISONS: list[tuple[str, str, float]] = [
    ("AsyncRohrpost", "ChannelsAsyncJson", 1.0),
    ("SyncRohrpost", "ChannelsSyncJson", 1.0),
    # A plain sync handler, as 4.x applications write them: it runs in a worker thread.
    ("SyncRohrpostThreaded", "ChannelsSyncJson", 1.0),
    # The floor: a JSON echo on bare ASGI. What a ping costs above it is rohrpost's own.
    ("AsyncRohrpost", "BareASGIEcho", 1.1),
    ("SyncRohrpost", "BareASGIEcho", 1.1),
    # A typed handler costs at most 1.2x the same handler written by hand.
    ("TypedRohrpost", "HandCheckedRohrpost", 1.2),
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 30.0
BATCH_TIMEOUT = 120.0
WARM_UP_ROUND_TRIPS = 50


class WrongReply(Exception):
    """A contender answered a ping with something other than the expected pong."""


@dataclass
class Result:
    """What was measured for one contender."""

    name: str
    us_per_round_trip: list[float] = field(default_factory=list)
    round_trips_per_second: list[float] = field(default_factory=list)
    failure: str | None = None

    def summary(self) -> dict[str, Any]:
        samples = self.us_per_round_trip
        return {
            "us_server_cpu_per_round_trip": samples,
            "median_us": statistics.median(samples) if samples else None,
            "min_us": min(samples) if samples else None,
            "max_us": max(samples) if samples else None,
            "round_trips_per_second": self.round_trips_per_second,
            "round_trips_per_second_median": (
                statistics.median(self.round_trips_per_second)
                if self.round_trips_per_second
                else None
            ),
            "failure": self.failure,
        }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Server CPU per ping round trip: rohrpost consumers against plain Channels "
            "and a bare ASGI echo."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 10 rounds of 8 x 25 round trips"
    )
    parser.add_argument("--rounds", type=int, help="timed rounds (default 120; --quick 10)")
    parser.add_argument(
        "--clients", type=int, default=8, help="concurrent connections per contender (default 8)"
    )
    parser.add_argument(
        "--round-trips",
        type=int,
        help="sequential round trips per connection per batch (default 25)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(CONTENDERS),
        help="measure only this contender (repeatable; handy under a profiler)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--skip-changefeed",
        action="store_true",
        help="do not run the change-feed benchmark (python -m bench.changefeed) afterwards",
    )
    parser.add_argument(
        "--skip-flood",
        action="store_true",
        help="do not run the flood benchmark (python -m bench.flood) afterwards",
    )
    parser.add_argument(
        "--skip-fanout",
        action="store_true",
        help="do not run the fan-out benchmark (python -m bench.fanout) afterwards",
    )
    parser.add_argument(
        "--skip-sync-pool",
        action="store_true",
        help="do not run the sync handler pool benchmark (python -m bench.sync_pool) afterwards",
    )
    parser.add_argument(
        "--skip-history",
        action="store_true",
        help="do not run the history benchmark (python -m bench.history) afterwards",
    )
    parser.add_argument(
        "--skip-history-js",
        action="store_true",
        help=(
            "do not run the JS client's resume benchmark (python -m bench.history_js) afterwards"
        ),
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 10 if args.quick else 120
    if args.round_trips is None:
        args.round_trips = 25
    if min(args.rounds, args.clients, args.round_trips) < 1:
        parser.error("--rounds, --clients and --round-trips must be at least 1")
    return args


# --- the server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    port: int,
    app: str = "bench.app:application",
    env: dict[str, str] | None = None,
    log: Any = None,
) -> subprocess.Popen[bytes]:
    """Start ``uvicorn app`` on 127.0.0.1:``port``, one worker.

    ``env`` adds environment variables; ``log`` (a file) takes the server's
    stderr instead of the terminal.
    """
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--app-dir",
        str(REPO_ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=os.environ | (env or {}), stderr=log)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGINT)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def server_info(port: int) -> dict[str, Any]:
    """Fetch ``GET /cpu``: the server's CPU clock and a few facts about it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /cpu HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        response = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET /cpu failed: {head[:100]!r}")
    info: dict[str, Any] = json.loads(body)
    return info


async def server_cpu(port: int) -> float:
    return float((await server_info(port))["process_time"])


async def wait_until_ready(server: subprocess.Popen[bytes], port: int) -> dict[str, Any]:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        try:
            return await server_info(port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start listening in time") from None
            await asyncio.sleep(0.05)


async def reading_cost(port: int, samples: int = 21) -> float:
    """The server CPU one clock reading costs: the median gap between back-to-back readings.

    A batch's two readings add exactly one such gap (the end of the first
    request and the start of the second), which is subtracted from it.
    """
    gaps = []
    previous = await server_cpu(port)
    for _ in range(samples):
        current = await server_cpu(port)
        gaps.append(current - previous)
        previous = current
    return statistics.median(gaps)


def proc_cpu_seconds(pid: int) -> float | None:
    """The process's user + system time from ``/proc`` (10 ms granularity), if readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the clients ------------------------------------------------------------------


def ping_data(seq: int) -> dict[str, Any]:
    """A small payload, different for every request so a stale reply cannot pass."""
    return {"seq": seq, "text": "hello", "flags": [True, False], "ratio": 0.5}


async def ping_sequentially(
    connection: ClientConnection, first_id: int, count: int, reply_type: str = "pong"
) -> None:
    """Do ``count`` round trips on one connection, checking every reply."""
    for request_id in range(first_id, first_id + count):
        data = ping_data(request_id)
        await connection.send(json.dumps({"id": request_id, "type": "ping", "data": data}))
        text = await connection.recv()
        try:
            reply = json.loads(text)
        except (TypeError, ValueError):
            raise WrongReply(f"not JSON text: {text[:200]!r}") from None
        expected = {"id": request_id, "type": reply_type, "data": data}
        if reply != expected:
            raise WrongReply(f"expected {expected!r}, got {str(text)[:200]!r}")


class Contender:
    """One contender's open connections and results."""

    def __init__(self, name: str, ws_path: str) -> None:
        self.name = name
        self.ws_path = ws_path
        self.connections: list[ClientConnection] = []
        self.result = Result(name)
        self.next_id = 1
        self.reply_type = REPLY_TYPES.get(name, "pong")

    async def open(self, port: int, clients: int) -> None:
        url = f"ws://127.0.0.1:{port}{self.ws_path}"
        for _ in range(clients):
            # No compression and no keepalive pings: only the protocol work is measured.
            self.connections.append(await connect(url, compression=None, ping_interval=None))

    async def close(self) -> None:
        for connection in self.connections:
            with contextlib.suppress(Exception):
                await connection.close()
        self.connections = []

    async def batch(self, round_trips: int) -> None:
        """Every connection does ``round_trips`` sequential round trips, all at once."""
        tasks = []
        for connection in self.connections:
            tasks.append(ping_sequentially(connection, self.next_id, round_trips, self.reply_type))
            self.next_id += round_trips
        await asyncio.wait_for(asyncio.gather(*tasks), BATCH_TIMEOUT)

    async def measured_batch(self, port: int, round_trips: int, overhead: float) -> None:
        total = round_trips * len(self.connections)
        cpu_before = await server_cpu(port)
        wall_before = time.perf_counter()
        await self.batch(round_trips)
        wall = time.perf_counter() - wall_before
        cpu = await server_cpu(port) - cpu_before - overhead
        self.result.us_per_round_trip.append(cpu / total * 1e6)
        self.result.round_trips_per_second.append(total / wall)

    async def run_guarded(self, step: Coroutine[Any, Any, None]) -> None:
        """Run ``step``; an error marks the contender failed instead of ending the run."""
        if self.result.failure is not None:
            step.close()  # a failed contender is not measured any more
            return
        try:
            await step
        except Exception as exc:  # any failure of a contender is a result, not a crash
            self.result.failure = f"{type(exc).__name__}: {exc}"
            await self.close()


def rotated(items: list[Contender], shift: int) -> Iterator[Contender]:
    shift %= len(items)
    yield from items[shift:] + items[:shift]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    names = args.only or list(CONTENDERS)
    contenders = [Contender(name, CONTENDERS[name]) for name in CONTENDERS if name in names]
    port = free_port()
    server = start_server(port)
    try:
        info = await wait_until_ready(server, port)
        for contender in contenders:
            await contender.run_guarded(contender.open(port, args.clients))
        # Warm-up: thread pools, caches and code paths, not measured.
        for contender in contenders:
            await contender.run_guarded(contender.batch(WARM_UP_ROUND_TRIPS))
        overhead = await reading_cost(port)
        proc_before = proc_cpu_seconds(server.pid)
        started = time.perf_counter()
        for round_number in range(args.rounds):
            for contender in rotated(contenders, round_number):
                await contender.run_guarded(
                    contender.measured_batch(port, args.round_trips, overhead)
                )
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with code {server.returncode}")
        elapsed = time.perf_counter() - started
        proc_after = proc_cpu_seconds(server.pid)
        for contender in contenders:
            await contender.close()
    finally:
        stop_server(server)
    return report_data(args, info, contenders, elapsed, overhead, proc_before, proc_after)


# --- the report ------------------------------------------------------------------


def report_data(
    args: argparse.Namespace,
    info: dict[str, Any],
    contenders: list[Contender],
    elapsed: float,
    overhead: float,
    proc_before: float | None,
    proc_after: float | None,
) -> dict[str, Any]:
    results = {c.name: c.result.summary() for c in contenders}
    ratios: dict[str, dict[str, Any] | None] = {}
    for name, baseline, target in COMPARISONS:
        if name not in results or baseline not in results:
            continue
        mine, theirs = results[name], results[baseline]
        if mine["median_us"] is None or theirs["median_us"] is None:
            ratios[f"{name}/{baseline}"] = None  # a side failed: no ratio
            continue
        # Batches of one round ran back to back: their ratio is paired, noise mostly cancels.
        paired = [
            a / b
            for a, b in zip(
                mine["us_server_cpu_per_round_trip"],
                theirs["us_server_cpu_per_round_trip"],
                strict=True,
            )
        ]
        ratio = mine["median_us"] / theirs["median_us"]
        quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
        ratios[f"{name}/{baseline}"] = {
            "ratio_of_medians": ratio,
            "median_of_paired_ratios": statistics.median(paired),
            "paired_ratio_quartiles": [quartiles[0], quartiles[2]],
            "target": target,
            "met": ratio <= target,
        }
    measured_cpu = sum(
        sum(c.result.us_per_round_trip) * args.round_trips * args.clients / 1e6 for c in contenders
    )
    return {
        "rohrpost_json_codec": info["codec"],
        "server": {
            "uvicorn": info.get("uvicorn"),
            "loop": info.get("loop"),
            "websocket_protocol": info.get("ws"),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "config": {
            "rounds": args.rounds,
            "clients": args.clients,
            "round_trips_per_client_per_batch": args.round_trips,
            "round_trips_per_contender": args.rounds * args.clients * args.round_trips,
        },
        "elapsed_seconds": elapsed,
        "clock_reading_cost_us": overhead * 1e6,
        "server_cpu_seconds_in_batches": measured_cpu,
        "server_cpu_seconds_in_rounds_from_proc": (
            None if proc_before is None or proc_after is None else proc_after - proc_before
        ),
        "contenders": results,
        "ratios": ratios,
    }


def print_report(data: dict[str, Any]) -> None:
    config, server = data["config"], data["server"]
    print(
        f"rohrpost JSON codec: {data['rohrpost_json_codec']}   "
        f"server: uvicorn {server['uvicorn']}, {server['loop']} loop, "
        f"{server['websocket_protocol']}, Python {server['python']}, {server['cpu_count']} CPUs"
    )
    print(
        f"{config['rounds']} rounds x {config['clients']} clients x "
        f"{config['round_trips_per_client_per_batch']} round trips = "
        f"{config['round_trips_per_contender']} round trips per contender, "
        f"interleaved, in {data['elapsed_seconds']:.1f} s "
        f"(one server clock reading costs {data['clock_reading_cost_us']:.0f} µs, subtracted)"
    )
    print()
    print(
        f"{'contender':<22}{'server CPU µs/round trip':>26}{'min':>9}{'max':>9}"
        f"{'round trips/s':>16}"
    )
    for name, result in data["contenders"].items():
        if result["failure"] is not None:
            print(f"{name:<22}  FAILED: {result['failure']}")
            continue
        print(
            f"{name:<22}{result['median_us']:>26.1f}{result['min_us']:>9.1f}"
            f"{result['max_us']:>9.1f}{result['round_trips_per_second_median']:>16.0f}"
        )
    if data["ratios"]:
        print()
        print(
            f"{'ratio':<40}{'of medians':>11}{'paired median':>15}"
            f"{'paired IQR':>15}{'target':>9}   verdict"
        )
        for label, ratio in data["ratios"].items():
            if ratio is None:
                print(f"{label:<40}{'n/a (a contender failed)':>26}")
                continue
            verdict = "met" if ratio["met"] else "MISSED"
            low, high = ratio["paired_ratio_quartiles"]
            target = f"<= {ratio['target']:.1f}x"
            print(
                f"{label:<40}{ratio['ratio_of_medians']:>10.3f}x"
                f"{ratio['median_of_paired_ratios']:>14.3f}x"
                f"{f'{low:.2f}-{high:.2f}x':>15}{target:>9}   {verdict}"
            )
    from_proc = data["server_cpu_seconds_in_rounds_from_proc"]
    if from_proc is not None:
        print()
        print(
            f"check: {data['server_cpu_seconds_in_batches']:.2f} s server CPU in the timed "
            f"batches, {from_proc:.2f} s in the timed rounds by /proc/<pid>/stat "
            "(which adds the clock readings)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = asyncio.run(run(args))
    print_report(data)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    failed = [name for name, result in data["contenders"].items() if result["failure"]]
    code = 1 if failed else 0
    if not args.skip_changefeed:
        from bench import changefeed

        print()
        code = changefeed.main(["--quick"] if args.quick else []) or code
    if not args.skip_flood:
        from bench import flood

        print()
        code = flood.main(["--quick"] if args.quick else []) or code
    if not args.skip_fanout:
        from bench import fanout

        print()
        code = fanout.main(["--quick"] if args.quick else []) or code
    if not args.skip_sync_pool:
        from bench import sync_pool

        print()
        code = sync_pool.main(["--quick"] if args.quick else []) or code
    if not args.skip_history:
        from bench import history

        print()
        code = history.main(["--quick"] if args.quick else []) or code
    if not args.skip_history_js:
        from bench import history_js

        print()
        code = history_js.main(["--quick"] if args.quick else []) or code
    return code


if __name__ == "__main__":
    sys.exit(main())
