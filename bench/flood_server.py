"""The flood benchmark's server process: start it, read its memory over ``GET /rss``
and its CPU time from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.__main__ import proc_cpu_seconds
from bench.flood_client import bounded

__all__ = [
    "REPO_ROOT",
    "SERVER_START_SECONDS",
    "ServerCpu",
    "sample_peak_rss",
    "server_memory",
    "start_server",
    "wait_until_ready",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_START_SECONDS = 30.0


def start_server(
    port: int, *, gc_freeze: bool = False, rohrpost: dict[str, Any] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``uvicorn bench.flood_app:application`` on ``port``.

    Args:
        port: A free port of 127.0.0.1.
        gc_freeze: The server calls ``gc.freeze()`` after start-up.
        rohrpost: A ``ROHRPOST`` setting for the server; ``None``: none, the defaults.
    """
    command = [sys.executable, "-m", "uvicorn", "bench.flood_app:application"]
    command += ["--app-dir", str(REPO_ROOT), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--lifespan", "off", "--log-level", "warning"]
    env = os.environ | {
        "BENCH_GC_FREEZE": "1" if gc_freeze else "",
        "BENCH_ROHRPOST": "" if rohrpost is None else json.dumps(rohrpost),
    }
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env)


class ServerCpu:
    """The server process's CPU time (user + system, all threads) phase by phase.

    Read from ``/proc/<pid>/stat`` by this process, so a busy server is not
    asked anything; the clock ticks in 10 ms steps.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.restart()

    def restart(self) -> None:
        """Start a phase now."""
        self.cpu = proc_cpu_seconds(self.pid)
        self.wall = time.perf_counter()

    def lap(self) -> dict[str, float | None]:
        """The server's CPU seconds since the phase started, and their share of the
        wall time (1.0 = one core busy); ``None`` where ``/proc`` cannot be read.
        Starts the next phase.
        """
        cpu, wall = proc_cpu_seconds(self.pid), time.perf_counter()
        used = None if cpu is None or self.cpu is None else cpu - self.cpu
        seconds = wall - self.wall
        self.cpu, self.wall = cpu, wall
        return {
            "seconds": seconds,
            "server_cpu_seconds": used,
            "server_cpu_share": None if used is None else used / seconds,
        }


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
