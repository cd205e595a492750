"""The exceptions rohrpost raises, and the one a handler raises to answer with an error.

Every exception has one base, so ``except RohrpostError`` catches them all::

    RohrpostError            a handler's way to answer with an error reply
     ├── ProtocolError       a frame that breaks the wire protocol
     ├── Forbidden           the connection may not do what it asked
     └── InvalidData         the request's data is not what the handler takes

A handler that raises a ``RohrpostError`` gets an error reply carrying the
exception's ``code``, ``message`` and, when set, ``data``; nothing is logged,
because the handler chose to answer that way::

    @rohrpost_handler("rename")
    def rename(consumer, request):
        if not request.get("data", {}).get("name"):
            raise RohrpostError("A name is required.", code="invalid")
"""

from __future__ import annotations

from typing import Any

__all__ = ["Forbidden", "InvalidData", "ProtocolError", "RohrpostError"]


class RohrpostError(Exception):
    """An error that becomes an error reply to the request being handled.

    Args:
        message: The human-readable text for the reply's ``error`` field.
        code: The stable machine code for the reply's ``code`` field.
        data: Optional detail for the reply's ``data`` field (must be JSON-encodable).
    """

    default_code = "error"
    default_message = "The request could not be handled."

    def __init__(self, message: str | None = None, *, code: str | None = None, data: Any = None):
        self.message = message if message is not None else self.default_message
        self.code = code if code is not None else self.default_code
        self.data = data
        super().__init__(self.message)


class ProtocolError(RohrpostError):
    """A frame that is not a valid rohrpost request."""

    default_code = "invalid_request"
    default_message = "The frame is not a valid rohrpost request."


class Forbidden(RohrpostError):
    """The connection is not allowed to do what it asked."""

    default_code = "forbidden"
    default_message = "You are not allowed to do this."


class InvalidData(RohrpostError):
    """The request's ``data`` is not what the handler takes (code ``invalid``).

    Typed handlers (:mod:`rohrpost.typed`) raise it with ``data`` of the form
    ``{"errors": [{"path": [...], "message": "...", "type": "..."}]}``: one
    entry per problem, ``path`` the keys and list indexes that lead to the
    value inside the request's ``data`` (``[]`` for ``data`` itself), ``type``
    a stable name of the problem (pydantic's: ``missing``, ``int_parsing``,
    ...). A hand-written check may raise it too, with the same shape.
    """

    default_code = "invalid"
    default_message = "The data is invalid."
