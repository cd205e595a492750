"""Opening a WebSocket connection, and telling why one ended, in the client's exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.typing import Origin

from rohrpost.client._errors import (
    FINAL_CLOSE_CODES,
    ClosedByServer,
    ConnectionLost,
    HandshakeFailed,
)

__all__ = ["MAX_FRAME_BYTES", "http_origin", "lost_error", "open_websocket"]

#: Largest frame the client accepts (uvicorn's own default maximum).
MAX_FRAME_BYTES: Final = 16 * 2**20


def http_origin(url: str) -> str:
    """``ws://host:port/path`` -> ``http://host:port`` (``wss`` -> ``https``)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # never send credentials in the Origin
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{host}"


async def open_websocket(
    url: str,
    *,
    origin: str,
    headers: Mapping[str, str],
    open_timeout: float,
    close_timeout: float,
) -> ClientConnection:
    """Open a connection to ``url`` for the client.

    Raises:
        OSError: The server cannot be reached (``ConnectionRefusedError``, ...),
            did not answer in time (``TimeoutError``) or refused the handshake
            (:class:`HandshakeFailed`).
    """
    try:
        return await connect(
            url,
            origin=Origin(origin),
            additional_headers=headers,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            ping_interval=None,  # the keepalive is rohrpost's own ping
            max_size=MAX_FRAME_BYTES,
        )
    except asyncio.TimeoutError as exc:
        message = f"No WebSocket connection to {url} within {open_timeout:g} s"
        raise TimeoutError(message) from exc
    except InvalidStatus as exc:
        status = exc.response.status_code
        hint = " (is the Origin allowed?)" if status == 403 else ""
        raise HandshakeFailed(
            f"{url} refused the WebSocket handshake with HTTP {status}{hint}",
            status=status,
        ) from exc
    except WebSocketException as exc:
        raise HandshakeFailed(f"No WebSocket handshake with {url}: {exc}") from exc


def lost_error(connection: ClientConnection, url: str) -> ConnectionLost:
    """The error for calls that ``connection`` (to ``url``) left without an answer.

    Returns:
        :class:`ClosedByServer` for a close code in :data:`FINAL_CLOSE_CODES`,
        else :class:`ConnectionLost`.
    """
    # The sans-I/O protocol's view: websockets 13.0 has no Connection.close_code yet.
    code, reason = connection.protocol.close_code, connection.protocol.close_reason
    if code is not None and code in FINAL_CLOSE_CODES:
        return ClosedByServer(code, reason)
    return ConnectionLost(
        f"Lost the connection to {url} (close code {code})", code=code, reason=reason
    )
