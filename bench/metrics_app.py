"""The server :mod:`bench.metrics` measures: rohrpost's consumers with metrics switchable.

Run as ``uvicorn bench.metrics_app:application``. ``ROHRPOST["METRICS"]`` is
on when the process starts, so the instruments exist; ``GET /metrics/on`` and
``GET /metrics/off`` switch recording on and off between batches (what
:func:`rohrpost.metrics.configure` does when the setting changes), and
``GET /cpu`` answers the process's CPU clock as in :mod:`bench.app`.
"""

from __future__ import annotations

import time
from typing import Any

from bench.server_kit import HttpApp, configure, json_endpoint

configure(ROHRPOST={"RATE_LIMIT": None, "METRICS": True})

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs setup()
from django.conf import settings  # noqa: E402
from django.urls import path  # noqa: E402

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer, metrics  # noqa: E402

__all__ = ["application"]


def _switch(on: bool) -> dict[str, Any]:
    settings.ROHRPOST["METRICS"] = on
    return {"metrics": metrics.configure()}


_endpoints: dict[str, HttpApp] = {
    "/cpu": json_endpoint("/cpu", lambda: {"process_time": time.process_time()}),
    "/metrics/on": json_endpoint("/metrics/on", lambda: _switch(True)),
    "/metrics/off": json_endpoint("/metrics/off", lambda: _switch(False)),
}


async def _http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await _endpoints.get(scope["path"], _endpoints["/cpu"])(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": _http,
        "websocket": URLRouter(
            [
                path("async-rohrpost", AsyncRohrpostConsumer.as_asgi()),
                path("sync-rohrpost", SyncRohrpostConsumer.as_asgi()),
            ]
        ),
    }
)
