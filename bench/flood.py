"""How one abusive client affects everyone else: a flood and JSON bombs over a real uvicorn.

Usage::

    python -m bench.flood                  # the full run (about a minute on 2 cores)
    python -m bench.flood --quick          # a smoke run (a few seconds)
    python -m bench.flood --json out.json  # also write the results as JSON

One uvicorn server process (:mod:`bench.flood_app`) serves both consumers
with rohrpost's default limits; this process is the client. For each consumer,
``--pingers`` well-behaved clients each send a ping every ``--interval``
seconds (half the default rate limit at 20 ms), wait for its pong and record
the round trip, through three phases:

1. **baseline**: ``--rounds`` round trips per pinger, nobody else connected.
2. **flooded**: the same again while one more client sends pings as fast as
   it can without waiting for answers. It is refused (``rate_limited``),
   closed with 4029 and reconnects at once, for the whole phase. It runs in a
   process of its own (``--flooder URL``), so that its sending loop does not
   stall the pingers' event loop, at nice 19 (``--flooder-nice``), so that it
   does not take the server's CPU: what is measured is the server. The
   server's RSS (``GET /rss``) is read before, during and after.
3. **bombs**: while the pingers go on, one fresh connection per bomb sends a
   single malicious frame (:data:`BOMBS`: 2 MB of ``[``, plain and deflated,
   100,000-deep nesting, a 5000-digit integer, ``NaN``, and a valid ping whose
   data is a 250 KB string of ``[``) and times the answer: the expected error
   reply (or pong), or a documented close code. An answered connection must
   still answer a ping.

Targets (from issue 4): the pingers' p99 under the flood at most
:data:`TARGET_P99_RATIO` times the baseline's, the server's RSS growing less
than :data:`TARGET_RSS_GROWTH_MB`, every bomb answered within
:data:`TARGET_BOMB_MS`. A missed target is reported as MISSED; the exit code is
1 only when an answer was wrong (a pinger without its pong, a bomb with the
wrong error, a flood never closed with 4029), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.__main__ import free_port, stop_server
from rohrpost import protocol
from rohrpost.limits import CLOSE_FLOODING, FrameGate

__all__ = ["BOMBS", "QUICK", "Bomb", "FloodConfig", "measure", "print_report"]

TARGET_P99_RATIO = 2.0
TARGET_RSS_GROWTH_MB = 50.0
TARGET_BOMB_MS = 100.0

#: The phases' names in the report and the JSON, the baseline first.
PHASES = ("baseline", "flooded", "during_bombs", "during_heavy_frames")

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSUMER_PATHS = {"async": "/async", "sync": "/sync"}
#: Bound on every single client operation: connect, send, receive, close.
IO_SECONDS = 5.0
SERVER_START_SECONDS = 30.0
#: The flooder yields to its own event loop this often, so that it reads its replies.
FLOOD_YIELD_EVERY = 64
#: Pause between two bombs, so that the bomb phase lasts long enough to measure the pingers.
BOMB_GAP_SECONDS = 0.1
#: The answer to one of the flooder's pings, ``{"id":<n>,"type":"pong"}``, as the server writes it.
PONG = re.compile(r'\{"id":[0-9]+,"type":"pong"\}')
#: What the report says about the server, from its ``GET /rss``.
SERVER_FACTS = ("codec", "uvicorn", "loop", "ws", "gc_frozen_objects")
#: Close codes docs/protocol.md documents for an oversized frame.
DOCUMENTED_BOMB_CLOSES = {1009: "the ASGI server refused a frame over its own maximum"}


#: One pinger round trip: when it started (``time.perf_counter()``) and how long it took (ms).
RoundTrip = tuple[float, float]


class WrongAnswer(Exception):
    """The server answered something the protocol does not allow, or nothing at all."""


@dataclass(frozen=True)
class FloodConfig:
    """How big a run is."""

    pingers: int = 20
    rounds: int = 500
    interval: float = 0.02
    warm_up_rounds: int = 25
    bomb_repeats: int = 5
    paths: tuple[str, ...] = tuple(CONSUMER_PATHS)
    #: The flooding process's niceness: at 19 it gets the CPU the server and the
    #: pingers leave, as if it ran on a machine of its own, yet still sends as fast as
    #: that CPU allows. 0 lets it compete with the server for this machine's cores.
    flooder_nice: int = 19
    #: Have the server call ``gc.freeze()`` after start-up (see bench/README.md).
    gc_freeze: bool = False


QUICK = FloodConfig(rounds=50, warm_up_rounds=5, bomb_repeats=1)


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


async def bounded(step: Awaitable[Any], what: str) -> Any:
    """Await ``step`` for at most :data:`IO_SECONDS`; a timeout is a wrong answer."""
    try:
        return await asyncio.wait_for(step, IO_SECONDS)
    except asyncio.TimeoutError:
        raise WrongAnswer(f"{what}: nothing within {IO_SECONDS:.0f} s") from None


#: The flooder's own loopback address (all of 127/8 is loopback on Linux). The
#: server refuses a flood-closed address for ROHRPOST["FLOOD_COOLDOWN"]; from
#: 127.0.0.1 that would refuse the pingers' and bombers' connections too, as
#: it would for clients sharing a NAT address with a flooder.
FLOODER_ADDRESS = "127.0.0.2"


async def open_client(
    url: str, *, deflate: bool = False, source: str = "127.0.0.1"
) -> ClientConnection:
    # No keepalive pings: only the protocol's frames are on the wire. (The client's
    # max_size bounds what it receives; what it sends, 2 MB included, is not limited.)
    return await connect(
        url,
        compression="deflate" if deflate else None,
        ping_interval=None,
        open_timeout=IO_SECONDS,
        close_timeout=IO_SECONDS,
        local_addr=(source, 0),
    )


async def gather_or_cancel(steps: Sequence[Awaitable[Any]]) -> list[Any]:
    """Gather ``steps``; when one fails, cancel the others before raising."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the server ---------------------------------------------------------------------


def start_server(port: int, *, gc_freeze: bool = False) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "bench.flood_app:application"]
    command += ["--app-dir", str(REPO_ROOT), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--lifespan", "off", "--log-level", "warning"]
    env = os.environ | {"BENCH_GC_FREEZE": "1" if gc_freeze else ""}
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env)


async def server_memory(port: int) -> dict[str, Any]:
    """Fetch ``GET /rss``: the server's RSS and peak RSS in bytes, and facts about it."""

    async def fetch() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /rss HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    head, _, body = (await bounded(fetch(), "GET /rss")).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET /rss failed: {head[:100]!r}")
    info: dict[str, Any] = json.loads(body)
    return info


async def wait_until_ready(server: subprocess.Popen[bytes], port: int) -> dict[str, Any]:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        try:
            return await server_memory(port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start listening in time") from None
            await asyncio.sleep(0.05)


async def sample_peak_rss(port: int, stop: asyncio.Event) -> int:
    """Read the server's RSS every 250 ms until ``stop``; return the highest reading."""
    peak = 0
    while not stop.is_set():
        peak = max(peak, (await server_memory(port))["rss_bytes"])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
    return peak


# --- the pingers ----------------------------------------------------------------------


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


# --- the flooder (a process of its own: python -m bench.flood --flooder URL) ----------


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
    """The flooding process, seen from the benchmark."""

    def __init__(self, url: str, max_seconds: float, nice: int) -> None:
        self.url = url
        self.max_seconds = max_seconds
        self.nice = nice
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        command = [sys.executable, "-m", "bench.flood", "--flooder", self.url]
        command += ["--max-seconds", str(self.max_seconds), "--nice", str(self.nice)]
        self.process = await asyncio.create_subprocess_exec(
            *command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), SERVER_START_SECONDS)
        if line.strip() != b"flooding":
            raise RuntimeError(f"the flooder did not start flooding: {line!r:.200}")

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


# --- the phases -----------------------------------------------------------------------


async def flooded_phase(port: int, url: str, pingers: Pingers, config: FloodConfig) -> Any:
    rss_before = (await server_memory(port))["rss_bytes"]
    flooder = Flooder(url, 2 * config.rounds * config.interval + 30, config.flooder_nice)
    stop_sampling = asyncio.Event()
    try:
        await flooder.start()
        sampler = asyncio.create_task(sample_peak_rss(port, stop_sampling))
        try:
            latencies = await pingers.run(config.rounds)
        finally:
            stop_sampling.set()
            peak = await asyncio.wait_for(sampler, 2 * IO_SECONDS)
        stats = await flooder.stop()
    finally:
        await flooder.kill()
    rss_after = (await server_memory(port))["rss_bytes"]
    growth_mb = (max(peak, rss_after) - rss_before) / 2**20
    memory = {
        "rss_before_bytes": rss_before,
        "rss_peak_sampled_bytes": peak,
        "rss_after_bytes": rss_after,
        "growth_mb": growth_mb,
        "target_mb": TARGET_RSS_GROWTH_MB,
        "met": growth_mb < TARGET_RSS_GROWTH_MB,
    }
    return latencies, stats, memory


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


async def bombs_phase(
    url: str, pingers: Pingers, bombs: Sequence[Bomb], repeats: int
) -> tuple[list[RoundTrip], list[dict[str, Any]]]:
    """Send each bomb ``repeats`` times while the pingers go on; return both sides."""
    stop = asyncio.Event()
    pinging = asyncio.create_task(pingers.run(None, stop))
    results = []
    try:
        for bomb in [bomb for bomb in bombs for _ in range(repeats)]:
            if pinging.done():
                break  # a pinger failed: its error is raised below
            results.append(await detonate(url, bomb))
            await asyncio.sleep(BOMB_GAP_SECONDS)
    finally:
        stop.set()
        round_trips = await asyncio.wait_for(pinging, 2 * IO_SECONDS)
    for result in results:
        started, answered = result.pop("window")
        result["ms"] = (answered - started) * 1000
        result["others_worst_ms"] = worst_overlapping(round_trips, started, answered)
    return round_trips, results


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


async def measure_path(port: int, name: str, config: FloodConfig) -> dict[str, Any]:
    """All three phases on one consumer path; a wrong answer ends it with a failure."""
    url = f"ws://127.0.0.1:{port}{CONSUMER_PATHS[name]}"
    result: dict[str, Any] = {"failure": None}
    pingers = Pingers(config.interval)
    try:
        await pingers.open(url, config.pingers)
        await pingers.run(config.warm_up_rounds)
        baseline = latency_summary(await pingers.run(config.rounds))
        result["baseline"] = baseline
        latencies, result["flood"], result["memory"] = await flooded_phase(
            port, url, pingers, config
        )
        result["flooded"] = latency_summary(latencies)
        flood_problems = flood_misbehaviour(result["flood"])
        if flood_problems:
            raise WrongAnswer("; ".join(flood_problems))
        result["bomb_results"] = []
        result["bombs"] = {}
        for phase, bombs in (("during_bombs", BOMBS), ("during_heavy_frames", HEAVY_FRAMES)):
            round_trips, results = await bombs_phase(url, pingers, bombs, config.bomb_repeats)
            result[phase] = latency_summary(round_trips)
            # Not a target: bombs are large frames, so the allocator's high-water mark rises.
            result["memory"][f"rss_after_{phase}_bytes"] = (await server_memory(port))["rss_bytes"]
            result["bomb_results"] += results
            result["bombs"] |= bomb_summary(bombs, results)
        wrong = [name for name, bomb in result["bombs"].items() if not bomb["correct"]]
        if wrong:
            raise WrongAnswer(f"wrong answer to {', '.join(wrong)}")
        for phase in PHASES[1:]:
            ratio = result[phase]["p99_ms"] / baseline["p99_ms"]
            result[phase] |= {"p99_ratio": ratio, "met": ratio <= TARGET_P99_RATIO}
    except Exception as exc:  # any failure of a path is a result, not a crash
        result["failure"] = f"{type(exc).__name__}: {exc}"
    finally:
        await pingers.close()
    return result


def flood_misbehaviour(stats: dict[str, Any]) -> list[str]:
    """What the server did wrong to the flooder (an empty list when nothing)."""
    problems = []
    if stats["wrong_replies"]:
        problems.append(
            f"flooder got {stats['wrong_replies']} wrong replies, e.g. "
            f"{stats['wrong_reply_example']}"
        )
    if stats["server_closes"].get(str(CLOSE_FLOODING), 0) == 0:
        problems.append("the flooder was never closed with 4029")
    others = {code: n for code, n in stats["server_closes"].items() if code != str(CLOSE_FLOODING)}
    if others or stats["abnormal_closes"]:
        problems.append(
            f"flooder closes other than 4029: {others}, "
            f"{stats['abnormal_closes']} without a close frame"
        )
    return problems


async def run(port: int, server: subprocess.Popen[bytes], config: FloodConfig) -> dict[str, Any]:
    info = await wait_until_ready(server, port)
    started = time.perf_counter()
    paths = {}
    for name in config.paths:
        paths[name] = await measure_path(port, name, config)
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
    return {
        "server": {key: info[key] for key in SERVER_FACTS}
        | {"python": platform.python_version(), "cpu_count": os.cpu_count()},
        "config": asdict(config),
        "elapsed_seconds": time.perf_counter() - started,
        "paths": paths,
    }


def measure(config: FloodConfig = QUICK) -> dict[str, Any]:
    """Start a server, run every phase on every path of ``config``, stop the server."""
    port = free_port()
    server = start_server(port, gc_freeze=config.gc_freeze)
    try:
        return asyncio.run(run(port, server, config))
    finally:
        stop_server(server)


# --- the report -----------------------------------------------------------------------


def print_report(data: dict[str, Any]) -> None:
    server, config = data["server"], data["config"]
    print(
        f"server: uvicorn {server['uvicorn']} ({server['ws']}), {server['loop']} loop, "
        f"{server['codec']} codec, Python {server['python']}, {server['cpu_count']} CPUs; "
        "rohrpost's default limits"
    )
    print(
        f"{config['pingers']} pingers, one ping each every {config['interval'] * 1000:.0f} ms, "
        f"{config['rounds']} round trips each per phase; every bomb {config['bomb_repeats']}x; "
        f"flooder at nice {config['flooder_nice']}; "
        f"{'gc.freeze() in the server; ' if config['gc_freeze'] else ''}"
        f"{data['elapsed_seconds']:.0f} s"
    )
    for name, result in data["paths"].items():
        print()
        if result["failure"] is not None:
            print(f"{name}: FAILED: {result['failure']}")
            continue
        print_path_report(name, result)


def print_path_report(name: str, result: dict[str, Any]) -> None:
    print(
        f"{name + ' pingers':<24}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'samples':>8}"
        f"{'p99 / baseline':>16}   verdict (<= {TARGET_P99_RATIO:.1f}x)"
    )
    for phase in PHASES:
        row = result[phase]
        ratio = "" if phase == "baseline" else f"{row['p99_ratio']:.2f}x"
        verdict = "" if phase == "baseline" else "met" if row["met"] else "MISSED"
        line = (
            f"{phase.replace('_', ' '):<24}{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}"
            f"{row['max_ms']:>8.2f}{row['samples']:>8}{ratio:>16}   {verdict}"
        )
        print(line.rstrip())
    flood, memory = result["flood"], result["memory"]
    print(
        f"flooder: {flood['frames_sent']} frames in {flood['seconds']:.1f} s over "
        f"{flood['connections']} connections, closed 4029 "
        f"{flood['server_closes'].get(str(CLOSE_FLOODING), 0)}x; answered "
        f"{flood['pongs']} pongs, {flood['refusals']} rate_limited; "
        f"{flood['connect_failures']} reconnects refused (FLOOD_COOLDOWN)"
    )
    print(
        f"server RSS: {memory['rss_before_bytes'] / 2**20:.1f} MB before the flood, "
        f"{memory['rss_peak_sampled_bytes'] / 2**20:.1f} MB peak, "
        f"{memory['rss_after_bytes'] / 2**20:.1f} MB after: {memory['growth_mb']:+.1f} MB, "
        f"{'met' if memory['met'] else 'MISSED'} (< {TARGET_RSS_GROWTH_MB:.0f} MB)"
    )
    print(
        f"server RSS after the bombs: {memory['rss_after_during_bombs_bytes'] / 2**20:.1f} MB, "
        f"after the heavy frames: {memory['rss_after_during_heavy_frames_bytes'] / 2**20:.1f} MB"
    )
    print(
        f"{'bomb':<34}{'answer':>13}{'max ms':>8}{'pingers worst ms':>18}"
        f"   verdict (<= {TARGET_BOMB_MS:.0f} ms)"
    )
    for bomb_name, bomb in result["bombs"].items():
        others = bomb["others_worst_ms"]
        print(
            f"{bomb_name:<34}{'/'.join(bomb['answers']):>13}{bomb['max_ms']:>8.1f}"
            f"{'-' if others is None else f'{others:.1f}':>18}   "
            f"{'met' if bomb['met'] else 'MISSED'}"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flood",
        description="Latency of well-behaved clients while one client floods or sends JSON bombs.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 50 round trips per phase, bombs once"
    )
    parser.add_argument("--pingers", type=int, help="well-behaved clients per path (default 20)")
    parser.add_argument("--rounds", type=int, help="round trips per pinger per phase (default 500)")
    parser.add_argument(
        "--interval", type=float, help="seconds between a pinger's pings (default 0.02)"
    )
    parser.add_argument("--bomb-repeats", type=int, help="times each bomb is sent (default 5)")
    parser.add_argument(
        "--only", action="append", choices=list(CONSUMER_PATHS), help="one path only (repeatable)"
    )
    parser.add_argument(
        "--flooder-nice",
        type=int,
        help="niceness of the flooding process (default 19: it does not steal the server's CPU)",
    )
    parser.add_argument(
        "--gc-freeze", action="store_true", help="the server calls gc.freeze() after start-up"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    # The flooding client's own process (started by the benchmark, not by hand).
    parser.add_argument("--flooder", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--max-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--nice", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> FloodConfig:
    config = QUICK if args.quick else FloodConfig()
    changes = {
        "pingers": args.pingers,
        "rounds": args.rounds,
        "interval": args.interval,
        "bomb_repeats": args.bomb_repeats,
        "paths": None if args.only is None else tuple(args.only),
        "flooder_nice": args.flooder_nice,
        "gc_freeze": args.gc_freeze or None,
    }
    config = replace(config, **{key: value for key, value in changes.items() if value is not None})
    if min(config.pingers, config.rounds, config.bomb_repeats) < 1 or config.interval <= 0:
        raise SystemExit(
            "--pingers, --rounds and --bomb-repeats must be at least 1, --interval > 0"
        )
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A `kill` ends the run like Ctrl-C does: the server and the flooder are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.flooder is not None:
        os.nice(args.nice)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches the whole process group
            print(json.dumps(asyncio.run(flood(args.flooder, args.max_seconds))), flush=True)
        return 0
    try:
        data = measure(config_from(args))
    except KeyboardInterrupt:
        return 130  # the server and the flooder are stopped already
    print_report(data)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 1 if any(result["failure"] for result in data["paths"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
