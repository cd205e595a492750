"""The ASGI application the fan-out benchmark serves: four ways to push to a group.

Run by :mod:`bench.fanout` as ``uvicorn bench.fanout_app:application``, one
fresh server process per contender. A subscriber connects to its contender's
path and sends ``{"id": 1, "type": "fanout_join"}`` (``"join"`` for the bare
app); the first frame back acknowledges that it is in the group. From then on
every broadcast reaches it as the same text frame, :data:`PAYLOAD` encoded.
Every path also answers ``{"id": n, "type": "ping"}`` with a pong (the idle
memory measurement uses that one round trip per connection).

======================  ===========================================================
path                    what
======================  ===========================================================
``/bare``               :func:`bare_app`: a plain ASGI app (the floor). It keeps a set
                        of its connections; a broadcast is encoded once and
                        ``await send(...)`` to each. With Redis: one Redis
                        pub/sub subscription per process, then the same.
``/channels``           :class:`ChannelsFanout`, a plain ``AsyncJsonWebsocketConsumer``:
                        ``group_add`` on join, ``send_json`` for each group event
``/rohrpost-async``     :class:`rohrpost.AsyncRohrpostConsumer`, joined by the
                        ``fanout_join`` handler (``add_to_group``)
``/rohrpost-sync``      :class:`rohrpost.SyncRohrpostConsumer`, the same handler
``GET /broadcast``      ``?contender=NAME&count=B``: B broadcasts to that contender's
                        group, the way its authors would send one (in-memory layer)
``GET /info``           the pid and a few facts about the server
======================  ===========================================================

The channel layer is the in-memory one, or ``RedisChannelLayer`` when
``BENCH_FANOUT_REDIS`` holds a Redis URL (then broadcasts come from
:mod:`bench.fanout_broadcast`, another process). ``BENCH_FANOUT_CONTENDER``
names the contender the process serves: its group is :func:`group_for` it,
so that contenders sharing one Redis never see each other's broadcasts.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from bench.fanout_shared import PAYLOAD, group_for, layer_settings
from bench.server_kit import configure, server_facts

#: This server's group: each contender runs in servers of its own, but on one Redis.
GROUP = group_for(os.environ.get("BENCH_FANOUT_CONTENDER", "any"))
REDIS_URL = os.environ.get("BENCH_FANOUT_REDIS") or None
configure(ROHRPOST={"RATE_LIMIT": None}, CHANNEL_LAYERS=layer_settings(REDIS_URL))

# Channels and rohrpost read the settings on import: both come after setup().
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from rohrpost import (  # noqa: E402
    AsyncRohrpostConsumer,
    SyncRohrpostConsumer,
    asend_to_group,
    rohrpost_handler,
    send_success,
)

__all__ = ["GROUP", "REDIS_URL", "ChannelsFanout", "application", "bare_app", "broadcast"]

Send = Callable[[dict[str, Any]], Awaitable[None]]
Scope = dict[str, Any]

#: The bare app's group: the ``send`` callable of every joined connection.
_bare_members: set[Send] = set()
_bare_redis_listener: asyncio.Task[None] | None = None


async def _bare_broadcast(text: str) -> None:
    for send in list(_bare_members):
        await send({"type": "websocket.send", "text": text})


async def _bare_listen_to_redis(url: str) -> None:
    """One Redis subscription per process: every published text goes to every member."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, socket_timeout=None)
    pubsub = client.pubsub()
    await pubsub.subscribe(GROUP)
    async for message in pubsub.listen():
        if message["type"] == "message":
            await _bare_broadcast(message["data"].decode())


def _bare_answer(text: str) -> dict[str, Any] | None:
    request = json.loads(text)
    if request.get("type") == "ping":
        return {"id": request.get("id"), "type": "pong", "data": request.get("data")}
    if request.get("type") == "join":
        return {"id": request.get("id"), "type": "join", "data": None}
    return None


async def bare_app(scope: Scope, receive: Any, send: Send) -> None:
    """The floor: a WebSocket app on nothing but ASGI, with an in-process group."""
    global _bare_redis_listener
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif event["type"] == "websocket.disconnect":
                return
            elif event.get("text") is not None:
                reply = _bare_answer(event["text"])
                if reply is not None and reply["type"] == "join":
                    _bare_members.add(send)
                    if REDIS_URL is not None and _bare_redis_listener is None:
                        _bare_redis_listener = asyncio.create_task(_bare_listen_to_redis(REDIS_URL))
                        await asyncio.sleep(0.1)  # subscribed before the first join is answered
                if reply is not None:
                    await send({"type": "websocket.send", "text": json.dumps(reply)})
    finally:
        _bare_members.discard(send)


class ChannelsFanout(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """The Channels baseline: what one writes to push group events with Channels alone."""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content.get("type") == "join":
            await self.channel_layer.group_add(GROUP, self.channel_name)
        kind = "pong" if content.get("type") == "ping" else content.get("type")
        await self.send_json({"id": content.get("id"), "type": kind, "data": content.get("data")})

    async def fanout_push(self, event: dict[str, Any]) -> None:
        await self.send_json(event["message"])


@rohrpost_handler("fanout_join")
def fanout_join(consumer: Any, request: dict[str, Any]) -> None:
    """Join the benchmark's group, as an application's subscribe handler would."""
    consumer.add_to_group(GROUP)
    send_success(consumer, "fanout_join", request["id"])


async def broadcast(contender: str, count: int) -> None:
    """Send ``count`` broadcasts to ``contender``'s group, the way its authors would."""
    if contender == "bare":
        for _ in range(count):
            await _bare_broadcast(json.dumps(PAYLOAD))  # encoded once per broadcast
    elif contender == "channels":
        layer = get_channel_layer()
        for _ in range(count):
            await layer.group_send(GROUP, {"type": "fanout.push", "message": PAYLOAD})
    else:
        for _ in range(count):
            await asend_to_group(GROUP, PAYLOAD)


async def http_app(scope: Scope, receive: Any, send: Send) -> None:
    """``GET /broadcast?contender=NAME&count=B`` and ``GET /info``; anything else is 404."""
    query = parse_qs(scope.get("query_string", b"").decode())
    status, answer = 200, {"pid": os.getpid(), "redis": REDIS_URL is not None}
    if scope["path"] == "/broadcast":
        count = int(query["count"][0])
        await broadcast(query["contender"][0], count)
        answer["sent"] = count
    elif scope["path"] == "/info":
        answer |= server_facts() | {"server": os.environ.get("BENCH_FANOUT_SERVER", "uvicorn")}
    else:
        status, answer = 404, {"error": "not found"}
    body = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_websockets = URLRouter(
    [
        path("channels", ChannelsFanout.as_asgi()),
        path("rohrpost-async", AsyncRohrpostConsumer.as_asgi()),
        path("rohrpost-sync", SyncRohrpostConsumer.as_asgi()),
    ]
)


async def _websocket_app(scope: Scope, receive: Any, send: Send) -> None:
    if scope["path"] == "/bare":  # no router, no Django: the floor
        await bare_app(scope, receive, send)
    else:
        await _websockets(scope, receive, send)


application = ProtocolTypeRouter({"http": http_app, "websocket": _websocket_app})
