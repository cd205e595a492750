"""The demo's rohrpost handlers: one of each kind a consumer can call.

- ``echo`` (``async def``): awaited on the event loop; returns the request's data.
- ``time`` (``inline=True``): a sync handler that does no I/O, called on the loop.
- ``whoami`` (plain sync): may touch the database, so it runs in a worker thread.
- ``add``: refuses bad input by raising :class:`~rohrpost.RohrpostError`,
  which becomes an error reply with its own ``code``.

What a handler returns becomes the reply ``{"id", "type", "data"}``;
``None`` means the handler sent whatever it had to send itself.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from rohrpost import RohrpostError, rohrpost_handler
from rohrpost.message import asend_message


@rohrpost_handler("echo")
async def handle_echo(consumer: Any, request: dict[str, Any]) -> Any:
    """Answer with the request's ``data``, unchanged."""
    data = request.get("data")
    if data is None:
        # Returning None would mean "no reply": answer without data explicitly.
        await asend_message(consumer, "echo", message_id=request["id"])
        return None
    return data


@rohrpost_handler("time", inline=True)
def handle_time(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Answer with the server's clock (ISO 8601 and Unix time)."""
    now = timezone.now()
    return {"iso": now.isoformat(), "unix": now.timestamp(), "time_zone": settings.TIME_ZONE}


@rohrpost_handler("whoami")
def handle_whoami(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Answer with the user of the connection's session (log in at /admin/ to change it)."""
    user = consumer.scope.get("user")
    if user is None or not user.is_authenticated:
        return {"authenticated": False, "username": None}
    return {"authenticated": True, "username": user.get_username()}


@rohrpost_handler("add", inline=True)
def handle_add(consumer: Any, request: dict[str, Any]) -> int | float:
    """Answer with the sum of ``data``, which must be a list of numbers."""
    numbers = request.get("data")
    if not isinstance(numbers, list) or not all(
        isinstance(number, (int, float)) and not isinstance(number, bool) for number in numbers
    ):
        raise RohrpostError("`data` must be a list of numbers, e.g. [1, 2, 3].", code="invalid")
    return sum(numbers)
