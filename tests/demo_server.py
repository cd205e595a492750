"""A demo server for tests: started the way ``make demo`` starts it, on a free port.

:func:`run_demo` runs ``manage.py migrate`` and then uvicorn from ``example/``
with ``DJANGO_SETTINGS_MODULE=demo.settings``, its SQLite database in the
given directory (``DEMO_DB_PATH``, so ``example/db.sqlite3`` is never
touched) and the in-memory channel layer. Every wait is bounded and the
server is killed at the end. The demo, client and browser tests share it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@contextmanager
def run_demo(directory: Path, *, redis_url: str | None = None) -> Iterator[DemoServer]:
    """Migrate a fresh database in ``directory`` and serve the demo as ``make demo`` does.

    Args:
        directory: Where the SQLite file and the server's log go.
        redis_url: Serve with channels_redis at this URL (the demo's ``REDIS_URL``);
            by default the zero-setup path, the in-memory channel layer.
    """
    db_path = directory / "demo.sqlite3"
    env = _demo_env(db_path, redis_url)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
        cwd=EXAMPLE_DIR,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = _free_port()
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "demo.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
                *UVICORN_WS_OPTIONS,
            ],
            cwd=EXAMPLE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = DemoServer(process, port, log_path, db_path, redis_url)
    try:
        _wait_until_listening(server)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)
