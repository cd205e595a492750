"""The ASGI application the sync-pool tests serve with uvicorn (:mod:`tests.test_workers`).

``ws/async/`` is :class:`rohrpost.AsyncRohrpostConsumer`, ``ws/sync/`` is
:class:`rohrpost.SyncRohrpostConsumer`. Every handler here is a plain sync
function, so each runs where ``ROHRPOST["SYNC_THREADS"]`` says::

    meet     waits at the barrier data["barrier"] for a second caller (at most
             data["timeout"] s) and returns whether the other one came
    note     appends the request id to the connection's list, after a query and
             a short random pause; returns the list as it was before
    hold     queries the database, then waits for release(data["name"]); returns
             the database connection's backend id
    release  lets every hold(data["name"]) go on
    join     consumer.add_to_group(data["group"]) and send_message(...) from the thread
    shout    send_to_group(data["group"], {"type": "shout", "data": {"text": ...}})
    count    inserts a row into pool_note (the test makes the table) and returns
             how many rows it holds
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e.pool_settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.db import connection  # noqa: E402
from django.urls import path  # noqa: E402

from rohrpost import (  # noqa: E402
    AsyncRohrpostConsumer,
    SyncRohrpostConsumer,
    rohrpost_handler,
    send_message,
    send_to_group,
)

_lock = threading.Lock()
_barriers: dict[str, threading.Barrier] = {}
_releases: defaultdict[str, threading.Event] = defaultdict(threading.Event)


def _query(value: int) -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s", [value])
        return cursor.fetchone()[0]


@rohrpost_handler("meet")
def handle_meet(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    with _lock:
        barrier = _barriers.setdefault(request["data"]["barrier"], threading.Barrier(2))
    try:
        barrier.wait(timeout=request["data"]["timeout"])
    except threading.BrokenBarrierError:
        return {"met": False}
    return {"met": True}


@rohrpost_handler("note")
def handle_note(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    seen: list[Any] = consumer.__dict__.setdefault("pool_seen", [])
    before = list(seen)
    _query(1)
    time.sleep(random.random() / 500)  # two notes of one connection at once would interleave
    seen.append(request["id"])
    return {"before": before}


@rohrpost_handler("hold")
def handle_hold(consumer: Any, request: dict[str, Any]) -> Any:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
    else:
        backend = _query(1)
    _releases[request["data"]["name"]].wait(timeout=10)
    return {"backend": backend}


@rohrpost_handler("release")
def handle_release(consumer: Any, request: dict[str, Any]) -> bool:
    _releases[request["data"]["name"]].set()
    return True


@rohrpost_handler("join")
def handle_join(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    group = request["data"]["group"]
    consumer.add_to_group(group)
    send_message(consumer, "joining", data={"group": group})
    return {"joined": group, "thread": threading.current_thread().name}


@rohrpost_handler("shout")
def handle_shout(consumer: Any, request: dict[str, Any]) -> bool:
    send_to_group(
        request["data"]["group"], {"type": "shout", "data": {"text": request["data"]["text"]}}
    )
    return True


@rohrpost_handler("count")
def handle_count(consumer: Any, request: dict[str, Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO pool_note (id) VALUES (%s)", [request["id"]])
        cursor.execute("SELECT COUNT(*) FROM pool_note")
        count: int = cursor.fetchone()[0]
    return count


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                path("ws/async/", AsyncRohrpostConsumer.as_asgi()),
                path("ws/sync/", SyncRohrpostConsumer.as_asgi()),
            ]
        )
    }
)
