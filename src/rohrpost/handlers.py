"""Handlers rohrpost registers out of the box: ``ping``.

``ping`` answers ``pong`` with the request's ``id``. Object data is echoed
as is; any other data is wrapped as ``{"data": ...}``; no data, no ``data``::

    {"id": 1, "type": "ping", "data": [1, 2]}
    -> {"id": 1, "type": "pong", "data": {"data": [1, 2]}}
"""

from __future__ import annotations

from typing import Any

from rohrpost import encoding
from rohrpost.message import deliver
from rohrpost.registry import rohrpost_handler

__all__ = ["handle_ping"]


@rohrpost_handler("ping", inline=True)
def handle_ping(consumer: Any, request: dict[str, Any]) -> None:
    """Answer a ping with a pong (inline: it does no I/O besides the send).

    The frame is what ``send_message(consumer, "pong", message_id=..., data=...)``
    sends, built here without its general cases: a ping is the frame a client
    sends most.
    """
    pong: dict[str, Any] = {"id": request["id"], "type": "pong"}
    if "data" in request:
        data = request["data"]
        pong["data"] = data if isinstance(data, dict) else {"data": data}
    deliver(consumer, encoding.dumps(pong))
