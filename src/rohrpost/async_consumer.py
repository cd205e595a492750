"""Import path of :class:`~rohrpost.consumers.AsyncRohrpostConsumer`, beside ``sync_consumer``."""

from __future__ import annotations

from rohrpost.consumers import AsyncRohrpostConsumer

__all__ = ["AsyncRohrpostConsumer"]
