"""An asyncio client for rohrpost servers, and a one-call helper for sync code.

Needs the ``client`` extra (``pip install 'rohrpost[client]'``, which brings
``websockets``)::

    async with Client("ws://127.0.0.1:8000/ws/rohrpost/") as client:
        print(await client.call("add", [1, 2, 3]))           # 6
        await client.subscribe({"type": "board", "id": 1})   # "board-1"
        async for push in client:
            print(push.action, push.group, push.object)

The client matches answers to requests by ``id``, pings the server every
``ping_interval`` seconds, replaces a connection that stops answering,
reconnects with exponential backoff and jitter, and subscribes again to every
group it was in. ``docs/python-client.md`` describes it in full.

Exceptions::

    RohrpostError              (rohrpost.exceptions)
     └── RohrpostCallError     the server answered a call with an error
    ConnectionError            (built in, an OSError)
     ├── ConnectionLost        the connection went before the answer came, or the client is closed
     │    └── ClosedByServer   the server closed with 4001 or 4003: the client stops for good
     └── HandshakeFailed       no WebSocket connection: HTTP 403 for a foreign Origin, ...
    TimeoutError               no answer within the timeout
"""

from __future__ import annotations

# Checked before anything else imports websockets, to say what is missing.
try:
    import websockets.asyncio.client  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "rohrpost.client needs the websockets package (13.0 or later): "
        "pip install 'rohrpost[client]'"
    ) from exc

from rohrpost.client._client import Client
from rohrpost.client._errors import (
    FINAL_CLOSE_CODES,
    ClosedByServer,
    ConnectionLost,
    HandshakeFailed,
    RohrpostCallError,
)
from rohrpost.client._once import acall_once, call_once
from rohrpost.client._push import Push
from rohrpost.client._websocket import MAX_FRAME_BYTES

__all__ = [
    "FINAL_CLOSE_CODES",
    "MAX_FRAME_BYTES",
    "Client",
    "ClosedByServer",
    "ConnectionLost",
    "HandshakeFailed",
    "Push",
    "RohrpostCallError",
    "acall_once",
    "call_once",
]
