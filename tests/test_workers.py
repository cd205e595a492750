"""Tests for rohrpost.workers: sync handlers in Channels' shared thread or in a pool.

The unit tests call :mod:`rohrpost.workers` directly. The end-to-end tests
start ``uvicorn tests.e2e.pool_app:application`` (sync handlers only) with
``SYNC_THREADS`` 4 on a SQLite file and on PostgreSQL, and with 1 (today's
shared thread) as the control, and talk to it with real WebSocket clients.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection, connect

from rohrpost import workers
from tests.e2e.conftest import STARTUP_SECONDS, _accepts_connections, _free_port, _stop
from tests.e2e.wire import IO_SECONDS, call, recv_json, send_json
from tests.services import POSTGRES, require_service

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("async", "sync")
#: Threads in the pool of the servers under test.
POOL = 4
_ids = itertools.count(1)


# --- unit tests --------------------------------------------------------------------


def test_by_default_there_is_no_pool() -> None:
    assert workers.executor() is None


async def test_without_a_pool_a_call_runs_in_channels_shared_thread() -> None:
    shared = await sync_to_async(threading.current_thread)()
    ran_in = await workers.in_thread(threading.current_thread, None)()
    assert ran_in is shared
    assert ran_in is not threading.current_thread()


def test_sync_threads_makes_one_pool_of_that_size(settings: Any) -> None:
    settings.ROHRPOST = {"SYNC_THREADS": 3}
    pool = workers.executor()
    assert pool is not None
    assert pool._max_workers == 3
    assert workers.executor() is pool


async def test_with_a_pool_a_call_runs_in_one_of_its_threads(settings: Any) -> None:
    settings.ROHRPOST = {"SYNC_THREADS": 2}
    pool = workers.executor()
    ran_in = await workers.in_thread(threading.current_thread, pool)()
    assert ran_in.name.startswith("rohrpost-sync")


async def test_a_pool_runs_calls_at_the_same_time(settings: Any) -> None:
    """Two calls meet at a barrier: each waits for the other, so both run at once."""
    settings.ROHRPOST = {"SYNC_THREADS": 2}
    barrier = threading.Barrier(2)
    meet = workers.in_thread(lambda: barrier.wait(timeout=5), workers.executor())
    assert sorted(await asyncio.gather(meet(), meet())) == [0, 1]


def test_a_function_gets_one_adapter_per_pool(settings: Any) -> None:
    settings.ROHRPOST = {"SYNC_THREADS": 2}
    pool = workers.executor()
    assert workers.in_thread(print, pool) is workers.in_thread(print, pool)
    assert workers.in_thread(print, pool) is not workers.in_thread(print, None)


class Unhashable:
    """A callable handler object that cannot be a dict key (``__eq__`` without ``__hash__``)."""

    def __eq__(self, other: object) -> bool:
        return other is self

    def __call__(self) -> str:
        return threading.current_thread().name


async def test_a_callable_that_cannot_be_hashed_still_runs_in_the_pool(settings: Any) -> None:
    settings.ROHRPOST = {"SYNC_THREADS": 2}
    ran_in = await workers.in_thread(Unhashable(), workers.executor())()
    assert ran_in.startswith("rohrpost-sync")


# --- end to end: a real server ---------------------------------------------------------


class PoolServer:
    """A running uvicorn serving tests.e2e.pool_app."""

    def __init__(
        self, port: int, process: subprocess.Popen[bytes], log: Path, database: str, app: str
    ) -> None:
        self.database = database
        self.port = port
        self.process = process
        self.log_path = log
        self.app = app

    def url(self, endpoint: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{endpoint}/"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _postgres(dbname: str | None = None) -> Any:
    import psycopg

    return psycopg.connect(
        host=POSTGRES["HOST"],
        port=POSTGRES["PORT"],
        user=POSTGRES["USER"],
        dbname=dbname or POSTGRES["NAME"],
        autocommit=True,
    )


def _prepare_postgres() -> None:
    """Make the test database when missing, and an empty ``pool_note`` table in it."""
    require_service("PostgreSQL", str(POSTGRES["HOST"]), int(POSTGRES["PORT"]))
    with _postgres("postgres") as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [POSTGRES["NAME"]]
        ).fetchone()
        if exists is None:
            admin.execute(f'CREATE DATABASE "{POSTGRES["NAME"]}"')
    with _postgres() as db:
        db.execute("DROP TABLE IF EXISTS pool_note")
        db.execute("CREATE TABLE pool_note (id INTEGER)")


def backends(app: str) -> int:
    """How many PostgreSQL connections the server with ``application_name`` ``app`` holds."""
    with _postgres() as db:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [app]
        ).fetchone()
    return int(row[0])


def _start(tmp: Path, database: str, threads: int) -> PoolServer:
    app = f"rohrpost-pool-{uuid.uuid4().hex[:12]}"
    sqlite_path = tmp / "pool.sqlite3"
    if database == "postgres":
        _prepare_postgres()
    else:
        with sqlite3.connect(sqlite_path) as db:
            db.execute("CREATE TABLE pool_note (id INTEGER)")
    port = _free_port()
    log = tmp / "server.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.pool_settings",
        "ROHRPOST_POOL_DB": database,
        "ROHRPOST_POOL_THREADS": str(threads),
        "ROHRPOST_POOL_SQLITE": str(sqlite_path),
        "ROHRPOST_POOL_APP": app,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        *(sys.executable, "-m", "uvicorn", "tests.e2e.pool_app:application"),
        *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"),
        *("--log-level", "warning"),
    ]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = PoolServer(port, process, log, database, app)
    deadline = time.monotonic() + STARTUP_SECONDS
    while not _accepts_connections(port):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"the pool server did not start; its output:\n{server.log()}")
        time.sleep(0.05)
    return server


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def pool_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PoolServer]:
    """A server with a pool of :data:`POOL` threads, on each database in turn."""
    database = str(request.param)
    server = _start(tmp_path_factory.mktemp(f"pool-{database}"), database, POOL)
    yield server
    _stop(server.process)


@pytest.fixture(scope="module")
def shared_thread_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolServer]:
    """A server with the default ``SYNC_THREADS = 1`` (Channels' shared thread), on SQLite."""
    server = _start(tmp_path_factory.mktemp("pool-one"), "sqlite", 1)
    yield server
    _stop(server.process)


@pytest.fixture(params=ENDPOINTS)
def endpoint(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def clients() -> AsyncIterator[Any]:
    """``await clients(url)``: an open WebSocket connection, closed after the test."""
    opened: list[ClientConnection] = []

    async def open_connection(url: str) -> ClientConnection:
        connection = await connect(url, open_timeout=IO_SECONDS, close_timeout=IO_SECONDS)
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        await connection.close()


async def ask(connection: ClientConnection, request_type: str, data: Any = None) -> Any:
    """Send one request and return its reply's data (the reply must be no error)."""
    request_id = next(_ids)
    reply = await call(connection, {"id": request_id, "type": request_type, "data": data})
    assert "error" not in reply, reply
    assert reply["id"] == request_id
    return reply["data"]


async def meet_at(server: PoolServer, clients: Any, endpoint: str, timeout: float) -> list[Any]:
    """Two connections call ``meet`` at one new barrier; return both replies' data."""
    first, second = await clients(server.url(endpoint)), await clients(server.url(endpoint))
    data = {"barrier": uuid.uuid4().hex, "timeout": timeout}
    return list(await asyncio.gather(ask(first, "meet", data), ask(second, "meet", data)))


async def test_handlers_of_two_connections_run_at_the_same_time(
    pool_server: PoolServer, clients: Any, endpoint: str
) -> None:
    """Each handler waits at a barrier until the other arrives: only a pool lets both in."""
    assert await meet_at(pool_server, clients, endpoint, timeout=10) == [{"met": True}] * 2


async def test_with_one_thread_handlers_of_two_connections_take_turns(
    shared_thread_server: PoolServer, clients: Any, endpoint: str
) -> None:
    """The control: in Channels' one thread the first handler waits alone, then gives up."""
    replies = await meet_at(shared_thread_server, clients, endpoint, timeout=0.5)
    assert replies == [{"met": False}] * 2


async def test_a_connections_requests_are_handled_one_after_the_other(
    pool_server: PoolServer, clients: Any, endpoint: str
) -> None:
    """Many busy connections: each one's handlers still see its earlier requests done."""

    async def busy(connection: ClientConnection) -> None:
        ids = [next(_ids) for _ in range(15)]
        for request_id in ids:  # all sent before any reply is read
            await send_json(connection, {"id": request_id, "type": "note"})
        for position, request_id in enumerate(ids):
            reply = await recv_json(connection)
            assert reply == {"id": request_id, "type": "note", "data": {"before": ids[:position]}}

    connections = [await clients(pool_server.url(endpoint)) for _ in range(3 * POOL)]
    await asyncio.gather(*(busy(connection) for connection in connections))


async def test_writes_from_every_pool_thread_all_land(
    pool_server: PoolServer, clients: Any, endpoint: str
) -> None:
    """Inserts from several threads at once: none fails (on SQLite they wait for the lock)."""
    connections = [await clients(pool_server.url(endpoint)) for _ in range(2 * POOL)]
    before = await ask(connections[0], "count")

    async def write(connection: ClientConnection) -> list[int]:
        return [await ask(connection, "count") for _ in range(5)]

    counts = await asyncio.gather(*(write(connection) for connection in connections))
    assert max(itertools.chain(*counts)) == before + 5 * len(connections)


async def test_a_pool_thread_joins_a_group_and_sends(
    pool_server: PoolServer, clients: Any, endpoint: str
) -> None:
    member = await clients(pool_server.url(endpoint))
    other = await clients(pool_server.url(endpoint))
    group = f"room-{uuid.uuid4().hex[:8]}"
    request_id = next(_ids)
    await send_json(member, {"id": request_id, "type": "join", "data": {"group": group}})
    sent = await recv_json(member)
    assert sent["type"] == "joining"
    assert sent["data"] == {"group": group}
    reply = await recv_json(member)
    assert reply["id"] == request_id
    assert reply["data"]["joined"] == group
    assert reply["data"]["thread"].startswith("rohrpost-sync")
    assert await ask(other, "shout", {"group": group, "text": "hello"}) is True
    assert await recv_json(member) == {"type": "shout", "data": {"text": "hello"}}


async def _wait_for_backends(app: str, expected: int) -> None:
    """Wait (bounded) until the server holds ``expected`` PostgreSQL connections."""
    deadline = time.monotonic() + IO_SECONDS
    while (found := await asyncio.to_thread(backends, app)) != expected:
        assert time.monotonic() < deadline, f"{found} connections, expected {expected}"
        await asyncio.sleep(0.05)


# Connections are counted in PostgreSQL's pg_stat_activity.
@pytest.mark.parametrize("pool_server", ["postgres"], indirect=True)
async def test_each_pool_thread_has_its_own_database_connection_closed_after_the_call(
    pool_server: PoolServer, clients: Any, endpoint: str
) -> None:
    app = pool_server.app
    await _wait_for_backends(app, 0)
    holders = [await clients(pool_server.url(endpoint)) for _ in range(POOL - 1)]
    name = uuid.uuid4().hex
    held = [asyncio.ensure_future(ask(holder, "hold", {"name": name})) for holder in holders]
    await _wait_for_backends(app, POOL - 1)  # one connection per busy thread
    releaser = await clients(pool_server.url(endpoint))
    assert await ask(releaser, "release", {"name": name}) is True
    replies = await asyncio.gather(*held)
    assert len({reply["backend"] for reply in replies}) == POOL - 1
    await _wait_for_backends(app, 0)  # CONN_MAX_AGE = 0: closed after each call
