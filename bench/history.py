"""What history costs: a resume after 1000 missed pushes, and memory per group.

Usage::

    python -m bench.history            # the full run (about half a minute)
    python -m bench.history --quick    # a smoke run

Three figures (the publishing cost with history on is ``python -m
bench.changefeed --history``, beside the same run without):

- **Resume time**: a ``redis-server`` of the benchmark's own and a uvicorn
  server of :mod:`tests.e2e.app` on it (``RedisChannelLayer``, history on).
  A client subscribes to a group with history, disconnects; ``--missed``
  pushes go to the group; the client reconnects and subscribes ``since``
  its last position. The time from sending that subscribe to its reply (the
  replayed pushes come before it: at the reply the client is live) is the
  figure; target: under 1 s for 1000 pushes. Every replayed push is checked
  (count, order, offsets).
- **Replay in the store**: ``areplay`` of the same number of pushes straight
  from :class:`~rohrpost.history.RedisHistory` and
  :class:`~rohrpost.history.MemoryHistory`, best of ``--rounds``.
- **Memory per group**: Redis's ``MEMORY USAGE`` of a group's stream and
  meta keys holding ``SIZE`` (1000) change-feed-sized pushes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.fanout_procs import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Most seconds a client may take to be live again after 1000 missed pushes.
RESUME_TARGET_SECONDS = 1.0
#: A change-feed push of a small object, as the demo's are.
PUSH = {
    "type": "subscription-update",
    "data": {"type": "update", "group": "board-1", "object": {"id": 7, "title": "x" * 60}},
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 missed pushes, 2 rounds")
    parser.add_argument("--missed", type=int, help="pushes missed while away (default 1000)")
    parser.add_argument("--rounds", type=int, help="resumes measured (default 5)")
    args = parser.parse_args(argv)
    args.missed = args.missed or (100 if args.quick else 1000)
    args.rounds = args.rounds or (2 if args.quick else 5)
    return args


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(redis_url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)]),
        "E2E_REDIS_URL": redis_url,
        "E2E_REDIS_LAYER": "core",
        "E2E_HISTORY_SIZE": "5000",
    }
    command = [sys.executable, "-m", "uvicorn", "tests.e2e.app:application", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--lifespan", "off", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the server did not start")


async def request(connection: ClientConnection, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Send ``frame``; return every frame up to and including its answer."""
    await connection.send(json.dumps(frame))
    frames = []
    while True:
        answer = json.loads(await asyncio.wait_for(connection.recv(), 30))
        frames.append(answer)
        if answer.get("id") == frame["id"] and answer.get("type") == frame["type"]:
            return frames


async def one_resume(url: str, name: str, missed: int) -> float:
    """Subscribe, leave, miss ``missed`` pushes, come back; seconds until live again."""
    subscribe = {"id": 1, "type": "subscribe", "data": {"type": "feed", "name": name}}
    async with connect(url) as first:
        position = (await request(first, subscribe))[-1]["data"]["position"]
    async with connect(url) as publisher:
        burst = {"group": f"feed-{name}", "count": missed, "size": 100}
        await request(publisher, {"id": 2, "type": "burst", "data": burst})
    async with connect(url, max_size=None) as back:
        start = time.perf_counter()
        frames = await request(back, {**subscribe, "since": position})
        seconds = time.perf_counter() - start
    *replayed, reply = frames
    offsets = [frame["position"]["offset"] for frame in replayed]
    expected = list(range(position["offset"] + 1, position["offset"] + missed + 1))
    if reply["data"].get("resumed") != missed or offsets != expected:
        raise RuntimeError(f"the resume was wrong: {reply['data']!r}, {len(offsets)} replayed")
    return seconds


async def store_figures(redis_url: str, missed: int, rounds: int) -> dict[str, Any]:
    from rohrpost.history import MemoryHistory, Position, RedisHistory

    text = json.dumps({"id": 1, **PUSH}, separators=(",", ":"))
    figures: dict[str, Any] = {"push_bytes": len(text)}
    for name, store in (
        ("redis", RedisHistory(redis_url, size=1000, prefix="bench-history")),
        ("memory", MemoryHistory(size=max(1000, missed))),
    ):
        start = await store.aopen("g")
        await store.aappend("g", [text] * missed)
        best = float("inf")
        for _ in range(rounds):
            began = time.perf_counter()
            replay = await store.areplay("g", Position(start.epoch, 0))
            best = min(best, time.perf_counter() - began)
            if replay is None or len(replay.frames) != min(
                missed, 1000 if name == "redis" else missed
            ):
                raise RuntimeError(f"{name}: the replay was wrong")
        figures[f"{name}_replay_ms"] = best * 1e3
        if isinstance(store, RedisHistory):
            client = store._client()
            await store.aappend("g", [text] * 1000)  # a full history: SIZE pushes
            keys = store._keys("g")
            figures["redis_bytes_per_group"] = sum(
                [await client.memory_usage(key, samples=0) or 0 for key in keys]
            )
            await client.delete(*keys)
            await store.aclose()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    redis_server = RedisServer()
    process = None
    try:
        process, port = start_server(redis_server.url)
        url = f"ws://127.0.0.1:{port}/ws/async/"
        resumes = [
            asyncio.run(one_resume(url, f"bench-{n}", args.missed)) for n in range(args.rounds)
        ]
        figures = asyncio.run(store_figures(redis_server.url, args.missed, args.rounds))
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        redis_server.stop()
    resumes.sort()
    median = resumes[len(resumes) // 2]
    verdict = "met" if median <= RESUME_TARGET_SECONDS else "MISSED"
    print(
        f"history: {args.missed} missed pushes, {args.rounds} resumes, uvicorn + RedisChannelLayer"
    )
    print(
        f"resume until live: median {median * 1e3:.0f} ms (min {resumes[0] * 1e3:.0f}, "
        f"max {resumes[-1] * 1e3:.0f}); target <= {RESUME_TARGET_SECONDS:.0f} s: {verdict}"
    )
    print(
        f"replay in the store: Redis {figures['redis_replay_ms']:.1f} ms, "
        f"memory {figures['memory_replay_ms']:.2f} ms (best of {args.rounds})"
    )
    print(
        f"Redis memory per group holding 1000 pushes of {figures['push_bytes']} bytes: "
        f"{figures['redis_bytes_per_group'] / 1024:.0f} KiB"
    )
    return 0  # a missed target is reported, not an error (as in the other benchmarks)


if __name__ == "__main__":
    raise SystemExit(main())
