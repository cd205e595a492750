"""Typed handlers: request data checked by pydantic, replies encoded from their types.

Needs pydantic 2 (``pip install "rohrpost[pydantic]"``). A handler opts in by
naming the type of its data, either in the decorator or as the annotation of a
``data`` parameter::

    from pydantic import BaseModel

    class TaskIn(BaseModel):
        board: int
        title: str

    class TaskOut(BaseModel):
        id: int
        title: str

    @rohrpost_handler("task.add")
    def add_task(consumer, request, data: TaskIn) -> TaskOut:
        ...

The request's ``data`` is validated before the handler runs, and the handler
gets the validated value as ``data=`` besides ``consumer=`` and ``request=``.
Data that does not validate is answered with the error code ``invalid`` and
every problem found (see :func:`invalid_data`); the handler is not called.
The return value is encoded by pydantic from the return annotation (or the
``reply=`` type), so models, lists of models and dataclasses reach the wire
without a hand-written ``as_dict``.

Handlers without a type are not touched: they keep rohrpost 4.x's call and
cost nothing extra.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from rohrpost.exceptions import InvalidData

try:
    import pydantic
    from pydantic_core import to_jsonable_python
except ImportError as exc:  # pragma: no cover - the extra is installed in every test run
    raise ImportError('Typed handlers need pydantic 2: pip install "rohrpost[pydantic]"') from exc

__all__ = [
    "NOT_GIVEN",
    "TYPES_ATTRIBUTE",
    "HandlerTypes",
    "handler_types",
    "invalid_data",
    "reply_encoder",
    "type_adapter",
    "typed_handler",
    "validate",
]

#: The attribute a typed handler's wrapper keeps its :class:`HandlerTypes` in.
TYPES_ATTRIBUTE: Final = "__rohrpost_types__"

#: Stands for "not given" in :func:`typed_handler`'s ``data`` and ``reply``.
NOT_GIVEN: Any = inspect.Parameter.empty


@dataclass(frozen=True)
class HandlerTypes:
    """What a typed handler takes and returns.

    Attributes:
        data: The type its request ``data`` is validated as (``Any`` when untyped).
        reply: The type of its reply ``data`` (``Any`` when not declared).
    """

    data: Any = Any
    reply: Any = Any


@functools.lru_cache(maxsize=256)
def type_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    """A cached pydantic ``TypeAdapter`` for ``annotation``."""
    return pydantic.TypeAdapter(annotation)


def invalid_data(error: pydantic.ValidationError) -> InvalidData:
    """The :class:`~rohrpost.exceptions.InvalidData` to answer a failed validation with.

    The text names the first problem (``"Invalid data: title: Field required"``;
    the field is left out for ``data`` itself) and how many more there are;
    ``data["errors"]`` lists them all. The rejected input is never echoed.
    """
    errors = [
        {"path": list(item["loc"]), "message": item["msg"], "type": item["type"]}
        for item in error.errors(include_url=False, include_context=False, include_input=False)
    ]
    first = errors[0]
    where = ".".join(str(part) for part in first["path"])
    message = (
        f"Invalid data: {where}: {first['message']}"
        if where
        else f"Invalid data: {first['message']}"
    )
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return InvalidData(message, data={"errors": errors})


def validate(adapter: pydantic.TypeAdapter[Any], value: Any) -> Any:
    """Validate ``value`` with ``adapter``; raise :class:`InvalidData` when it does not fit."""
    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        raise invalid_data(exc) from None


def _hints(handler: Callable[..., Any]) -> dict[str, Any]:
    target = handler.func if isinstance(handler, functools.partial) else handler
    if not inspect.isroutine(target):
        target = getattr(target, "__call__", target)  # noqa: B004 - a callable object's method
    # Only the two annotations that matter: `consumer` may well name a type that
    # exists only under TYPE_CHECKING.
    annotations = getattr(target, "__annotations__", {})
    wanted = types.SimpleNamespace(
        __annotations__={key: annotations[key] for key in ("data", "return") if key in annotations}
    )
    try:
        return typing.get_type_hints(
            wanted, getattr(target, "__globals__", None), include_extras=True
        )
    except Exception as exc:  # a name defined only inside a function, say
        # Silently untyped would let every request through unchecked: refuse instead.
        raise TypeError(
            f"The annotations of {getattr(handler, '__qualname__', handler)!r} cannot be "
            f"resolved ({exc}); give the types as rohrpost_handler(..., data=..., reply=...)."
        ) from exc


def handler_types(handler: Callable[..., Any]) -> HandlerTypes | None:
    """The types of a registered handler, ``None`` for an untyped (4.x style) one."""
    return getattr(handler, TYPES_ATTRIBUTE, None)


def _checker(data: Any) -> Callable[[Any], Any]:
    if data is Any:
        return _unchecked
    # pydantic-core's validator itself: TypeAdapter's Python wrapper costs a call per request.
    validator = type_adapter(data).validator

    def check(value: Any) -> Any:
        try:
            return validator.validate_python(value)
        except pydantic.ValidationError as exc:
            raise invalid_data(exc) from None

    return check


def _unchecked(value: Any) -> Any:
    return value


def _encoder(reply: Any) -> Callable[[Any], Any]:
    if reply is Any or reply is None or reply is type(None):
        # Nothing declared: models and dataclasses anywhere in the value become JSON types.
        return _to_json_types
    # pydantic-core's serializer itself, to plain JSON types that the wire codec writes;
    # warnings="error": a value that is not of the declared type is the handler's bug.
    serializer = type_adapter(reply).serializer
    return functools.partial(serializer.to_python, mode="json", warnings="error")


def reply_encoder(annotation: Any) -> Callable[[Any], Any]:
    """What turns a value of ``annotation`` into JSON types (a typed reply, a snapshot)."""
    return _encoder(annotation)


def _to_json_types(value: Any) -> Any:
    if value is None or type(value) in (dict, str, int, float, bool):
        return value
    return to_jsonable_python(value)


def typed_handler(
    handler: Callable[..., Any],
    *,
    data: Any = NOT_GIVEN,
    reply: Any = NOT_GIVEN,
    is_async: bool,
) -> Callable[..., Any]:
    """Wrap ``handler`` so that it is called with validated ``data`` and its reply encoded.

    Args:
        handler: Called as ``handler(consumer=..., request=..., data=...)``.
        data: The type to validate the request's ``data`` as; by default the
            annotation of the handler's ``data`` parameter (``Any`` without one).
        reply: The type of the reply; by default the handler's return annotation.
        is_async: Whether ``handler`` must be awaited.

    Returns:
        A handler with rohrpost's usual signature, of the same kind (``async def``
        or not), carrying its :class:`HandlerTypes`.
    """
    hints = _hints(handler) if data is NOT_GIVEN or reply is NOT_GIVEN else {}
    data_type = hints.get("data", Any) if data is NOT_GIVEN else data
    reply_type = hints.get("return", Any) if reply is NOT_GIVEN else reply
    passes_data = "data" in inspect.signature(handler).parameters
    check = _checker(data_type)
    encode = _encoder(reply_type)

    # Four small closures rather than one with branches: this runs for every request.
    if is_async and passes_data:

        async def call_async(consumer: Any, request: dict[str, Any]) -> Any:
            result = await handler(
                consumer=consumer, request=request, data=check(request.get("data"))
            )
            return None if result is None else encode(result)

    elif is_async:

        async def call_async(consumer: Any, request: dict[str, Any]) -> Any:
            check(request.get("data"))
            result = await handler(consumer=consumer, request=request)
            return None if result is None else encode(result)

    elif passes_data:

        def call(consumer: Any, request: dict[str, Any]) -> Any:
            result = handler(consumer=consumer, request=request, data=check(request.get("data")))
            return None if result is None else encode(result)

    else:

        def call(consumer: Any, request: dict[str, Any]) -> Any:
            check(request.get("data"))
            result = handler(consumer=consumer, request=request)
            return None if result is None else encode(result)

    wrapper: Callable[..., Any] = functools.wraps(handler)(call_async if is_async else call)
    # The wrapper's own signature is rohrpost's (consumer, request).
    delattr(wrapper, "__wrapped__")
    setattr(wrapper, TYPES_ATTRIBUTE, HandlerTypes(data_type, reply_type))
    return wrapper
