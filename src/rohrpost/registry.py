"""Handler registries: which function answers which message ``type``.

The default registry, :data:`HANDLERS`, maps type names to handlers, and
:func:`rohrpost_handler` adds to it::

    from rohrpost.registry import rohrpost_handler

    @rohrpost_handler("echo")
    def handle_echo(consumer, request):
        return request.get("data")          # sent as {"id", "type": "echo", "data"}

    @rohrpost_handler(["a", "b"])
    async def handle_both(consumer, request):
        ...

    @rohrpost_handler()                     # registered under its own name, "status"
    def status(consumer, request):
        ...

A handler is called as ``handler(consumer=..., request=...)`` and may be a
plain function or an ``async def``. A *typed* handler (``data=`` in the
decorator, or a ``data`` parameter) is also given its request's ``data``,
validated by pydantic first (:mod:`rohrpost.typed`). A consumer class can serve its own
registry (``rohrpost_registry = HandlerRegistry()``), so two endpoints can
offer different handler sets.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

from asgiref.sync import iscoroutinefunction

__all__ = [
    "HANDLERS",
    "Handler",
    "HandlerMode",
    "HandlerRegistry",
    "handler_mode",
    "rohrpost_handler",
]

Handler = Callable[..., Any]
HandlerT = TypeVar("HandlerT", bound=Handler)

#: How a consumer calls a handler: ``"async"`` awaited on the event loop,
#: ``"sync"`` in a worker thread (under the async consumer), ``"inline"`` a
#: sync handler called directly on the event loop.
HandlerMode = Literal["async", "sync", "inline"]

_INLINE_MARK = "__rohrpost_inline__"

# "No type given" for the typed-handler arguments (``None`` is a type there).
_UNTYPED: Any = object()


class HandlerRegistry(dict[str, Handler]):
    """A mapping of message type to handler, with a decorator to fill it.

    It is a plain ``dict`` underneath, so 4.x code that reads or patches
    ``HANDLERS[name]`` keeps working.
    """

    def register(
        self,
        names: str | Iterable[str] | None,
        handler: Handler,
        *,
        inline: bool = False,
        data: Any = _UNTYPED,
        reply: Any = _UNTYPED,
    ) -> None:
        """Register ``handler`` for one type name or several.

        Args:
            names: A type name, or an iterable of them; ``None`` or empty (a
                ``""`` or ``[]``, as 4.x took them) registers the handler under
                its own ``__name__``.
            handler: A function or ``async def`` called as ``handler(consumer=..., request=...)``.
            inline: Mark a sync handler as non-blocking: the async consumer then
                calls it on the event loop instead of in a worker thread. Only
                for handlers that do no I/O besides rohrpost's send helpers.
            data: The type the request's ``data`` must have (a pydantic model,
                a dataclass, ``list[int]``, ...); the handler is then called with
                the validated value as ``data=``. Without it, a handler with a
                ``data`` parameter is typed by that parameter's annotation.
            reply: The type of the reply's ``data``; by default a typed
                handler's return annotation.

        Raises:
            ValueError: A name already has a handler, ``inline`` was asked
                of an async handler, or no name was given for a handler
                without a ``__name__``.
        """
        if not names:
            names = getattr(handler, "__name__", None)
            if not isinstance(names, str):
                raise ValueError(f"{handler!r} has no __name__: register it with a name.")
        name_list = [names] if isinstance(names, str) else list(names)
        for name in name_list:
            if name in self:
                raise ValueError(f'Handler for "{name}" is already defined.')
        if inline and iscoroutinefunction(handler):
            raise ValueError("inline=True is for sync handlers; async ones run on the loop anyway.")
        if data is not _UNTYPED or reply is not _UNTYPED or _takes_data(handler):
            from rohrpost import typed  # needs pydantic: imported only for typed handlers

            handler = typed.typed_handler(
                handler,
                data=typed.NOT_GIVEN if data is _UNTYPED else data,
                reply=typed.NOT_GIVEN if reply is _UNTYPED else reply,
                is_async=handler_mode(handler) == "async",
            )
        if inline:
            setattr(handler, _INLINE_MARK, True)
        for name in name_list:
            self[name] = handler

    def handler(
        self,
        names: str | Iterable[str] | None = None,
        *,
        inline: bool = False,
        data: Any = _UNTYPED,
        reply: Any = _UNTYPED,
    ) -> Callable[[HandlerT], HandlerT]:
        """Return a decorator that registers the decorated function (see :meth:`register`).

        The decorated function itself is returned unchanged, so a test can
        still call it directly.
        """

        def decorator(handler: HandlerT) -> HandlerT:
            self.register(names, handler, inline=inline, data=data, reply=reply)
            return handler

        return decorator

    def __repr__(self) -> str:
        return f"HandlerRegistry({sorted(self)!r})"


#: The default registry, served by every consumer that does not name its own.
HANDLERS = HandlerRegistry()


def rohrpost_handler(
    name: str | Iterable[str] | None = None,
    *,
    inline: bool = False,
    registry: HandlerRegistry | None = None,
    data: Any = _UNTYPED,
    reply: Any = _UNTYPED,
) -> Callable[[HandlerT], HandlerT]:
    """Register the decorated function as the handler for ``name``.

    ``@rohrpost_handler()`` (no name) registers it under the function's own
    name, as 4.x did; ``name`` may also be given by keyword.

    Args:
        name: A type name, or a list of them; ``None`` for the function's name.
        inline: See :meth:`HandlerRegistry.register`.
        registry: The registry to add to; the default is :data:`HANDLERS`.
        data: The type of the request's ``data``, for a typed handler (see
            :meth:`HandlerRegistry.register` and :mod:`rohrpost.typed`).
        reply: The type of the reply's ``data``, for a typed handler.

    Raises:
        ValueError: A name already has a handler
            (``Handler for "<name>" is already defined.``).
    """
    return (HANDLERS if registry is None else registry).handler(
        name, inline=inline, data=data, reply=reply
    )


@functools.lru_cache(maxsize=1024)
def handler_mode(handler: Handler) -> HandlerMode:
    """Tell how a consumer should call ``handler`` (cached per handler)."""
    target = handler.func if isinstance(handler, functools.partial) else handler
    if iscoroutinefunction(target) or (
        not inspect.isroutine(target) and iscoroutinefunction(getattr(target, "__call__", None))  # noqa: B004 - an async __call__ is what we look for
    ):
        return "async"
    if getattr(handler, _INLINE_MARK, False):
        return "inline"
    return "sync"


def _takes_data(handler: Handler) -> bool:
    """Whether ``handler`` has a ``data`` parameter, which makes it a typed handler."""
    try:
        return "data" in inspect.signature(handler).parameters
    except (TypeError, ValueError):  # callables without a signature take only the 4.x pair
        return False
