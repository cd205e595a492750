"""The server :mod:`bench.sync_pool` measures: sync handlers that query a database.

Run as ``uvicorn bench.sync_pool_app:application``; the benchmark chooses
through the environment:

- ``ROHRPOST_BENCH_THREADS``: ``ROHRPOST["SYNC_THREADS"]`` (1: Channels' shared thread);
- ``ROHRPOST_BENCH_DB``: ``postgres`` (database ``ROHRPOST_BENCH_PGDATABASE`` on
  127.0.0.1:5432, user ``postgres``) or ``sqlite`` (the file ``ROHRPOST_BENCH_SQLITE``);
- ``ROHRPOST_BENCH_QUERY``: the SQL the ``query`` handler runs (its one row's
  first column is the reply).

Both consumers serve the one handler: ``/async`` (``AsyncRohrpostConsumer``)
and ``/sync`` (``SyncRohrpostConsumer``). Database connections are kept
(``CONN_MAX_AGE = 60``), as a deployment that cares about latency keeps them.
``GET /cpu`` answers the server's CPU clock (the benchmark's readiness probe).
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.server_kit import configure, json_endpoint, server_facts

DATABASE: dict[str, Any]
if os.environ.get("ROHRPOST_BENCH_DB", "sqlite") == "postgres":
    DATABASE = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": 5432,
        "USER": "postgres",
        "NAME": os.environ.get("ROHRPOST_BENCH_PGDATABASE", "rohrpost_bench"),
    }
else:
    DATABASE = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ROHRPOST_BENCH_SQLITE", "bench.sqlite3"),
    }
configure(
    DATABASES={"default": {**DATABASE, "CONN_MAX_AGE": 60}},
    ROHRPOST={
        "RATE_LIMIT": None,
        "SYNC_THREADS": int(os.environ.get("ROHRPOST_BENCH_THREADS", "1")),
    },
)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.db import connection  # noqa: E402
from django.urls import path  # noqa: E402

from rohrpost import AsyncRohrpostConsumer, HandlerRegistry, SyncRohrpostConsumer  # noqa: E402

QUERY = os.environ.get("ROHRPOST_BENCH_QUERY", "SELECT 1")

handlers = HandlerRegistry()


@handlers.handler("query")
def query(consumer: Any, request: dict[str, Any]) -> Any:
    """A 4.x-style sync handler: one database query, its first column as the reply."""
    with connection.cursor() as cursor:
        cursor.execute(QUERY)
        return cursor.fetchone()[0]


class AsyncQuery(AsyncRohrpostConsumer):
    rohrpost_registry = handlers


class SyncQuery(SyncRohrpostConsumer):
    rohrpost_registry = handlers


def _cpu_clock() -> dict[str, Any]:
    return {"process_time": time.process_time()} | server_facts()


application = ProtocolTypeRouter(
    {
        "http": json_endpoint("/cpu", _cpu_clock),
        "websocket": URLRouter(
            [path("async", AsyncQuery.as_asgi()), path("sync", SyncQuery.as_asgi())]
        ),
    }
)
