"""What the fan-out benchmark's processes share: the payload, the groups, the layer setting.

Importing it configures nothing (unlike :mod:`bench.fanout_app`), so the
parent process of the benchmark can use it too.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CAPACITY", "PAYLOAD", "group_for", "layer_settings"]


def group_for(contender: str) -> str:
    """The group (and the bare app's Redis pub/sub channel) of one contender's subscribers."""
    return f"fanout-{contender}"


#: What every broadcast carries: a small push, as the change feed sends one.
PAYLOAD: dict[str, Any] = {
    "type": "fanout",
    "data": {"id": 42, "title": "a changed title", "done": False, "tags": ["a", "b"]},
}
#: Room for every broadcast of a phase in each subscriber's channel (the default is 100).
CAPACITY = 2000


def layer_settings(redis_url: str | None) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` setting: in memory, or channels_redis on ``redis_url``."""
    if redis_url is None:
        backend = "channels.layers.InMemoryChannelLayer"
        return {"default": {"BACKEND": backend, "CONFIG": {"capacity": CAPACITY}}}
    # socket_timeout above channels_redis' 5 s blocking read: with redis-py 8's default
    # (5 s) every idle consumer crashes (channels_redis #422), which is not what is measured.
    host = {"address": redis_url, "socket_timeout": 30}
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [host], "capacity": CAPACITY},
        }
    }
