"""End-to-end tests of the demo project, started the way ``make demo`` starts it.

Each test runs on uvicorn and on granian. Each server runs ``manage.py migrate``
and then the ASGI server from ``example/`` with
``DJANGO_SETTINGS_MODULE=demo.settings``, on a free port and with its SQLite
database in a temporary directory (``DEMO_DB_PATH``), so ``example/db.sqlite3``
is never touched. Every wait is bounded and every server is killed at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from importlib.metadata import metadata
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.demo_server import (
    EXAMPLE_DIR,
    SERVERS,
    STOP_TIMEOUT,
    WS_PATH,
    DemoServer,
    run_demo,
)

pytestmark = pytest.mark.e2e

IO_TIMEOUT = 10.0


@pytest.fixture(scope="module", params=SERVERS)
def server_name(request: pytest.FixtureRequest) -> str:
    """The ASGI server the demo runs on: each test runs on uvicorn and on granian."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, server_name: str) -> Iterator[DemoServer]:
    """One demo server shared by the tests that leave it running."""
    with run_demo(tmp_path_factory.mktemp("demo"), server=server_name) as server:
        yield server


@pytest.fixture
def fresh_demo(tmp_path: Path, server_name: str) -> Iterator[DemoServer]:
    """A demo server of its own, for a test that stops it."""
    with run_demo(tmp_path, server=server_name) as server:
        yield server


#: What each server logs when it has shut down cleanly.
SHUTDOWN_LINE = {"uvicorn": "Finished server process", "granian": "Granian shutdown completed"}


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as response:  # noqa: S310 - a local http URL
        return response.status, response.read().decode()


async def _call(connection: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    await asyncio.wait_for(connection.send(json.dumps(frame)), IO_TIMEOUT)
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))
    return reply


def _connect(server: DemoServer, origin: str | None = None) -> connect:
    return connect(
        server.ws_url,
        origin=origin or server.base_url,  # type: ignore[arg-type]
        open_timeout=IO_TIMEOUT,
        close_timeout=IO_TIMEOUT,
    )


def test_page_is_served_and_names_the_websocket_path(demo: DemoServer) -> None:
    status, body = _get(demo.base_url + "/")
    assert status == 200
    assert f'data-ws-path="{WS_PATH}"' in body


def test_static_files_are_served_by_the_asgi_server_in_debug(demo: DemoServer) -> None:
    status, body = _get(demo.base_url + "/static/demo/demo.js")
    assert status == 200
    assert "RohrpostClient" in body
    # The JavaScript client itself, from clients/js/src (no build step).
    status, body = _get(demo.base_url + "/static/rohrpost/rohrpost.js")
    assert status == 200
    assert "export class RohrpostClient" in body


async def test_ping_gets_a_pong(demo: DemoServer) -> None:
    async with _connect(demo) as connection:
        assert await _call(connection, {"id": 1, "type": "ping"}) == {"id": 1, "type": "pong"}


async def test_echo_replies_with_the_request_data(demo: DemoServer) -> None:
    async with _connect(demo) as connection:
        reply = await _call(connection, {"id": "e1", "type": "echo", "data": {"hello": [1, 2]}})
    assert reply == {"id": "e1", "type": "echo", "data": {"hello": [1, 2]}}


async def test_demo_handler_error_reply_carries_its_code(demo: DemoServer) -> None:
    async with _connect(demo) as connection:
        reply = await _call(connection, {"id": 7, "type": "add", "data": "not numbers"})
    assert reply["id"] == 7
    assert reply["code"] == "invalid"
    assert "error" in reply


async def test_foreign_origin_is_rejected_with_403(demo: DemoServer) -> None:
    with pytest.raises(InvalidStatus) as excinfo:
        async with _connect(demo, origin="http://evil.example"):
            pass
    assert excinfo.value.response.status_code == 403


async def test_sigint_stops_the_server_cleanly(fresh_demo: DemoServer) -> None:
    """Ctrl-C ends the server promptly, closing open connections, without a traceback."""
    async with _connect(fresh_demo) as connection:
        assert (await _call(connection, {"id": 1, "type": "ping"}))["type"] == "pong"
        fresh_demo.process.send_signal(signal.SIGINT)
        returncode = await asyncio.to_thread(fresh_demo.process.wait, STOP_TIMEOUT)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(connection.recv(), IO_TIMEOUT)
    log = fresh_demo.log()
    # 0 with today's uvicorn and granian; a version that re-raises the caught signal
    # after its graceful shutdown ends by SIGINT instead, which is just as clean.
    assert returncode in (0, -signal.SIGINT), log
    assert SHUTDOWN_LINE[fresh_demo.server] in log
    assert "Traceback" not in log


def test_make_demo_installs_the_runtime_extras_and_no_test_tools(tmp_path: Path) -> None:
    """On a fresh clone, ``make demo`` installs what the demo runs, not the dev group."""
    root = EXAMPLE_DIR.parent
    plan = subprocess.run(
        ["make", "--dry-run", "demo", f"VENV={tmp_path / 'venv'}"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    installs = [line for line in plan.splitlines() if "pip install" in line]
    assert len(installs) == 1, plan
    assert "--group" not in installs[0]
    extras = re.search(r'-e "\.\[([a-z,]+)\]"', installs[0])
    assert extras, installs[0]
    known = set(metadata("rohrpost").get_all("Provides-Extra") or [])
    assert set(extras[1].split(",")) == {"server", "client", "redis", "fast", "pydantic"} <= known


def test_make_demo_with_workers_runs_the_multi_process_launcher(tmp_path: Path) -> None:
    """``WORKERS=2`` goes to ``demo.serve``; without it ``make demo`` runs one uvicorn as before."""

    def plan(*variables: str) -> str:
        return subprocess.run(
            ["make", "--dry-run", "demo", f"VENV={tmp_path / 'venv'}", "PORT=8100", *variables],
            cwd=EXAMPLE_DIR.parent,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout

    assert "-m demo.serve --workers 2 --port 8100 --ws-max-size 262144" in plan("WORKERS=2")
    single = plan()
    assert "-m demo.serve" not in single
    assert "-m uvicorn demo.asgi:application --host 127.0.0.1 --port 8100" in single


def test_several_workers_without_redis_are_refused_with_the_reason(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_DB_PATH": str(tmp_path / "demo.sqlite3")}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "demo.serve", "--workers", "2", "--port", "8100"],
        cwd=EXAMPLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("WORKERS=2 needs REDIS_URL: the in-memory channel layer")
    assert "make demo WORKERS=2 REDIS_URL=redis://" in result.stderr
    assert not (tmp_path / "demo.sqlite3").exists()  # nothing started, not even migrate
