"""4.x import path of :class:`~rohrpost.consumers.SyncRohrpostConsumer`."""

from __future__ import annotations

from rohrpost.consumers import SyncRohrpostConsumer

__all__ = ["SyncRohrpostConsumer"]
