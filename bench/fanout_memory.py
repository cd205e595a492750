"""Idle memory per connection: the bare ASGI echo, Channels' async consumer, rohrpost's.

Part of :mod:`bench.fanout`. Each contender gets a fresh server process
(in-memory layer) per client kind. A subscriber process first opens
:data:`WARM_UP` connections, each answering one ping, so that everything a
first connection loads or allocates once is in the baseline; then the
server's RSS is read (``VmRSS`` from ``/proc/<pid>/status``), another process
opens ``connections`` more, each doing one ping round trip and then staying
idle, and after :data:`SETTLE_SECONDS` the RSS is read again. The growth
divided by ``connections`` is the figure; the ratio is against the bare echo.

Two client kinds (:data:`CLIENTS`): ``deflate`` offers permessage-deflate as
browsers do (uvicorn accepts it by default and keeps compression state per
socket), ``plain`` offers no extension.
"""

from __future__ import annotations

import time
from typing import Any

from bench.fanout_procs import (
    fanout_server,
    rss_bytes,
    stop_server,
    subscribers,
    wait_until_ready,
)

__all__ = ["CLIENTS", "CONTENDERS", "TARGET_RATIO", "measure"]

#: Report name -> the path in :mod:`bench.fanout_app` (each answers a ping with a pong).
CONTENDERS = {
    "BareASGI": "bare",
    "ChannelsAsyncJson": "channels",
    "AsyncRohrpost": "rohrpost-async",
}
#: Client kind -> whether it offers permessage-deflate.
CLIENTS = {"deflate": True, "plain": False}
#: Issue 10's target: rohrpost's idle connection at most 1.05x the bare echo's.
TARGET_RATIO = 1.05
WARM_UP = 50
SETTLE_SECONDS = 1.0
PING = {"id": 1, "type": "ping", "data": None}


def measure_one(key: str, connections: int, deflate: bool, timeout: float) -> dict[str, Any]:
    server, port = fanout_server(key, None)
    url = [f"ws://127.0.0.1:{port}/{key}"]
    warm = idle = None
    try:
        wait_until_ready(server, port)
        warm = subscribers(url, WARM_UP, PING, timeout, deflate)
        time.sleep(SETTLE_SECONDS)
        before = rss_bytes(server.pid)
        idle = subscribers(url, connections, PING, timeout, deflate)
        time.sleep(SETTLE_SECONDS)
        after = rss_bytes(server.pid)
        deflated = idle.ready["deflated"]
    finally:
        for client in (idle, warm):
            if client is not None:
                client.close()
        stop_server(server)
    return {
        "connections": connections,
        "deflated": deflated,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_connection": (after - before) / connections,
        "failure": None,
    }


def measure(connections: int, timeout: float) -> dict[str, Any]:
    """Every contender with every client kind, one after the other, each on a fresh server."""
    results: dict[str, Any] = {}
    for client, deflate in CLIENTS.items():
        kind: dict[str, Any] = {}
        for name, key in CONTENDERS.items():
            try:
                kind[name] = measure_one(key, connections, deflate, timeout)
            except Exception as exc:  # a failing contender is a result, not a crash
                kind[name] = {"failure": f"{type(exc).__name__}: {exc}"}
        floor = kind["BareASGI"].get("bytes_per_connection")
        for name, result in kind.items():
            if name != "BareASGI" and floor and result.get("bytes_per_connection") is not None:
                result["ratio_to_bare"] = result["bytes_per_connection"] / floor
                judged = name == "AsyncRohrpost"
                result["met"] = result["ratio_to_bare"] <= TARGET_RATIO if judged else None
        results[client] = kind
    return results
