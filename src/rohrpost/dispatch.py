"""From a validated request to a handler call and back to a reply frame, without I/O.

Both consumers (and :func:`rohrpost.main.handle_rohrpost_message`) use this
module the same way, and differ only in how they call the handler and send text::

    call = prepare_call(registry, text_data, bytes_data, limits)
    if isinstance(call, str):                   # an error reply, ready to send
        send(call)
    else:
        reply = call.run(consumer)              # or `await call.arun(consumer, ...)`
        if reply is not None:
            send(reply)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from rohrpost import metrics, protocol, startup
from rohrpost.exceptions import RohrpostError
from rohrpost.registry import Handler, HandlerMode, HandlerRegistry, handler_mode

__all__ = ["Call", "prepare_call"]

logger = logging.getLogger("rohrpost")

#: The handlers rohrpost registers itself (:mod:`rohrpost.handlers`).
BUILT_IN_TYPES = frozenset({"ping"})


@dataclass(slots=True)
class Call:
    """A request matched to its handler.

    Attributes:
        handler: The registered handler.
        mode: How to call it (see :data:`rohrpost.registry.HandlerMode`).
        request: The validated request object passed to the handler.
    """

    handler: Handler
    mode: HandlerMode
    request: dict[str, Any]

    def run(self, consumer: Any, handler: Handler | None = None) -> str | None:
        """Call the handler and return the frame to answer with (``None``: no answer).

        Args:
            consumer: Passed to the handler.
            handler: The handler adapted to the caller (for example wrapped in
                ``async_to_sync``); the registered handler when ``None``.
        """
        try:
            result = (handler or self.handler)(consumer=consumer, request=self.request)
        except Exception as exc:
            return self.reply_for_error(exc)
        return self.reply_for(result)

    async def arun(self, consumer: Any, handler: Handler | None = None) -> str | None:
        """Async twin of :meth:`run`: awaits the (possibly adapted) handler."""
        try:
            result = await (handler or self.handler)(consumer=consumer, request=self.request)
        except Exception as exc:
            return self.reply_for_error(exc)
        return self.reply_for(result)

    def reply_for(self, result: Any) -> str | None:
        """Return the reply frame for a handler's return value (``None``: no reply)."""
        if result is None:
            return None
        request = self.request
        try:
            return protocol.encode_reply(request["id"], request["type"], result)
        except (TypeError, ValueError) as exc:
            return self.reply_for_error(exc)

    def reply_for_error(self, exc: BaseException) -> str:
        """Return the error frame for an exception the handler raised.

        A :class:`~rohrpost.exceptions.RohrpostError` answers with its own code
        and message. Anything else is logged with its traceback on the
        ``rohrpost`` logger and answered with ``handler_error``; the exception
        text reaches the client only when ``settings.DEBUG`` is on.
        """
        request_id = self.request["id"]
        request_type = self.request["type"]
        if isinstance(exc, RohrpostError):
            try:
                return protocol.encode_error(
                    request_id, request_type, exc.message, exc.code, exc.data
                )
            except (TypeError, ValueError) as encode_exc:
                exc = encode_exc
        logger.error(
            "Handler for %r failed on request id %r", request_type, request_id, exc_info=exc
        )
        message = f"The handler for '{request_type}' failed."
        if _debug():
            message = f"{message} {type(exc).__name__}: {exc}"
        return protocol.encode_error(request_id, request_type, message, protocol.HANDLER_ERROR)


class _MeasuredCall(Call):
    """A :class:`Call` that records its duration and reply (``ROHRPOST["METRICS"]`` on).

    :func:`prepare_call` makes one instead of a plain :class:`Call` when
    metrics are on, so that a frame pays nothing for them when they are off.
    """

    __slots__ = ("code", "metrics")

    def __init__(
        self,
        handler: Handler,
        mode: HandlerMode,
        request: dict[str, Any],
        series: metrics.RequestMetrics,
    ) -> None:
        super().__init__(handler, mode, request)
        self.metrics = series
        self.code = metrics.OK

    def run(self, consumer: Any, handler: Handler | None = None) -> str | None:
        started = perf_counter()
        reply = super().run(consumer, handler)
        self.metrics.handled(perf_counter() - started, None if reply is None else self.code)
        return reply

    async def arun(self, consumer: Any, handler: Handler | None = None) -> str | None:
        started = perf_counter()
        reply = await super().arun(consumer, handler)
        self.metrics.handled(perf_counter() - started, None if reply is None else self.code)
        return reply

    def reply_for_error(self, exc: BaseException) -> str:
        # (A RohrpostError whose data cannot be encoded is answered with
        # handler_error, yet counted under its own code: a bug the log shows.)
        self.code = exc.code if isinstance(exc, RohrpostError) else protocol.HANDLER_ERROR
        return super().reply_for_error(exc)


def prepare_call(
    registry: HandlerRegistry,
    text: str | None,
    binary: bytes | None = None,
    limits: protocol.Limits = protocol.DEFAULT_LIMITS,
) -> Call | str:
    """Parse a frame and find its handler.

    Returns:
        A :class:`Call` to run, or the text of the error reply to send instead.
    """
    request = protocol.parse_request(text, binary, limits)
    if isinstance(request, protocol.FrameError):
        metrics.rejected(metrics.INVALID_FRAME, request.code)
        return request.encode()
    handler = registry.get(request["type"])
    if handler is None:
        metrics.rejected(metrics.UNKNOWN_TYPE, protocol.UNKNOWN_TYPE)
        return protocol.encode_error(
            request["id"],
            request["type"],
            _unknown_type(registry, request["type"]),
            protocol.UNKNOWN_TYPE,
        )
    if metrics.enabled and (series := metrics.received(request["type"])):  # off: one check
        return _MeasuredCall(handler, handler_mode(handler), request, series)
    return Call(handler, handler_mode(handler), request)


#: Types a client library sends on its own; their handlers come from installing
#: :class:`rohrpost.subscriptions.Subscriptions`.
SUBSCRIPTION_TYPES = frozenset({"subscribe", "unsubscribe"})


def _unknown_type(registry: HandlerRegistry, request_type: str) -> str:
    """The error text for a type nobody handles, with a hint where a set-up step is missing.

    The server's log gets the hint once (a client choosing the type cannot flood it).
    """
    message = f"No registered handler called '{request_type}'."
    if request_type in SUBSCRIPTION_TYPES:
        startup.log_once(
            "no-subscriptions",
            logging.WARNING,
            "A client sent %r, but no handler is registered for it: install subscriptions "
            "with Subscriptions().install() in a module imported at start-up, such as an "
            "installed app's rohrpost_handlers.py, which the rohrpost app imports.",
            request_type,
        )
        return f"{message} The server has no subscriptions installed."
    if set(registry) <= BUILT_IN_TYPES:
        startup.log_once(
            "no-handlers",
            logging.WARNING,
            "A client sent %r, but no handler besides the built-in ones is registered: "
            "put handlers in an installed app's rohrpost_handlers.py (imported by the "
            "rohrpost app when it is in INSTALLED_APPS), or import their module at start-up.",
            request_type,
        )
    return message


def _debug() -> bool:
    from django.conf import settings

    try:
        return bool(settings.DEBUG)
    except Exception:  # settings not configured: not a debug server
        return False
