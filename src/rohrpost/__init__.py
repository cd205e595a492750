"""rohrpost: a lightweight JSON protocol over Django Channels WebSockets.

The names most code needs are importable from here::

    from rohrpost import AsyncRohrpostConsumer, rohrpost_handler, send_to_group
"""

from __future__ import annotations

from rohrpost.consumers import AsyncRohrpostConsumer, SyncRohrpostConsumer
from rohrpost.exceptions import Forbidden, ProtocolError, RohrpostError
from rohrpost.message import (
    asend_message,
    asend_to_group,
    send_error,
    send_message,
    send_success,
    send_to_group,
)
from rohrpost.registry import HANDLERS, HandlerRegistry, rohrpost_handler

__all__ = [
    "HANDLERS",
    "VERSION",
    "AsyncRohrpostConsumer",
    "Forbidden",
    "HandlerRegistry",
    "ProtocolError",
    "RohrpostError",
    "SyncRohrpostConsumer",
    "__version__",
    "asend_message",
    "asend_to_group",
    "rohrpost_handler",
    "send_error",
    "send_message",
    "send_success",
    "send_to_group",
]

__version__ = "5.0.0.dev0"
#: The version as a string (4.x's name for ``__version__``).
VERSION: str = __version__
