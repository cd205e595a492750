"""Handlers rohrpost registers out of the box: ``ping``.

``ping`` answers ``pong`` with the request's ``id``. Object data is echoed
as is; any other data is wrapped as ``{"data": ...}``; no data, no ``data``::

    {"id": 1, "type": "ping", "data": [1, 2]}
    -> {"id": 1, "type": "pong", "data": {"data": [1, 2]}}
"""

from __future__ import annotations

from typing import Any

from rohrpost.message import send_message
from rohrpost.registry import rohrpost_handler

__all__ = ["handle_ping"]


@rohrpost_handler("ping", inline=True)
def handle_ping(consumer: Any, request: dict[str, Any]) -> None:
    """Answer a ping with a pong (inline: it does no I/O besides the send)."""
    if "data" in request:
        data = request["data"]
        send_message(
            consumer,
            "pong",
            message_id=request["id"],
            data=data if isinstance(data, dict) else {"data": data},
        )
    else:
        send_message(consumer, "pong", message_id=request["id"])
