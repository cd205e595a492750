"""Idle memory per connection: the bare ASGI echo, Channels' async consumer, rohrpost's.

Part of :mod:`bench.fanout`. Each contender gets a fresh server process
(in-memory layer). A subscriber process first opens :data:`WARM_UP`
connections, each answering one ping, so that everything a first connection
loads or allocates once is in the baseline; then the server's RSS is read
(``VmRSS`` from ``/proc/<pid>/status``), another process opens
``connections`` more, each doing one ping round trip and then staying idle,
and after :data:`SETTLE_SECONDS` the RSS is read again. The growth divided
by ``connections`` is the figure; the ratio is against the bare echo.
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

__all__ = ["CONTENDERS", "TARGET_RATIO", "measure"]

#: Report name -> the path in :mod:`bench.fanout_app` (each answers a ping with a pong).
CONTENDERS = {
    "BareASGI": "bare",
    "ChannelsAsyncJson": "channels",
    "AsyncRohrpost": "rohrpost-async",
}
#: Issue 10's target: rohrpost's idle connection at most 1.05x the bare echo's.
TARGET_RATIO = 1.05
WARM_UP = 50
SETTLE_SECONDS = 1.0
PING = {"id": 1, "type": "ping", "data": None}


def measure_one(key: str, connections: int, timeout: float) -> dict[str, Any]:
    server, port = fanout_server(key, None)
    url = [f"ws://127.0.0.1:{port}/{key}"]
    warm = idle = None
    try:
        wait_until_ready(server, port)
        warm = subscribers(url, WARM_UP, PING, timeout)
        time.sleep(SETTLE_SECONDS)
        before = rss_bytes(server.pid)
        idle = subscribers(url, connections, PING, timeout)
        time.sleep(SETTLE_SECONDS)
        after = rss_bytes(server.pid)
    finally:
        for client in (idle, warm):
            if client is not None:
                client.close()
        stop_server(server)
    return {
        "connections": connections,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_connection": (after - before) / connections,
        "failure": None,
    }


def measure(connections: int, timeout: float) -> dict[str, Any]:
    """Every contender of :data:`CONTENDERS`, one after the other, each on a fresh server."""
    results: dict[str, Any] = {}
    for name, key in CONTENDERS.items():
        try:
            results[name] = measure_one(key, connections, timeout)
        except Exception as exc:  # a failing contender is a result, not a crash
            results[name] = {"failure": f"{type(exc).__name__}: {exc}"}
    floor = results["BareASGI"].get("bytes_per_connection")
    for name, result in results.items():
        if name != "BareASGI" and floor and result.get("bytes_per_connection") is not None:
            result["ratio_to_bare"] = result["bytes_per_connection"] / floor
            result["met"] = (
                result["ratio_to_bare"] <= TARGET_RATIO if name == "AsyncRohrpost" else None
            )
    return results
