"""The ASGI application :mod:`tests.test_metrics` serves with uvicorn.

It configures Django itself (no settings module): ``ROHRPOST["METRICS"]`` is
on unless ``METRICS_OFF`` is set in the environment. It routes the WebSocket
consumers and :func:`rohrpost.metrics.metrics_view`, and registers::

    m.echo   returns the request's data (async def)
    m.sync   returns the request's data (sync, in a worker thread)
    m.quiet  returns None: no reply
    m.fail   raises RuntimeError  -> handler_error
    m.deny   raises Forbidden     -> forbidden
    m.pid    the server process's id (inline)
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.conf import settings

settings.configure(
    SECRET_KEY="rohrpost-metrics-not-secret",
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1"],
    INSTALLED_APPS=["channels", "rohrpost"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    ROOT_URLCONF=__name__,
    ROHRPOST={"METRICS": "METRICS_OFF" not in os.environ, "RATE_LIMIT": None},
)
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs django.setup()
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

from rohrpost import (  # noqa: E402
    AsyncRohrpostConsumer,
    Forbidden,
    SyncRohrpostConsumer,
    rohrpost_handler,
)
from rohrpost.metrics import metrics_view  # noqa: E402


@rohrpost_handler("m.echo")
async def handle_echo(consumer: Any, request: dict[str, Any]) -> Any:
    return request.get("data")


@rohrpost_handler("m.sync")
def handle_sync(consumer: Any, request: dict[str, Any]) -> Any:
    return request.get("data")


@rohrpost_handler("m.quiet")
async def handle_quiet(consumer: Any, request: dict[str, Any]) -> None:
    return None


@rohrpost_handler("m.fail")
async def handle_fail(consumer: Any, request: dict[str, Any]) -> None:
    raise RuntimeError("planned failure")


@rohrpost_handler("m.deny")
def handle_deny(consumer: Any, request: dict[str, Any]) -> None:
    raise Forbidden("Not for you.")


@rohrpost_handler("m.pid", inline=True)
def handle_pid(consumer: Any, request: dict[str, Any]) -> int:
    return os.getpid()


urlpatterns = [path("metrics/", metrics_view)]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter(
            [
                path("ws/async/", AsyncRohrpostConsumer.as_asgi()),
                path("ws/sync/", SyncRohrpostConsumer.as_asgi()),
            ]
        ),
    }
)
