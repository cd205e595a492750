"""What the benchmark servers (:mod:`bench.app`, :mod:`bench.flood_app`) share.

:func:`configure` sets up Django for a bare ASGI server with an in-memory
channel layer; :func:`json_endpoint` answers one ``GET`` path with JSON and
everything else with 404; :func:`server_facts` describes the running server
for the reports.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import django
from django.conf import settings

__all__ = ["configure", "json_endpoint", "server_facts"]

HttpApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def configure(**overrides: Any) -> None:
    """Configure and set up Django for a benchmark server; ``overrides`` add or replace settings."""
    defaults: dict[str, Any] = {
        "DEBUG": False,
        "SECRET_KEY": "rohrpost-bench-not-secret",
        "ALLOWED_HOSTS": ["127.0.0.1", "localhost"],
        "INSTALLED_APPS": ["channels", "rohrpost"],
        "DATABASES": {},
        # Every connection gets a channel, as in a deployment with groups.
        "CHANNEL_LAYERS": {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        "USE_TZ": True,
        "LOGGING_CONFIG": None,
    }
    settings.configure(**(defaults | overrides))
    django.setup()


def server_facts() -> dict[str, Any]:
    """The JSON codec, uvicorn's version, event loop and WebSocket protocol, and the pid."""
    import uvicorn
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    from rohrpost import encoding

    loop = asyncio.get_running_loop()
    return {
        "codec": encoding.DEFAULT.name,
        "uvicorn": uvicorn.__version__,
        "loop": f"{type(loop).__module__}.{type(loop).__name__}",
        "ws": getattr(AutoWebSocketsProtocol, "__name__", None),
        "pid": os.getpid(),
    }


def json_endpoint(endpoint: str, produce: Callable[[], dict[str, Any]]) -> HttpApp:
    """An ASGI HTTP app: ``GET endpoint`` answers ``produce()`` as JSON, anything else 404."""

    async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == endpoint:
            body, status = json.dumps(produce()).encode(), 200
        else:
            body, status = b"not found", 404
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return answer
