"""The server of :mod:`bench.history_js`: :mod:`tests.e2e.app` plus one handler.

``tests.e2e.app`` serves subscriptions with history (``{"type": "feed",
"name": ...}`` joins the group ``feed-<name>``) on ``ws/async/``; its
``burst`` handler sends ``shout`` frames, which the JavaScript client does not
treat as a group's pushes. ``feedburst`` publishes what the change feed
publishes instead::

    {"type": "feedburst", "data": {"name": "n", "first": 0, "count": 1000}}

sends ``count`` pushes ``{"type": "subscription-update", "data": {"type":
"update", "group": "feed-n", "object": {"seq": first + i, "title": ...}}}``
to ``feed-n``, one after the other, and answers ``{"sent": count}`` once all
are sent. The ``seq`` lets the benchmark check order and duplicates without
trusting the positions it also checks.

``drop`` closes the connection that sends it with code 1012 (service
restart), the way a deploy drops every connection; it has no reply.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.app import application

from rohrpost import asend_to_group, rohrpost_handler
from rohrpost.changefeed import PUSH_TYPE

__all__ = ["application"]

#: A small object's title, as in :data:`bench.history.PUSH`.
TITLE = "x" * 60


@rohrpost_handler("feedburst")
async def handle_feedburst(consumer: Any, request: dict[str, Any]) -> dict[str, int]:
    data = request["data"]
    group = f"feed-{data['name']}"
    first, count = int(data["first"]), int(data["count"])
    for seq in range(first, first + count):
        push = {"type": "update", "group": group, "object": {"id": 7, "seq": seq, "title": TITLE}}
        await asend_to_group(group, {"type": PUSH_TYPE, "data": push})
    return {"sent": count}


@rohrpost_handler("drop")
async def handle_drop(consumer: Any, request: dict[str, Any]) -> None:
    """Close the asking connection as a restarting server does (1012), without a reply."""
    await consumer.close(code=1012)
