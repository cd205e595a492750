"""Helpers that send rohrpost messages to one connection or to a group.

The sync helpers work with every consumer: :class:`~rohrpost.SyncRohrpostConsumer`,
a sync handler running under :class:`~rohrpost.AsyncRohrpostConsumer`, a
4.x-style custom ``WebsocketConsumer`` and the test double
:class:`rohrpost.tests.Consumer`. Async code uses the ``a``-prefixed twins::

    send_message(consumer, "pong", message_id=request["id"], data={"ok": True})
    await asend_message(consumer, "pong", message_id=request["id"], data={"ok": True})

    send_to_group("chat-5", {"type": "said", "data": {"text": "hi"}})   # views, tasks, commands
    await asend_to_group("chat-5", {"type": "said", "data": {"text": "hi"}})

A group message is encoded once, here, and every consumer in the group
forwards the text without decoding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, TypeAlias

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from channels.layers import get_channel_layer

from rohrpost import encoding, history, protocol
from rohrpost.encoding import TolerantJSONEncoder
from rohrpost.protocol import RequestId

__all__ = [
    "GROUP_EVENT_TYPE",
    "MessageID",
    "TolerantJSONEncoder",
    "agroup_send",
    "asend_error",
    "asend_message",
    "asend_success",
    "asend_to_group",
    "build_message",
    "call_from_sync",
    "deliver",
    "group_event",
    "send_error",
    "send_message",
    "send_success",
    "send_to_group",
]

logger = logging.getLogger("rohrpost")

#: The channel-layer event type that carries group messages to consumers
#: (dispatched to their ``rohrpost_message`` method).
GROUP_EVENT_TYPE = "rohrpost.message"

DEFAULT_CHANNEL_LAYER = "default"

#: The type of a message ``id`` (4.x's name for :data:`rohrpost.protocol.RequestId`).
MessageID: TypeAlias = RequestId


def build_message(
    handler: str | None,
    message_id: RequestId | None = None,
    error: Any = None,
    data: Any = None,
    *,
    code: str | None = None,
    generate_id: bool = False,
) -> dict[str, Any]:
    """Return a message object ``{"id", "type"[, "error", "code"][, "data"]}``.

    Args:
        handler: The message ``type``; ``None`` leaves ``type`` out, as 4.x did.
        message_id: The message ``id``; see ``generate_id`` when ``None``.
        error: An error text or object; makes the message an error.
        data: The payload; left out when ``None``.
        code: A machine error code (only meaningful with ``error``).
        generate_id: Without ``message_id``, ``True`` gives the message a
            random integer id and ``False`` (the default, as in 4.x) leaves
            ``id`` out. The send helpers always ask for one, as the 4.x
            documentation promises.
    """
    message: dict[str, Any] = {}
    if message_id is not None:
        message["id"] = message_id
    elif generate_id:
        message["id"] = protocol.generate_id()
    if handler is not None:
        message["type"] = handler
    if error is not None:
        message["error"] = error
        if code is not None:
            message["code"] = code
    if data is not None:
        message["data"] = data
    return message


def send_message(
    consumer: Any,
    handler: str | None,
    message_id: RequestId | None = None,
    error: Any = None,
    data: Any = None,
    *,
    code: str | None = None,
) -> None:
    """Send one message to the client of ``consumer`` (arguments as :func:`build_message`)."""
    message = build_message(handler, message_id, error, data, code=code, generate_id=True)
    deliver(consumer, encoding.dumps(message))


def send_error(
    consumer: Any,
    handler: str | None,
    message_id: RequestId | None = None,
    error: Any = "An error occurred.",
    data: Any = None,
    *,
    code: str = "error",
) -> None:
    """Send an error message; arguments as :func:`send_message`, ``code`` defaults to "error"."""
    send_message(consumer, handler, message_id, error, data, code=code)


def send_success(
    consumer: Any, handler: str, message_id: RequestId | None = None, data: Any = None
) -> None:
    """Send a reply that carries ``data`` and no error."""
    send_message(consumer, handler, message_id, None, data)


async def asend_message(
    consumer: Any,
    handler: str | None,
    message_id: RequestId | None = None,
    error: Any = None,
    data: Any = None,
    *,
    code: str | None = None,
) -> None:
    """Async twin of :func:`send_message`."""
    message = build_message(handler, message_id, error, data, code=code, generate_id=True)
    text = encoding.dumps(message)
    send = consumer.send
    # The text goes first and unnamed, as 4.x sent it: doubles written as
    # `send(self, message)` work, and so does Channels' `send(text_data=None, ...)`.
    if iscoroutinefunction(send):
        await send(text)
    else:
        await sync_to_async(send)(text)


async def asend_error(
    consumer: Any,
    handler: str | None,
    message_id: RequestId | None = None,
    error: Any = "An error occurred.",
    data: Any = None,
    *,
    code: str = "error",
) -> None:
    """Async twin of :func:`send_error`."""
    await asend_message(consumer, handler, message_id, error, data, code=code)


async def asend_success(
    consumer: Any, handler: str, message_id: RequestId | None = None, data: Any = None
) -> None:
    """Async twin of :func:`send_success`."""
    await asend_message(consumer, handler, message_id, None, data)


def group_event(message: Any, group: str | None = None) -> dict[str, Any]:
    """Return the channel-layer event that carries ``message`` to a group.

    ``message`` is encoded once here (a ``str`` is taken as already encoded).
    An object rohrpost's codec cannot encode travels as it is, as in 4.x, for
    each consumer to encode with its ``json_encoder`` (a channel layer that
    serializes events, like Redis's, may refuse it). ``group``, the group it is
    sent to, travels along so that a connection taken out of the group drops
    what was already queued for it.
    """
    event: dict[str, Any] = {"type": GROUP_EVENT_TYPE, "message": message}
    if not isinstance(message, str):
        with contextlib.suppress(TypeError):  # left as it is (see above)
            event["message"] = encoding.dumps(message)
    if group is not None:
        event["group"] = group
    return event


async def asend_to_group(
    group_name: str, message: Any, *, layer: str = DEFAULT_CHANNEL_LAYER
) -> None:
    """Send ``message`` to every connection in ``group_name``.

    Args:
        group_name: The channel-layer group.
        message: A message object (encoded once) or already-encoded JSON text.
        layer: The alias of the channel layer in ``CHANNEL_LAYERS``.

    Raises:
        RuntimeError: No channel layer is configured under ``layer``.
    """
    event = group_event(message, group_name)
    text = event["message"]
    if isinstance(text, str):
        (event["message"],), first = await history.arecord(group_name, [text])
        if first is not None:  # its position (rohrpost.history)
            event["epoch"], event["offset"] = first.epoch, first.offset
    await agroup_send(group_name, event, layer=layer)


async def agroup_send(
    group_name: str, event: dict[str, Any], *, layer: str = DEFAULT_CHANNEL_LAYER
) -> None:
    """Send a channel-layer ``event`` to ``group_name`` on the layer ``layer``.

    Raises:
        RuntimeError: No channel layer is configured under ``layer``.
    """
    channel_layer = get_channel_layer(layer)
    if channel_layer is None:
        raise RuntimeError(f"No channel layer {layer!r} is configured: set CHANNEL_LAYERS.")
    await channel_layer.group_send(group_name, event)


_background_sends: set[asyncio.Task[None]] = set()


def send_to_group(group_name: str, message: Any, *, layer: str = DEFAULT_CHANNEL_LAYER) -> None:
    """Sync twin of :func:`asend_to_group`, for views, signals, tasks and commands.

    Called from a thread that runs an event loop (sync code called straight
    from async code), it cannot block that loop to wait: the send is scheduled
    on the loop instead, and a failure is logged on the ``rohrpost`` logger.
    """
    call_from_sync(asend_to_group, group_name, message, layer=layer)


def call_from_sync(function: Any, *args: Any, **kwargs: Any) -> None:
    """Run the coroutine function ``function`` from sync code, wherever that code runs.

    Without an event loop in this thread it runs to completion
    (``async_to_sync``); on a loop's thread it is scheduled on that loop,
    and a failure is logged on the ``rohrpost`` logger.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(function)(*args, **kwargs)
        return
    task = loop.create_task(function(*args, **kwargs))
    _background_sends.add(task)
    task.add_done_callback(_background_send_done)


def _background_send_done(task: asyncio.Task[None]) -> None:
    _background_sends.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("Sending to a group failed", exc_info=task.exception())


def deliver(consumer: Any, text: str) -> None:
    """Send ``text`` to the client of any kind of consumer, from sync code."""
    consumer_deliver = getattr(consumer, "rohrpost_deliver", None)
    if consumer_deliver is not None:
        consumer_deliver(text)
        return
    send = consumer.send
    # Positional, as 4.x called it (see asend_message).
    if iscoroutinefunction(send):
        async_to_sync(send)(text)
    else:
        send(text)
