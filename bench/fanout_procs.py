"""The processes of the fan-out benchmark: servers, subscribers, the sender and Redis.

The parent (:mod:`bench.fanout`) drives each of them synchronously: the
servers over HTTP (``GET /info``, ``GET /broadcast``), the subscriber and
sender processes over JSON lines on their stdin / stdout
(:class:`LinePipe`), and reads every process's CPU time and memory from
``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import redis

from bench.__main__ import REPO_ROOT, free_port, proc_cpu_seconds, start_server, stop_server
from bench.fanout_shared import PAYLOAD

__all__ = [
    "LinePipe",
    "RedisServer",
    "cpu_seconds",
    "descendants",
    "fanout_server",
    "http_get",
    "logged_errors",
    "proc_cpu_seconds",
    "rss_bytes",
    "stop_server",
    "stop_servers",
    "subscribers",
    "tree_cpu_seconds",
    "wait_until_ready",
]

SERVER_START_SECONDS = 30.0


def http_get(port: int, path: str, timeout: float) -> dict[str, Any]:
    """``GET path`` on 127.0.0.1:``port``, the JSON answer."""
    url = f"http://127.0.0.1:{port}{path}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def fanout_server(
    contender: str,
    redis_url: str | None,
    log: IO[bytes] | None = None,
    server: str = "uvicorn",
) -> tuple[subprocess.Popen[bytes], int]:
    """Start a fresh ``bench.fanout_app:application`` for ``contender`` (no waiting).

    ``server`` is ``uvicorn`` (:func:`bench.__main__.start_server`) or
    ``granian`` (one worker process, its ASGI interface without lifespan,
    uvloop); ``log`` takes the server's stderr (see :func:`logged_errors`).
    """
    port = free_port()
    env = {
        "BENCH_FANOUT_CONTENDER": contender,
        "BENCH_FANOUT_REDIS": redis_url or "",
        "BENCH_FANOUT_SERVER": server,
    }
    if server == "uvicorn":
        return start_server(port, "bench.fanout_app:application", env, log), port
    command = [sys.executable, "-m", "granian", "--interface", "asginl", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1", "--loop", "uvloop"]
    command += ["--log-level", "warning", "--working-dir", str(REPO_ROOT)]
    command += ["bench.fanout_app:application"]
    env["PYTHONPATH"] = str(REPO_ROOT)
    # granian logs an application's exceptions on stdout.
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=os.environ | env, stdout=log, stderr=log)
    return process, port


def logged_errors(log: IO[bytes]) -> dict[str, int]:
    """The exceptions a server logged, by their last traceback line, with their counts."""
    log.seek(0)
    found: dict[str, int] = {}
    in_traceback = False
    for raw in log.read().decode(errors="replace").splitlines():
        if raw.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and not raw.startswith(" "):
            found[raw[:200]] = found.get(raw[:200], 0) + 1
            in_traceback = False
    return found


def stop_servers(servers: list[subprocess.Popen[bytes]], grace: float = 10.0) -> int:
    """Stop ``servers`` together (SIGINT, then SIGKILL after ``grace`` s); how many were killed.

    A server's child processes (granian's workers) are killed too if they
    outlive it: a killed granian main process would leave its worker running.
    """
    children = [
        pid for server in servers if server.poll() is None for pid in descendants(server.pid)
    ]
    for server in servers:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    killed = 0
    for server in servers:
        try:
            server.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            killed += 1
    for pid in children:
        with contextlib.suppress(OSError):  # most have exited with their server
            # Only a process that still is one of ours (a pid may have been reused).
            if b"bench.fanout_app" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
    return killed


def wait_until_ready(server: subprocess.Popen[bytes], port: int) -> dict[str, Any]:
    """Wait until the server answers ``GET /info``; its answer."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"a server exited with code {server.returncode}")
        try:
            return http_get(port, "/info", timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("a server did not start in time") from None
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """CPU time of every live thread of ``pid``, nanosecond resolution, from ``/proc``.

    The first field of ``/proc/<pid>/task/<tid>/schedstat`` is the time the
    thread ran (user + system), in ns; ``/proc/<pid>/stat`` counts in 10 ms
    ticks, too coarse for a phase of the floor (tens of ms). A thread that
    exits during a phase would take its time with it: the servers' threads
    (the event loop, asgiref's thread pools) and Redis's live for the whole run.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # the thread ended while we looked
    return total / 1e9


def descendants(pid: int) -> list[int]:
    """``pid``'s child processes and theirs (granian's workers), from ``/proc``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += [int(child), *descendants(int(child))]
    return found


def tree_cpu_seconds(pid: int) -> float:
    """:func:`cpu_seconds` of ``pid`` and every process under it."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        try:
            total += cpu_seconds(member)
        except OSError:
            continue  # the process ended while we looked
    return total


def rss_bytes(pid: int) -> int:
    """The process's resident set size (``VmRSS`` in ``/proc/<pid>/status``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class LinePipe:
    """A child Python process that talks in JSON lines: commands in, answers out."""

    def __init__(self, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=os.environ | (env or {}),
        )
        self.module = module
        self.ready: dict[str, Any] = {}

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()

    def read(self, timeout: float) -> dict[str, Any]:
        """The next answer; a ``{"failed": ...}`` answer or silence raises RuntimeError."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            state = "exited" if self.process.poll() is not None else f"silent for {timeout:.0f} s"
            raise RuntimeError(f"{self.module} {state}")
        answer: dict[str, Any] = json.loads(line)
        if "failed" in answer:
            raise RuntimeError(f"{self.module}: {answer['failed']}")
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()  # the end of stdin: close the connections, exit
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def subscribers(
    urls: list[str], count: int, hello: dict[str, Any], timeout: float, deflate: bool = False
) -> LinePipe:
    """Start a :mod:`bench.fanout_client` process with ``count`` connections; wait for it.

    Its ``ready`` answer is kept as ``pipe.ready`` (``deflate`` offers
    permessage-deflate as browsers do; ``ready["deflated"]`` counts who got it).
    """
    config = {
        "urls": urls,
        "connections": count,
        "hello": hello,
        "expected": PAYLOAD,
        "timeout": timeout,
        "deflate": deflate,
    }
    pipe = LinePipe("bench.fanout_client", json.dumps(config))
    try:
        answer = pipe.read(timeout * 5)
    except RuntimeError:
        pipe.close()
        raise
    if answer.get("ready") != count:
        pipe.close()
        raise RuntimeError(f"expected {count} subscribers, got {answer!r}")
    pipe.ready = answer
    return pipe


class RedisServer:
    """A ``redis-server`` of the benchmark's own on a free port of 127.0.0.1, no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + SERVER_START_SECONDS
        client = redis.Redis(port=self.port, socket_timeout=1)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
