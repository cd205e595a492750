"""How one abusive client affects everyone else: a flood and JSON bombs over a real uvicorn.

Usage::

    python -m bench.flood                  # the full run (about a minute on 2 cores)
    python -m bench.flood --quick          # a smoke run (a few seconds)
    python -m bench.flood --json out.json  # also write the results as JSON
    python -m bench.flood --rohrpost '{"BYTE_RATE_LIMIT": null}'  # other limits

One uvicorn server process (:mod:`bench.flood_app`) serves both consumers
with rohrpost's default limits (or the ``ROHRPOST`` setting ``--rohrpost``
gives it); this process is the client. For each consumer,
``--pingers`` well-behaved clients each send a ping every ``--interval``
seconds (half the default rate limit at 20 ms), wait for its pong and record
the round trip, through four phases:

1. **baseline**: ``--rounds`` round trips per pinger, nobody else connected.
2. **flooded**: the same again while one more client sends pings as fast as
   it can without waiting for answers. It is refused (``rate_limited``),
   closed with 4029 and reconnects at once, for the whole phase. It runs in a
   process of its own (:mod:`bench.flooder`), so that its sending loop does not
   stall the pingers' event loop, at nice 19 (``--flooder-nice``), so that it
   does not take the server's CPU: what is measured is the server. The
   server's RSS (``GET /rss``) is read before, during and after.
3. **bombs**: while the pingers go on, one fresh connection per bomb sends a
   single malicious frame (:data:`BOMBS`: 2 MB of ``[``, plain and deflated,
   100,000-deep nesting, a 5000-digit integer, ``NaN``, and a valid ping whose
   data is a 250 KB string of ``[``) and times the answer: the expected error
   reply (or pong), or a documented close code. An answered connection must
   still answer a ping.
4. **dense frames** (issue 9): ``--rounds`` round trips per pinger again while
   one more client (:mod:`bench.dense_client`, a process of its own at the
   flooder's niceness) sends bracket-dense frames just under 256 KiB over one
   connection at a fifth of the frame rate limit (20 a second): a ping whose
   data is ``[[],[],...]``, a bare ``[[],[],...]`` and a ping whose data nests
   33 levels deep thousands of times. Every answer is checked (``pong``,
   ``not_an_object``, ``too_deep``, or ``rate_limited`` once the byte budget
   is spent).

The server's CPU time in every phase is read from ``/proc/<pid>/stat``.

Targets (from issues 4 and 9, in :mod:`bench.flood_targets`): the pingers'
p99 in every phase at most ``TARGET_P99_RATIO`` times the baseline's, the
server's RSS growing less than ``TARGET_RSS_GROWTH_MB`` under the flood, every
bomb answered within ``TARGET_BOMB_MS``. A missed target is reported as
MISSED (:mod:`bench.flood_report` prints the tables); the exit code is 1 only
when an answer was wrong (a pinger without its pong, a bomb with the wrong
error, a flood never closed with 4029, a dense frame answered wrongly or not at
all), else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.__main__ import free_port, stop_server
from bench.dense_client import dense_misbehaviour
from bench.flood_bombs import BOMBS, HEAVY_FRAMES, Bomb, bomb_summary, detonate
from bench.flood_client import IO_SECONDS, WrongAnswer
from bench.flood_pingers import Pingers, RoundTrip, latency_summary, worst_overlapping
from bench.flood_report import print_report
from bench.flood_server import (
    ServerCpu,
    sample_peak_rss,
    server_memory,
    start_server,
    wait_until_ready,
)
from bench.flood_targets import PHASES, TARGET_P99_RATIO, TARGET_RSS_GROWTH_MB
from bench.flooder import Flooder
from rohrpost.limits import CLOSE_FLOODING

__all__ = ["BOMBS", "QUICK", "Bomb", "FloodConfig", "measure", "print_report"]

CONSUMER_PATHS = {"async": "/async", "sync": "/sync"}
#: Pause between two bombs, so that the bomb phase lasts long enough to measure the pingers.
BOMB_GAP_SECONDS = 0.1
#: What the report says about the server, from its ``GET /rss``.
SERVER_FACTS = ("codec", "uvicorn", "loop", "ws", "gc_frozen_objects", "rate_limits")


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
    #: The server's ``ROHRPOST`` setting; ``None``: none, rohrpost's defaults.
    rohrpost: dict[str, Any] | None = None


QUICK = FloodConfig(rounds=50, warm_up_rounds=5, bomb_repeats=1)


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


async def dense_phase(
    url: str, pingers: Pingers, config: FloodConfig
) -> tuple[list[RoundTrip], dict[str, Any]]:
    """``config.rounds`` round trips per pinger while the dense client sends; return both sides."""
    sender = Flooder(
        url,
        2 * config.rounds * config.interval + 30,
        config.flooder_nice,
        module="bench.dense_client",
    )
    try:
        await sender.start()
        latencies = await pingers.run(config.rounds)
        stats = await sender.stop()
    finally:
        await sender.kill()
    return latencies, stats


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


async def measure_path(port: int, pid: int, name: str, config: FloodConfig) -> dict[str, Any]:
    """All the phases on one consumer path; a wrong answer ends it with a failure."""
    url = f"ws://127.0.0.1:{port}{CONSUMER_PATHS[name]}"
    result: dict[str, Any] = {"failure": None}
    pingers = Pingers(config.interval)
    try:
        await pingers.open(url, config.pingers)
        await pingers.run(config.warm_up_rounds)
        cpu = ServerCpu(pid)
        baseline = latency_summary(await pingers.run(config.rounds)) | cpu.lap()
        result["baseline"] = baseline
        latencies, result["flood"], result["memory"] = await flooded_phase(
            port, url, pingers, config
        )
        result["flooded"] = latency_summary(latencies) | cpu.lap()
        flood_problems = flood_misbehaviour(result["flood"])
        if flood_problems:
            raise WrongAnswer("; ".join(flood_problems))
        result["bomb_results"] = []
        result["bombs"] = {}
        for phase, bombs in (("during_bombs", BOMBS), ("during_heavy_frames", HEAVY_FRAMES)):
            cpu.restart()
            round_trips, results = await bombs_phase(url, pingers, bombs, config.bomb_repeats)
            result[phase] = latency_summary(round_trips) | cpu.lap()
            # Not a target: bombs are large frames, so the allocator's high-water mark rises.
            result["memory"][f"rss_after_{phase}_bytes"] = (await server_memory(port))["rss_bytes"]
            result["bomb_results"] += results
            result["bombs"] |= bomb_summary(bombs, results)
        wrong = [name for name, bomb in result["bombs"].items() if not bomb["correct"]]
        if wrong:
            raise WrongAnswer(f"wrong answer to {', '.join(wrong)}")
        cpu.restart()
        latencies, result["dense"] = await dense_phase(url, pingers, config)
        result["dense_frames"] = latency_summary(latencies) | cpu.lap()
        dense_problems = dense_misbehaviour(result["dense"])
        if dense_problems:
            raise WrongAnswer("; ".join(dense_problems))
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
        paths[name] = await measure_path(port, server.pid, name, config)
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
    server = start_server(port, gc_freeze=config.gc_freeze, rohrpost=config.rohrpost)
    try:
        return asyncio.run(run(port, server, config))
    finally:
        stop_server(server)


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
    parser.add_argument(
        "--rohrpost",
        type=json.loads,
        metavar="JSON",
        help="the server's ROHRPOST setting, e.g. '{\"BYTE_RATE_LIMIT\": null}' (default: none)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
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
        "rohrpost": args.rohrpost,
    }
    config = replace(config, **{key: value for key, value in changes.items() if value is not None})
    if config.rohrpost is not None and not isinstance(config.rohrpost, dict):
        raise SystemExit("--rohrpost must be a JSON object")
    if min(config.pingers, config.rounds, config.bomb_repeats) < 1 or config.interval <= 0:
        raise SystemExit(
            "--pingers, --rounds and --bomb-repeats must be at least 1, --interval > 0"
        )
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A `kill` ends the run like Ctrl-C does: the server and the flooder are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
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
