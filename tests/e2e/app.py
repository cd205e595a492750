"""The ASGI application the end-to-end tests serve with uvicorn.

``ws/async/`` is :class:`rohrpost.AsyncRohrpostConsumer`, ``ws/sync/`` is
:class:`rohrpost.SyncRohrpostConsumer`; both serve the default registry, to
which this module adds handlers that exercise each way a handler can run
(sync, ``async def``, inline) and each group helper::

    boom     raises RuntimeError                         -> handler_error
    refuse   raises rohrpost.Forbidden                   -> forbidden
    echo     returns the whole request (sync)
    aecho    returns the request's data (async def)
    join     consumer.add_to_group(data["group"])         (sync)
    ajoin    await consumer.aadd_to_group(data["group"])  (async def)
    leave    consumer.remove_from_group(data["group"])    (sync)
    shout    send_to_group(...)                           (sync, in a worker thread)
    ashout   await asend_to_group(...)                    (async def)
    ishout   send_to_group(...)                           (inline, on the event loop)
    say      send_message(...) twice, then returns a reply (sync)
    asay     await asend_message(...) twice, then returns a reply (async def)
    badreply returns data["kind"] of a value JSON cannot encode
    burst    data["count"] pushes of data["size"] characters to data["group"]
    rss      the server process's resident memory in kB
    members  how many connections the process's hub holds in data["group"]
    subscribe / unsubscribe  group objects {"type": "feed", "name": ...} (history) and
             {"type": "counter", "name": ...} (history, and a snapshot: the counter's
             value in Redis, which tests.test_processes's writer increments)
    codec    the name of the JSON codec the server runs with
    stray    group_send of an event no consumer handles, then a real shout
"""

from __future__ import annotations

import os
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e.settings")
django.setup()

from channels.layers import get_channel_layer  # noqa: E402 - needs django.setup()
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from rohrpost import (  # noqa: E402
    AsyncRohrpostConsumer,
    Forbidden,
    SyncRohrpostConsumer,
    asend_message,
    asend_to_group,
    encoding,
    rohrpost_handler,
    send_message,
    send_to_group,
)
from rohrpost.hub import hub_for  # noqa: E402
from rohrpost.subscriptions import Subscriptions  # noqa: E402
from tests.e2e import BOOM_TEXT  # noqa: E402


def _group(request: dict[str, Any]) -> str:
    return str(request["data"]["group"])


def _push(request: dict[str, Any]) -> dict[str, Any]:
    return {"type": "shout", "data": {"text": request["data"]["text"]}}


@rohrpost_handler("boom")
def handle_boom(consumer: Any, request: dict[str, Any]) -> None:
    raise RuntimeError(BOOM_TEXT)


@rohrpost_handler("refuse")
def handle_refuse(consumer: Any, request: dict[str, Any]) -> None:
    raise Forbidden("Not for you.", data={"why": "e2e"})


@rohrpost_handler("echo")
def handle_echo(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    return request


@rohrpost_handler("aecho")
async def handle_aecho(consumer: Any, request: dict[str, Any]) -> Any:
    return {"echo": request.get("data")}


@rohrpost_handler("say")
def handle_say(consumer: Any, request: dict[str, Any]) -> str:
    for step in ("first", "second"):
        send_message(consumer, "said", message_id=request["id"], data=step)
    return "done"


@rohrpost_handler("asay")
async def handle_asay(consumer: Any, request: dict[str, Any]) -> str:
    for step in ("first", "second"):
        await asend_message(consumer, "said", message_id=request["id"], data=step)
    return "done"


UNENCODABLE: dict[str, Any] = {
    "object": {"x": object()},
    "lone-surrogate": "\ud800",
    "nan": float("nan"),
    "infinity": float("inf"),
    "bytes": b"raw",
}


@rohrpost_handler("badreply")
def handle_badreply(consumer: Any, request: dict[str, Any]) -> Any:
    return UNENCODABLE[request["data"]]


@rohrpost_handler("join")
def handle_join(consumer: Any, request: dict[str, Any]) -> dict[str, str]:
    consumer.add_to_group(_group(request))
    return {"group": _group(request)}


@rohrpost_handler("ajoin")
async def handle_ajoin(consumer: Any, request: dict[str, Any]) -> dict[str, str]:
    await consumer.aadd_to_group(_group(request))
    return {"group": _group(request)}


@rohrpost_handler("leave")
def handle_leave(consumer: Any, request: dict[str, Any]) -> dict[str, str]:
    consumer.remove_from_group(_group(request))
    return {"group": _group(request)}


@rohrpost_handler("shout")
def handle_shout(consumer: Any, request: dict[str, Any]) -> dict[str, bool]:
    send_to_group(_group(request), _push(request))
    return {"sent": True}


@rohrpost_handler("ashout")
async def handle_ashout(consumer: Any, request: dict[str, Any]) -> dict[str, bool]:
    await asend_to_group(_group(request), _push(request))
    return {"sent": True}


@rohrpost_handler("ishout", inline=True)
def handle_ishout(consumer: Any, request: dict[str, Any]) -> dict[str, bool]:
    send_to_group(_group(request), _push(request))
    return {"sent": True}


@rohrpost_handler("burst")
async def handle_burst(consumer: Any, request: dict[str, Any]) -> dict[str, int]:
    """``data["count"]`` pushes of ``data["size"]`` characters to ``data["group"]``."""
    text = "x" * int(request["data"]["size"])
    count = int(request["data"]["count"])
    for _ in range(count):
        await asend_to_group(_group(request), {"type": "shout", "data": {"text": text}})
    return {"sent": count}


@rohrpost_handler("rss")
def handle_rss(consumer: Any, request: dict[str, Any]) -> int:
    """The server process's resident memory in kB (``VmRSS``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@rohrpost_handler("members")
async def handle_members(consumer: Any, request: dict[str, Any]) -> int:
    # The process's hub holds the connections of each group; the layer, one
    # membership for all of them.
    return len(hub_for(get_channel_layer()).members(_group(request)))


@rohrpost_handler("codec", inline=True)
def handle_codec(consumer: Any, request: dict[str, Any]) -> str:
    return encoding.DEFAULT.name


@rohrpost_handler("stray")
async def handle_stray(consumer: Any, request: dict[str, Any]) -> dict[str, bool]:
    layer = get_channel_layer()
    # Were "_aleave_all_groups" dispatched, the real shout below would not arrive.
    for event_type in ("no.such.event", "_aleave_all_groups", "rohrpost-message"):
        await layer.group_send(_group(request), {"type": event_type, "message": "x"})
    await asend_to_group(_group(request), _push(request))
    return {"sent": True}


_subscriptions = Subscriptions()


def _counter_key(data: dict[str, Any]) -> str:
    return f"e2e:counter:{data['name']}"


def _counter_snapshot(user: Any, scope: Any, data: dict[str, Any]) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(os.environ["E2E_REDIS_URL"])
    try:
        return {"value": int(client.get(_counter_key(data)) or 0)}
    finally:
        client.close()


@_subscriptions.declare("feed", group=lambda data: f"feed-{data['name']}", history=True)
def _may_follow(user: Any, scope: Any, data: dict[str, Any]) -> bool:
    return True


@_subscriptions.declare(
    "counter",
    group=lambda data: f"counter-{data['name']}",
    history=True,
    snapshot=_counter_snapshot,
)
def _may_count(user: Any, scope: Any, data: dict[str, Any]) -> bool:
    return True


_subscriptions.install()


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
