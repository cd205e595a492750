"""Measure sync handlers under load: Channels' one shared thread against ``SYNC_THREADS``.

Usage::

    python -m bench.sync_pool                  # the full run (about two minutes)
    python -m bench.sync_pool --quick          # a smoke run (about half a minute)
    python -m bench.sync_pool --json out.json  # also write the results as JSON
    python -m bench.sync_pool --threads 8      # the pool's size (default 16)

Each workload starts two uvicorn servers (:mod:`bench.sync_pool_app`), one
with ``SYNC_THREADS = 1`` and one with the pool, measured in turn; their one
handler is a plain sync function doing one database query. 50 **busy**
connections each send a request, wait for its reply and send the next, as
fast as the server answers; one more connection, the **probe**, does the same
and times each of its round trips: how long another client waits while the
server is busy. After a warm-up, the replies of the busy connections in the
measured window give the calls per second; the median of the probe's round
trips that overlap the window is its p50. Every reply is checked (id and
value), so a server that answers wrongly fails the run instead of looking fast.

Workloads (each with ``SYNC_THREADS = 1``, today's behaviour, then with the
pool, back to back, for each consumer):

- ``pg-2ms``: PostgreSQL, ``SELECT 1 FROM pg_sleep(0.002)``: a short query the
  database needs 2 ms to answer (a lookup on a busy or remote server);
- ``pg-select1``: PostgreSQL, ``SELECT 1``: the round trip to a local
  database and nothing else, the least a pool can win;
- ``sqlite``: a SQLite file, a count over 20,000 rows (about 1 ms; SQLite lets
  other threads run while it reads).

Database connections are kept between calls (``CONN_MAX_AGE = 60``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.__main__ import free_port, start_server, stop_server, wait_until_ready

WORKLOADS: dict[str, tuple[str, str]] = {
    "pg-2ms": ("postgres", "SELECT 1 FROM pg_sleep(0.002)"),
    "pg-select1": ("postgres", "SELECT 1"),
    "sqlite": ("sqlite", "SELECT count(*) > 0 FROM bench_rows WHERE value % 7 = 3"),
}
CONSUMERS = ("sync", "async")
#: The workload the targets are about, and the targets (pool against one thread).
TARGET_WORKLOAD = "pg-2ms"
CALLS_TARGET = 3.0
P50_TARGET = 1 / 3
#: Seconds any one reply may take before the run counts as failed.
REPLY_TIMEOUT = 30.0
PGDATABASE = os.environ.get("ROHRPOST_BENCH_PGDATABASE", "rohrpost_bench")


class WrongReply(Exception):
    """The server answered a request with something else than the query's value."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync_pool",
        description="Calls/s and another client's p50 with 50 busy connections: "
        "sync handlers in one thread against a pool.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: one round of 1.5 s windows"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; --quick 1)")
    parser.add_argument("--threads", type=int, default=16, help="pool size (default 16)")
    parser.add_argument("--busy", type=int, default=50, help="busy connections (default 50)")
    parser.add_argument("--seconds", type=float, help="measured window (default 3; --quick 1.5)")
    parser.add_argument(
        "--workload", action="append", choices=list(WORKLOADS), help="only this (repeatable)"
    )
    parser.add_argument(
        "--consumer", action="append", choices=CONSUMERS, help="only this (repeatable)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 1.5 if args.quick else 3.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.workload = args.workload or list(WORKLOADS)
    args.consumer = args.consumer or (["sync"] if args.quick else list(CONSUMERS))
    if args.threads < 2 or args.busy < 1 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--threads must be at least 2, --busy and --rounds at least 1, --seconds > 0")
    return args


# --- one run: a fresh server, busy connections and a probe -------------------------------


@dataclass
class RunResult:
    calls_per_second: float
    probe_p50_ms: float
    probe_p90_ms: float
    probe_calls: int


class Caller:
    """One connection that sends ``query`` requests back to back and checks each reply."""

    def __init__(self, connection: ClientConnection, expected: Any) -> None:
        self.connection = connection
        self.expected = expected
        self.next_id = 1
        self.replies = 0

    async def call(self) -> None:
        request_id = self.next_id
        self.next_id += 1
        await self.connection.send(json.dumps({"id": request_id, "type": "query"}))
        text = await asyncio.wait_for(self.connection.recv(), REPLY_TIMEOUT)
        reply = json.loads(text)
        if reply != {"id": request_id, "type": "query", "data": self.expected}:
            raise WrongReply(f"expected the value {self.expected!r}, got {str(text)[:200]}")
        self.replies += 1


async def keep_busy(caller: Caller, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await caller.call()


async def probe(caller: Caller, stop: asyncio.Event) -> list[tuple[float, float]]:
    """Round trips one after the other; returns when each started and ended."""
    spans = []
    while not stop.is_set():
        started = time.perf_counter()
        await caller.call()
        spans.append((started, time.perf_counter()))
    return spans


async def measure(url: str, args: argparse.Namespace, expected: Any) -> RunResult:
    connections = [
        await connect(url, compression=None, ping_interval=None, max_queue=None)
        for _ in range(args.busy + 1)
    ]
    busy = [Caller(connection, expected) for connection in connections[1:]]
    prober = Caller(connections[0], expected)
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(keep_busy(caller, stop)) for caller in busy]
    probe_task = asyncio.ensure_future(probe(prober, stop))
    try:
        await asyncio.sleep(min(0.5, args.seconds))  # warm-up: connections, threads, caches
        for task in (*tasks, probe_task):
            if task.done():
                task.result()  # a failure during the warm-up ends the run here
        before = sum(caller.replies for caller in busy)
        started = time.perf_counter()
        await asyncio.sleep(args.seconds)
        done = sum(caller.replies for caller in busy)
        ended = time.perf_counter()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), REPLY_TIMEOUT)
        spans = await asyncio.wait_for(probe_task, REPLY_TIMEOUT)
    finally:
        for task in (*tasks, probe_task):
            task.cancel()
        await asyncio.gather(*tasks, probe_task, return_exceptions=True)
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.close()
    # The probe's round trips that overlap the window (one always does: they follow
    # each other without a pause, and one slow round trip may span the whole window).
    timings = [end - start for start, end in spans if start < ended and end > started]
    deciles = statistics.quantiles(timings, n=10) if len(timings) > 1 else timings * 9
    return RunResult(
        calls_per_second=(done - before) / (ended - started),
        probe_p50_ms=statistics.median(timings) * 1e3,
        probe_p90_ms=deciles[8] * 1e3,
        probe_calls=len(timings),
    )


def prepare_postgres() -> None:
    """Make the benchmark's PostgreSQL database when it does not exist."""
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as admin:
        found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PGDATABASE])
        if found.fetchone() is None:
            admin.execute(f'CREATE DATABASE "{PGDATABASE}"')


def prepare_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, value INTEGER)")
        db.executemany("INSERT INTO bench_rows (value) VALUES (?)", ((i,) for i in range(20_000)))


def start(workload: str, threads: int, tmp: Path) -> tuple[Any, int]:
    """Start a server for ``workload`` with ``SYNC_THREADS = threads``; return it and its port."""
    database, query = WORKLOADS[workload]
    port = free_port()
    env = {
        "ROHRPOST_BENCH_DB": database,
        "ROHRPOST_BENCH_QUERY": query,
        "ROHRPOST_BENCH_THREADS": str(threads),
        "ROHRPOST_BENCH_SQLITE": str(tmp / "bench.sqlite3"),
        "ROHRPOST_BENCH_PGDATABASE": PGDATABASE,
    }
    return start_server(port, "bench.sync_pool_app:application", env=env), port


async def run_workload(args: argparse.Namespace, workload: str, tmp: Path) -> dict[str, Any]:
    """Both servers of one workload, measured in interleaved rounds (order rotating)."""
    servers = {side: start(workload, threads, tmp) for side, threads in sides(args)}
    samples: dict[str, dict[str, list[RunResult]]] = {
        consumer: {side: [] for side in servers} for consumer in args.consumer
    }
    try:
        for server, port in servers.values():
            await wait_until_ready(server, port)
        for round_number in range(args.rounds):
            for consumer in args.consumer:
                for side in list(servers)[:: -1 if round_number % 2 else 1]:
                    url = f"ws://127.0.0.1:{servers[side][1]}/{consumer}"
                    samples[consumer][side].append(await measure(url, args, expected=1))
    finally:
        for server, _ in servers.values():
            stop_server(server)
    return {consumer: summarize(by_side) for consumer, by_side in samples.items()}


def sides(args: argparse.Namespace) -> list[tuple[str, int]]:
    """Today's one shared thread, then the pool."""
    return [("one_thread", 1), ("pool", args.threads)]


def summarize(by_side: dict[str, list[RunResult]]) -> dict[str, Any]:
    """Medians per side over the rounds, and the ratios of those medians."""
    summary: dict[str, Any] = {"failure": None}
    for side, runs in by_side.items():
        summary[side] = {
            "calls_per_second": statistics.median(run.calls_per_second for run in runs),
            "probe_p50_ms": statistics.median(run.probe_p50_ms for run in runs),
            "probe_p90_ms": statistics.median(run.probe_p90_ms for run in runs),
            "probe_calls": sum(run.probe_calls for run in runs),
            "rounds": [vars(run) for run in runs],
        }
    one, pool = summary["one_thread"], summary["pool"]
    summary["calls_ratio"] = pool["calls_per_second"] / one["calls_per_second"]
    summary["p50_ratio"] = pool["probe_p50_ms"] / one["probe_p50_ms"]
    return summary


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if any(WORKLOADS[name][0] == "postgres" for name in args.workload):
        prepare_postgres()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rohrpost-bench-pool-") as tmp_name:
        tmp = Path(tmp_name)
        prepare_sqlite(tmp / "bench.sqlite3")
        for workload in args.workload:
            try:
                by_consumer = await run_workload(args, workload, tmp)
            except Exception as exc:  # a failed run is a result, not a crash
                failure = {"failure": f"{type(exc).__name__}: {exc}"}
                by_consumer = dict.fromkeys(args.consumer, failure)
            for consumer, result in by_consumer.items():
                results[f"{workload}/{consumer}"] = result
    return {
        "config": {
            "busy_connections": args.busy,
            "pool_threads": args.threads,
            "window_seconds": args.seconds,
            "rounds": args.rounds,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "targets": {
            "workload": TARGET_WORKLOAD,
            "calls_ratio_at_least": CALLS_TARGET,
            "p50_ratio_at_most": P50_TARGET,
        },
        "results": results,
    }


def verdict(key: str, result: dict[str, Any]) -> str:
    if not key.startswith(f"{TARGET_WORKLOAD}/"):
        return ""
    met = result["calls_ratio"] >= CALLS_TARGET and result["p50_ratio"] <= P50_TARGET
    return "met" if met else "MISSED"


def print_report(data: dict[str, Any]) -> None:
    config = data["config"]
    print(
        f"sync handlers: {config['busy_connections']} busy connections + 1 probe; "
        f"{config['rounds']} interleaved rounds of {config['window_seconds']:g} s (medians); "
        f"a pool of {config['pool_threads']} threads against SYNC_THREADS=1 "
        f"(Channels' shared thread); Python {config['python']}, {config['cpu_count']} CPUs"
    )
    print(
        f"target on {TARGET_WORKLOAD}: calls/s >= {CALLS_TARGET:g}x, "
        f"probe p50 <= 1/{1 / P50_TARGET:g} of one thread's"
    )
    print()
    print(
        f"{'workload/consumer':<20}{'calls/s 1 thread':>17}{'pool':>9}{'ratio':>8}"
        f"{'p50 ms 1 thread':>17}{'pool':>8}{'ratio':>8}   verdict"
    )
    for key, result in data["results"].items():
        if result["failure"] is not None:
            print(f"{key:<20}  FAILED: {result['failure']}")
            continue
        one, pool = result["one_thread"], result["pool"]
        print(
            f"{key:<20}{one['calls_per_second']:>17.0f}{pool['calls_per_second']:>9.0f}"
            f"{result['calls_ratio']:>7.2f}x{one['probe_p50_ms']:>17.2f}"
            f"{pool['probe_p50_ms']:>8.2f}{result['p50_ratio']:>7.2f}x   {verdict(key, result)}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data = asyncio.run(run(args))
    print_report(data)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 1 if any(result["failure"] for result in data["results"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
