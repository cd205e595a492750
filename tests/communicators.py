"""Helpers for tests that talk to a consumer through Channels' WebsocketCommunicator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from rohrpost.hub import CONTROL_GROUP


@asynccontextmanager
async def connect(
    consumer_class: type[Any], *, user: Any = None, path: str = "/ws/rohrpost/"
) -> AsyncIterator[WebsocketCommunicator]:
    """Yield a connected communicator (with ``scope["user"]`` when given); disconnect after."""
    communicator = WebsocketCommunicator(consumer_class.as_asgi(), path)
    if user is not None:
        communicator.scope["user"] = user
    connected, _ = await communicator.connect(timeout=1)
    assert connected
    try:
        yield communicator
    finally:
        await communicator.disconnect(timeout=1)


async def ask(communicator: WebsocketCommunicator, frame: dict[str, Any]) -> Any:
    """Send one request object and return the decoded reply."""
    await communicator.send_to(text_data=json.dumps(frame))
    return json.loads(await communicator.receive_from(timeout=2))


def connection_groups() -> dict[str, Any]:
    """The default layer's groups, less the control group the process's hub is in."""
    groups: dict[str, Any] = get_channel_layer().groups
    return {name: members for name, members in groups.items() if name != CONTROL_GROUP}
