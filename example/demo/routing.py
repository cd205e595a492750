"""WebSocket routes of the demo: one rohrpost endpoint."""

from __future__ import annotations

from django.urls import path

from rohrpost.consumers import AsyncRohrpostConsumer

#: Where the rohrpost endpoint lives (the page reads it from its HTML).
ROHRPOST_PATH = "ws/rohrpost/"

websocket_urlpatterns = [
    path(ROHRPOST_PATH, AsyncRohrpostConsumer.as_asgi()),
]
