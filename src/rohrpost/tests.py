"""A stand-in consumer for unit-testing handlers without a server (the 4.x test double).

Example::

    from rohrpost.handlers import handle_ping
    from rohrpost.tests import Consumer

    consumer = Consumer()
    handle_ping(consumer=consumer, request={"id": 1, "type": "ping"})
    assert consumer.data == [{"id": 1, "type": "pong"}]
    assert consumer.data[-1]["type"] == "pong"

As in 4.x, ``data`` holds the sent messages decoded, and nothing is recorded
once :meth:`Consumer.close` was called. The helpers in :mod:`rohrpost.message`
call ``consumer.send(text)`` with the JSON text as the first positional
argument, so a hand-written 4.x double whose method is ``send(self, message)``
works with them too.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["Consumer"]


class Consumer:
    """Records what a handler sends instead of sending it.

    Attributes:
        data: Every message sent while open, decoded (``dict`` for rohrpost
            messages), oldest first.
        frames: The same messages as the JSON text that would go over the wire.
        closed: Whether :meth:`close` was called (or ``send`` with ``close=True``).
        close_code: The code given to :meth:`close`, if any.
        groups: Groups joined through :meth:`add_to_group` or :meth:`aadd_to_group`
            (also readable as ``rohrpost_groups``, as on the real consumers).
        scope: The connection scope handlers read, such as ``scope["user"]``
            (empty unless given).
    """

    def __init__(self, scope: dict[str, Any] | None = None) -> None:
        self.scope: dict[str, Any] = {} if scope is None else scope
        self.data: list[Any] = []
        self.frames: list[str] = []
        self.closed = False
        self.close_code: int | None = None
        self.groups: set[str] = set()

    def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        """Record a text frame (binary frames are ignored); nothing after :meth:`close`."""
        if text_data is not None and not self.closed:
            self.data.append(json.loads(text_data))
            self.frames.append(text_data)
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

    async def aadd_to_group(self, group_name: str) -> None:
        """Async twin of :meth:`add_to_group`, for ``async def`` handlers."""
        self.add_to_group(group_name)

    async def aremove_from_group(self, group_name: str) -> None:
        """Async twin of :meth:`remove_from_group`."""
        self.remove_from_group(group_name)

    @property
    def rohrpost_groups(self) -> set[str]:
        """The groups joined (the real consumers' name for :attr:`groups`)."""
        return self.groups

    @property
    def messages(self) -> list[Any]:
        """The recorded messages, decoded (a copy of :attr:`data`)."""
        return list(self.data)
