"""Fixtures for the end-to-end tests: a real uvicorn server and real WebSocket clients.

``e2e_server`` starts ``uvicorn tests.e2e.app:application`` in a subprocess
on a free port of 127.0.0.1, once per JSON codec (so every test runs against
both), and yields an :class:`E2EServer` (URLs, process, log); ``ws_connect``
opens client connections with :mod:`websockets` and closes them after the
test. Every wait is bounded, so a broken server fails a test instead of
hanging the run, and the server is stopped at the end of the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.wire import IO_SECONDS

ROOT = Path(__file__).resolve().parents[2]
#: How long the server may take to accept connections.
STARTUP_SECONDS = 15.0
#: The two endpoints tests.e2e.app routes.
ENDPOINTS = ("async", "sync")
#: The JSON codecs the server runs with, in turn (rohrpost.encoding: ROHRPOST_JSON).
CODECS = ("orjson", "json")


class E2EServer:
    """A running uvicorn process: where it listens and where it logs."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, log_path: Path, codec: str
    ) -> None:
        self.process = process
        self.codec = codec
        self.port = port
        self.log_path = log_path
        self.base_url = f"ws://127.0.0.1:{port}/ws/"

    def url(self, endpoint: str) -> str:
        """Return the URL of ``endpoint`` (``"async"`` or ``"sync"``)."""
        return f"{self.base_url}{endpoint}/"

    def log(self) -> str:
        """Return what the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session", params=CODECS)
def e2e_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2EServer]:
    """Start ``uvicorn tests.e2e.app:application`` on 127.0.0.1, once per JSON codec."""
    codec = str(request.param)
    if codec == "orjson":
        pytest.importorskip("orjson")
    port = _free_port()
    log_path = tmp_path_factory.mktemp(f"e2e-server-{codec}") / "server.log"
    env = {
        **os.environ,
        "ROHRPOST_JSON": codec,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
        # The working tree's rohrpost first, then the repository root for tests.e2e.
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.e2e.app:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = E2EServer(process, port, log_path, codec)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _accepts_connections(port):
            if process.poll() is not None:
                pytest.fail(
                    f"uvicorn exited with code {process.returncode} before accepting "
                    f"connections on port {port}; its output:\n{server.log()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"uvicorn did not accept connections on port {port} within "
                    f"{STARTUP_SECONDS:.0f} s; its output:\n{server.log()}"
                )
            time.sleep(0.05)
        yield server
    finally:
        _stop(process)


@pytest.fixture(params=ENDPOINTS)
def endpoint(request: pytest.FixtureRequest) -> str:
    """Each endpoint in turn: ``"async"`` and ``"sync"``."""
    return str(request.param)


class Connect(Protocol):
    """``await ws_connect(endpoint, source=...)``: a connection from a loopback address."""

    def __call__(self, name: str, source: str = ...) -> Awaitable[ClientConnection]: ...


@pytest.fixture
async def ws_connect(e2e_server: E2EServer) -> AsyncIterator[Connect]:
    """Return ``await ws_connect("async" | "sync")``: an open client connection.

    Connections still open at the end of the test are closed.
    """
    opened: list[ClientConnection] = []

    async def open_connection(name: str, source: str = "127.0.0.1") -> ClientConnection:
        # Flood tests connect from other loopback addresses (all of 127/8 is
        # loopback on Linux): the server refuses a flood-closed address for a while.
        connection = await connect(
            e2e_server.url(name),
            open_timeout=IO_SECONDS,
            close_timeout=IO_SECONDS,
            local_addr=(source, 0),
        )
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        await connection.close()
    assert e2e_server.process.poll() is None, f"the server died; its output:\n{e2e_server.log()}"


@pytest.fixture
async def ws(ws_connect: Connect, endpoint: str) -> ClientConnection:
    """One open client connection to ``endpoint``."""
    return await ws_connect(endpoint)
