"""The client's exceptions: a refused call, a lost connection, a failed handshake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rohrpost.exceptions import RohrpostError

__all__ = [
    "FINAL_CLOSE_CODES",
    "ClosedByServer",
    "ConnectionLost",
    "HandshakeFailed",
    "RohrpostCallError",
]

#: Close codes after which reconnecting would only repeat the refusal: the
#: client stops for good (4001 not authenticated, 4003 ended by the server).
FINAL_CLOSE_CODES: Final = frozenset({4001, 4003})
_CLOSE_MEANINGS: Final = {
    4001: "not authenticated",
    4003: "the server ended this user's connections",
}


class RohrpostCallError(RohrpostError):
    """The server answered a call with an error frame.

    Attributes:
        code: The error's stable machine code (``forbidden``, ``invalid``, ...).
        message: The error's human-readable text.
        data: The error's ``data`` detail, ``None`` when it has none.
        type: The ``type`` of the error frame (the request's type).
        id: The ``id`` of the error frame (the request's id).
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        data: Any = None,
        type: str | None = None,
        id: Any = None,
    ) -> None:
        super().__init__(message, code=code, data=data)
        self.type = type
        self.id = id

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> RohrpostCallError:
        """Build the exception from an error frame (``{"id", "type", "error", "code"}``)."""
        code, message, type_ = reply.get("code"), reply.get("error"), reply.get("type")
        return cls(
            message if isinstance(message, str) else str(message),
            code=code if isinstance(code, str) else None,
            data=reply.get("data"),
            type=type_ if isinstance(type_, str) else None,
            id=reply.get("id"),
        )

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConnectionLost(ConnectionError):
    """The connection ended before the answer came, or the client is closed.

    Attributes:
        code: The WebSocket close code when the connection closed (1006: no
            close frame, e.g. the network failed), else ``None``.
        reason: The close reason the server gave, if any.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason


class ClosedByServer(ConnectionLost):
    """The server closed with a code in :data:`FINAL_CLOSE_CODES`; the client stopped."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        meaning = _CLOSE_MEANINGS.get(code, "refused")
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"the server closed the connection with code {code} ({meaning}){detail}; "
            "the client does not reconnect",
            code=code,
            reason=reason,
        )


class HandshakeFailed(ConnectionError):
    """The server did not accept the WebSocket handshake.

    Attributes:
        status: The HTTP status of the refusal (403 for an ``Origin`` the server
            does not allow), ``None`` when the answer was not HTTP at all.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
