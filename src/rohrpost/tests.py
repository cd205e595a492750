"""A stand-in consumer for unit-testing handlers without a server (the 4.x test double).

from rohrpost.handlers import handle_ping
from rohrpost.tests import Consumer

consumer = Consumer()
handle_ping(consumer=consumer, request={"id": 1, "type": "ping"})
assert consumer.messages == [{"id": 1, "type": "pong"}]
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["Consumer"]


class Consumer:
    """Records what a handler sends instead of sending it.

    Attributes:
        data: Every frame sent, as the JSON text that would go over the wire.
        closed: Whether :meth:`close` was called (or ``send`` with ``close=True``).
        groups: Groups joined through :meth:`add_to_group`.
    """

    def __init__(self) -> None:
        self.data: list[str] = []
        self.closed = False
        self.close_code: int | None = None
        self.groups: set[str] = set()

    def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Record a frame."""
        if text_data is not None:
            self.data.append(text_data)
        if close:
            self.close()

    def close(self, code: int | None = None) -> None:
        """Record that the connection was closed."""
        self.closed = True
        self.close_code = code

    def add_to_group(self, group_name: str) -> None:
        """Record joining ``group_name``."""
        self.groups.add(group_name)

    def remove_from_group(self, group_name: str) -> None:
        """Record leaving ``group_name``."""
        self.groups.discard(group_name)

    @property
    def messages(self) -> list[Any]:
        """The recorded frames, decoded."""
        return [json.loads(text) for text in self.data]
