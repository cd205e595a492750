"""The demo's rohrpost handlers: one of each kind a consumer can call, all typed.

- ``echo`` (``async def``): awaited on the event loop; returns the request's data.
- ``time`` (``inline=True``): a sync handler that does no I/O, called on the loop.
- ``whoami`` (plain sync): may touch the database, so it runs in a worker thread.
- ``add``: its ``data`` is typed as a list of numbers, so anything else is
  answered with the code ``invalid`` and the path of each bad item, before the
  handler runs.

Each handler names the type of its ``data`` and of its reply (pydantic, the
``rohrpost[pydantic]`` extra): rohrpost validates the one and encodes the
other, and ``python -m rohrpost schema`` publishes both. ``None`` as a reply
means the handler sent whatever it had to send itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.conf import settings
from django.utils import timezone
from pydantic import BaseModel, Strict

from rohrpost import rohrpost_handler
from rohrpost.message import asend_message

#: A JSON number; true and false are not numbers here (pydantic's strict mode).
Number = Annotated[float, Strict()]


class ServerTime(BaseModel):
    """The server's clock."""

    iso: str
    unix: float
    time_zone: str


class Identity(BaseModel):
    """Who the connection's user is."""

    authenticated: bool
    username: str | None


@rohrpost_handler("echo")
async def handle_echo(consumer: Any, request: dict[str, Any], data: Any = None) -> Any:
    """Answer with the request's ``data``, unchanged."""
    if data is None:
        # Returning None would mean "no reply": answer without data explicitly.
        await asend_message(consumer, "echo", message_id=request["id"])
        return None
    return data


@rohrpost_handler("time", inline=True)
def handle_time(consumer: Any, request: dict[str, Any], data: None = None) -> ServerTime:
    """Answer with the server's clock (ISO 8601 and Unix time)."""
    now = timezone.now()
    return ServerTime(iso=now.isoformat(), unix=now.timestamp(), time_zone=settings.TIME_ZONE)


@rohrpost_handler("whoami")
def handle_whoami(consumer: Any, request: dict[str, Any], data: None = None) -> Identity:
    """Answer with the user of the connection's session (log in at /admin/ to change it)."""
    user = consumer.scope.get("user")
    if user is None or not user.is_authenticated:
        return Identity(authenticated=False, username=None)
    return Identity(authenticated=True, username=user.get_username())


@rohrpost_handler("add", inline=True)
def handle_add(consumer: Any, request: dict[str, Any], data: list[Number]) -> int | float:
    """Answer with the sum of ``data``, a list of numbers (an integer when it is whole)."""
    total = sum(data)
    return int(total) if total.is_integer() else total
