"""The 4.x entry point for handling a frame from a custom sync consumer.

:class:`~rohrpost.SyncRohrpostConsumer` uses it for every frame; a 4.x-style
``WebsocketConsumer`` of your own can call it from ``receive``::

    class MyConsumer(WebsocketConsumer):
        def receive(self, text_data=None, bytes_data=None):
            handle_rohrpost_message(self, text_data)
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync

from rohrpost import metrics, protocol
from rohrpost.dispatch import Call, prepare_call
from rohrpost.message import deliver
from rohrpost.protocol import DEFAULT_LIMITS, Limits
from rohrpost.registry import HANDLERS, HandlerRegistry

__all__ = ["handle_rohrpost_message", "run_call"]


def handle_rohrpost_message(
    consumer: Any,
    text_data: str | bytes | None,
    bytes_data: bytes | None = None,
    *,
    registry: HandlerRegistry = HANDLERS,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Handle one frame from sync code: dispatch it and send exactly one answer.

    The handler's return value (unless ``None``) or its error is sent through
    ``consumer``; async handlers are run to completion with ``async_to_sync``.

    Args:
        consumer: The consumer whose client sent the frame.
        text_data: The text frame, or ``None`` for a binary frame. ``bytes``
            (what a custom consumer's ``receive`` may pass on) are decoded as
            UTF-8, as 4.x did; bytes that are not UTF-8 get ``invalid_json``.
        bytes_data: The binary frame, if any.
        registry: The handlers to dispatch to.
        limits: The frame size and depth bounds.
    """
    if isinstance(text_data, bytes | bytearray):
        try:
            text_data = bytes(text_data).decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"Could not decode JSON message. Error: {exc}"
            metrics.rejected(metrics.INVALID_FRAME, protocol.INVALID_JSON)
            deliver(consumer, protocol.encode_error(None, None, message, protocol.INVALID_JSON))
            return
    call = prepare_call(registry, text_data, bytes_data, limits)
    if isinstance(call, str):
        deliver(consumer, call)
    else:
        run_call(consumer, call)


def run_call(consumer: Any, call: Call) -> None:
    """Run a prepared call from sync code and send its reply or error through ``consumer``.

    Async handlers are run to completion with ``async_to_sync``.
    """
    reply = call.run(consumer, async_to_sync(call.handler) if call.mode == "async" else None)
    if reply is not None:
        deliver(consumer, reply)
