"""A demo server for tests: started the way ``make demo`` starts it, on a free port.

:func:`run_demo` runs ``manage.py migrate`` and then uvicorn from ``example/``
with ``DJANGO_SETTINGS_MODULE=demo.settings``, its SQLite database in the
given directory (``DEMO_DB_PATH``, so ``example/db.sqlite3`` is never
touched) and the in-memory channel layer. Every wait is bounded and the
server is killed at the end. The demo, client and browser tests share it.

``ROHRPOST_DEMO_SERVER=granian`` runs every such test on granian instead of
uvicorn (``server="granian"`` does it for one server).
:func:`run_demo_processes` serves the demo in several processes, as
``make demo WORKERS=2`` does, and :func:`run_redis_server` starts a Redis of
the test's own for them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services import services_required

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example"
WS_PATH = "/ws/rohrpost/"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: rohrpost's default ``MAX_FRAME_BYTES``, which the demo keeps.
MAX_FRAME_BYTES = 262144
#: The WebSocket limits of ``make demo`` (the Makefile's ``UVICORN_WS``): uvicorn
#: refuses a message over ``MAX_FRAME_BYTES`` with 1009 before rohrpost sees it,
#: and closes a peer that leaves a ping unanswered for 20 s.
UVICORN_WS_OPTIONS = (
    "--ws-max-size",
    str(MAX_FRAME_BYTES),
    "--ws-ping-interval",
    "20",
    "--ws-ping-timeout",
    "20",
)
#: The ASGI servers the demo's tests run on.
SERVERS = ("uvicorn", "granian")
#: The server of :func:`run_demo` unless a test asks for one.
DEFAULT_SERVER = os.environ.get("ROHRPOST_DEMO_SERVER", "uvicorn")


@dataclass(frozen=True)
class DemoServer:
    """A running demo server process and where to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    #: The server's SQLite file: run ``manage.py`` with ``DEMO_DB_PATH`` set to it.
    db_path: Path
    #: The channels_redis URL the server uses, or ``None`` for the in-memory layer.
    redis_url: str | None = None
    #: ``uvicorn`` or ``granian``.
    server: str = "uvicorn"

    def manage_env(self) -> dict[str, str]:
        """The environment for a ``manage.py`` command against this server's data and layer."""
        return _demo_env(self.db_path, self.redis_url)

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py`` against this server's database and channel layer."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=EXAMPLE_DIR,
            env=self.manage_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def token(self, username: str) -> str:
        """A token for ``username``, printed by ``manage.py demo_token``."""
        result = self.manage("demo_token", username)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_listening(server: DemoServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"The demo server exited early:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"The demo server did not listen within {START_TIMEOUT} s:\n{server.log()}")


def _demo_env(db_path: Path, redis_url: str | None) -> dict[str, str]:
    """The demo's environment: its settings, its SQLite file, Redis or the in-memory layer."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "demo.settings", "DEMO_DB_PATH": str(db_path)}
    env.pop("REDIS_URL", None)
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


def server_command(port: int, server: str = "uvicorn") -> list[str]:
    """The command that serves the demo on ``port`` from ``example/``, as the docs show it.

    uvicorn gets ``make demo``'s WebSocket limits; granian has no WebSocket
    options (see docs/deployment.md) and runs its ASGI interface without
    lifespan, as uvicorn's ``--lifespan off``.
    """
    if server == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", "demo.asgi:application"),
            *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"),
            *UVICORN_WS_OPTIONS,
        ]
    if server == "granian":
        return [
            *(sys.executable, "-m", "granian", "--interface", "asginl"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            "demo.asgi:application",
        ]
    raise ValueError(f"unknown server {server!r}, not one of {SERVERS}")


def _migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
        cwd=EXAMPLE_DIR,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextmanager
def run_demo(
    directory: Path, *, redis_url: str | None = None, server: str = DEFAULT_SERVER
) -> Iterator[DemoServer]:
    """Migrate a fresh database in ``directory`` and serve the demo as ``make demo`` does.

    Args:
        directory: Where the SQLite file and the server's log go.
        redis_url: Serve with channels_redis at this URL (the demo's ``REDIS_URL``);
            by default the zero-setup path, the in-memory channel layer.
        server: ``uvicorn`` (as ``make demo``) or ``granian``.
    """
    db_path = directory / "demo.sqlite3"
    env = _demo_env(db_path, redis_url)
    _migrate(env)
    port = _free_port()
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(port, server),
            cwd=EXAMPLE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    demo = DemoServer(process, port, log_path, db_path, redis_url, server)
    try:
        _wait_until_listening(demo)
        yield demo
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def restarted_demo(
    demo: DemoServer, while_down: Callable[[], object] | None = None
) -> Iterator[DemoServer]:
    """Stop ``demo`` and serve it again on the same port and database.

    What the server held in memory (the in-memory channel layer, its groups,
    its history) is gone, as after a deploy. ``while_down`` runs between the
    stop and the start.
    """
    if demo.process.poll() is None:
        demo.process.terminate()
        try:
            demo.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            demo.process.kill()
            demo.process.wait(timeout=STOP_TIMEOUT)
    if while_down is not None:
        while_down()
    env = _demo_env(demo.db_path, demo.redis_url)
    with demo.log_path.open("ab") as log:
        process = subprocess.Popen(
            server_command(demo.port, demo.server),
            cwd=EXAMPLE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    again = DemoServer(process, demo.port, demo.log_path, demo.db_path, demo.redis_url, demo.server)
    try:
        _wait_until_listening(again)
        yield again
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _free_ports_in_a_row(count: int) -> int:
    """The first of ``count`` free ports in a row."""
    for _ in range(50):
        port = _free_port()
        if all(_bindable(port + index) for index in range(1, count)):
            return port
    raise RuntimeError(f"no {count} free ports in a row")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def run_demo_processes(
    directory: Path, *, redis_url: str, workers: int = 2
) -> Iterator[list[DemoServer]]:
    """Serve the demo in ``workers`` processes as ``make demo WORKERS=...`` does.

    ``example/demo/serve.py`` migrates and starts one uvicorn per process on
    consecutive ports. At the end it is stopped as Ctrl-C would, and every
    process must be gone.

    Returns:
        One :class:`DemoServer` per process (they share the launcher's process
        and log), in port order.
    """
    db_path = directory / "demo.sqlite3"
    port = _free_ports_in_a_row(workers)
    log_path = directory / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "demo.serve"),
                *("--workers", str(workers), "--port", str(port)),
                *UVICORN_WS_OPTIONS,
            ],
            cwd=EXAMPLE_DIR,
            env=_demo_env(db_path, redis_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    servers = [
        DemoServer(process, port + index, log_path, db_path, redis_url) for index in range(workers)
    ]
    try:
        for server in servers:
            _wait_until_listening(server)
        yield servers
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
    for server in servers:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", server.port)) != 0, f"{server.port} still open"


@contextmanager
def run_redis_server(directory: Path) -> Iterator[str]:
    """A ``redis-server`` of the test's own on a free port, never the shared one.

    Yields:
        Its URL, database 0.
    """
    executable = shutil.which("redis-server")
    if executable is None:
        reason = "redis-server is not installed"
        if services_required():
            pytest.fail(f"{reason}, and ROHRPOST_REQUIRE_SERVICES is set", pytrace=False)
        pytest.skip(reason)
    port = _free_port()
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(directory)]
    with (directory / "redis.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"redis-server did not start: {(directory / 'redis.log').read_text()}"
                    )
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=STOP_TIMEOUT)
