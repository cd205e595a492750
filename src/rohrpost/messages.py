"""The 4.x documentation's second spelling of :mod:`rohrpost.message`: the same helpers."""

from __future__ import annotations

from rohrpost.message import (
    MessageID,
    TolerantJSONEncoder,
    asend_error,
    asend_message,
    asend_success,
    asend_to_group,
    build_message,
    send_error,
    send_message,
    send_success,
    send_to_group,
)

__all__ = [
    "MessageID",
    "TolerantJSONEncoder",
    "asend_error",
    "asend_message",
    "asend_success",
    "asend_to_group",
    "build_message",
    "send_error",
    "send_message",
    "send_success",
    "send_to_group",
]
