"""The ASGI application the benchmark server runs: six contenders and a CPU clock.

Run by :mod:`bench.__main__` as ``uvicorn bench.app:application``. Every
contender answers ``{"id": n, "type": "ping", "data": {...}}`` with
``{"id": n, "type": "pong", "data": {...}}``:

===================  ============================================================
path                 consumer
===================  ============================================================
``/async-rohrpost``  :class:`rohrpost.AsyncRohrpostConsumer` (the built-in ``ping``)
``/async-channels``  :class:`ChannelsAsyncEcho`, a plain ``AsyncJsonWebsocketConsumer``
``/sync-rohrpost``   :class:`rohrpost.SyncRohrpostConsumer` (the built-in ``ping``)
``/sync-rohrpost-threaded``  :class:`SyncRohrpostThreaded`: a plain sync ``ping`` handler
``/sync-channels``   :class:`ChannelsSyncEcho`, a plain ``JsonWebsocketConsumer``
``/hand-checked-rohrpost``  an inline ``ping`` that checks its data by hand
``/typed-rohrpost``  the same handler typed: pydantic checks, its model is returned
``/bare-echo``       :func:`bare_echo`, a plain ASGI app: no Channels, no Django routing
===================  ============================================================

The last two answer with ``{"id": n, "type": "ping", "data": {...}}``: they
return the data, which makes a reply of the request's own type.

``GET /cpu`` answers the server process's own CPU clock
(``time.process_time()``: user + system time of every thread, in seconds), so
the client can measure the server's CPU cost of a batch from outside without
the 10 ms granularity of ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.server_kit import configure, json_endpoint, server_facts

# The clients send as fast as the server answers: the rate limit would refuse them.
configure(ROHRPOST={"RATE_LIMIT": None})

# Channels and rohrpost read the settings on import: both come after setup().
from channels.generic.websocket import (  # noqa: E402
    AsyncJsonWebsocketConsumer,
    JsonWebsocketConsumer,
)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from rohrpost import (  # noqa: E402
    AsyncRohrpostConsumer,
    HandlerRegistry,
    RohrpostError,
    SyncRohrpostConsumer,
    encoding,
)
from rohrpost.message import send_message  # noqa: E402

__all__ = [
    "ChannelsAsyncEcho",
    "ChannelsSyncEcho",
    "HandChecked",
    "SyncRohrpostThreaded",
    "Typed",
    "application",
    "bare_echo",
]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ChannelsAsyncEcho(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """The baseline for the async consumer: what one writes with Channels alone."""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"id": content["id"], "type": "pong", "data": content.get("data")})


class ChannelsSyncEcho(JsonWebsocketConsumer):  # type: ignore[misc]
    """The baseline for the sync consumer: what one writes with Channels alone."""

    def receive_json(self, content: Any, **kwargs: Any) -> None:
        self.send_json({"id": content["id"], "type": "pong", "data": content.get("data")})


threaded_handlers = HandlerRegistry()


@threaded_handlers.handler("ping")
def threaded_ping(consumer: Any, request: dict[str, Any]) -> None:
    """The built-in ping, written as a 4.x application writes handlers (not inline)."""
    send_message(consumer, "pong", message_id=request["id"], data=request.get("data"))


class SyncRohrpostThreaded(SyncRohrpostConsumer):
    """The sync consumer with a plain sync handler: every frame in a worker thread."""

    rohrpost_registry = threaded_handlers


hand_checked_handlers = HandlerRegistry()
typed_handlers = HandlerRegistry()


def _invalid(field: str) -> RohrpostError:
    return RohrpostError(f"`{field}` is missing or of the wrong type.", code="invalid")


@hand_checked_handlers.handler("ping", inline=True)
def hand_checked_ping(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    """What a handler without types does to be as strict as the typed one."""
    data = request.get("data")
    if not isinstance(data, dict):
        raise _invalid("data")
    seq, text, flags, ratio = (
        data.get("seq"),
        data.get("text"),
        data.get("flags"),
        data.get("ratio"),
    )
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise _invalid("seq")
    if not isinstance(text, str):
        raise _invalid("text")
    if not isinstance(flags, list) or not all(isinstance(flag, bool) for flag in flags):
        raise _invalid("flags")
    if not isinstance(ratio, int | float) or isinstance(ratio, bool):
        raise _invalid("ratio")
    return {"seq": seq, "text": text, "flags": flags, "ratio": float(ratio)}


class PingData(BaseModel):
    seq: int
    text: str
    flags: list[bool]
    ratio: float


@typed_handlers.handler("ping", inline=True)
def typed_ping(consumer: Any, request: dict[str, Any], data: PingData) -> PingData:
    """The same handler typed: validated before it runs, its model encoded after."""
    return data


class HandChecked(AsyncRohrpostConsumer):
    rohrpost_registry = hand_checked_handlers


class Typed(AsyncRohrpostConsumer):
    rohrpost_registry = typed_handlers


def _bare_codec() -> tuple[Callable[[str], Any], Callable[[Any], str]]:
    """The JSON functions rohrpost's codec is built on, without its strictness checks."""
    if encoding.DEFAULT.name == "orjson":
        import orjson

        orjson_dumps = orjson.dumps
        return orjson.loads, lambda value: orjson_dumps(value).decode()
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    return json.loads, encoder.encode


_bare_loads, _bare_dumps = _bare_codec()


async def bare_echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The floor: accept, decode each text frame, answer its pong, nothing else.

    What any JSON echo over ASGI must do at least; everything a consumer
    costs above it is the price of its framework.
    """
    while True:
        event = await receive()
        kind = event["type"]
        if kind == "websocket.receive":
            request = _bare_loads(event["text"])
            reply = {"id": request["id"], "type": "pong", "data": request.get("data")}
            await send({"type": "websocket.send", "text": _bare_dumps(reply)})
        elif kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        else:
            return


def _cpu_clock() -> dict[str, Any]:
    # The clock is read first: what follows is the same small cost every time.
    clock = {"process_time": time.process_time(), "threads": threading.active_count()}
    return clock | server_facts()


routed = ProtocolTypeRouter(
    {
        "http": json_endpoint("/cpu", _cpu_clock),
        "websocket": URLRouter(
            [
                path("async-rohrpost", AsyncRohrpostConsumer.as_asgi()),
                path("async-channels", ChannelsAsyncEcho.as_asgi()),
                path("sync-rohrpost", SyncRohrpostConsumer.as_asgi()),
                path("sync-rohrpost-threaded", SyncRohrpostThreaded.as_asgi()),
                path("sync-channels", ChannelsSyncEcho.as_asgi()),
                path("hand-checked-rohrpost", HandChecked.as_asgi()),
                path("typed-rohrpost", Typed.as_asgi()),
            ]
        ),
    }
)


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The bare echo outside Channels and Django routing; everything else through them."""
    if scope["type"] == "websocket" and scope["path"] == "/bare-echo":
        await bare_echo(scope, receive, send)
    else:
        await routed(scope, receive, send)
