"""The fan-out benchmark's sender on Redis: a plain Python process, as a worker or a script.

Run by :mod:`bench.fanout` as ``python -m bench.fanout_broadcast`` with
``BENCH_FANOUT_REDIS`` set: importing :mod:`bench.fanout_app` gives it the
same Django settings as the servers.
It connects once, then for each line ``{"contender": NAME, "count": B}`` on
stdin sends B broadcasts to that contender's group and answers
``{"sent": B, "cpu": seconds}`` (its own CPU for them). The sends are what
each contender's authors would write:

- ``bare``: ``PUBLISH`` of the encoded payload on one Redis channel (each bare
  server process has one subscription to it);
- ``channels``: ``channel_layer.group_send(group, {"type": "fanout.push", ...})``;
- ``rohrpost-async`` / ``rohrpost-sync``: :func:`rohrpost.asend_to_group`, the
  async twin of ``send_to_group``: one event loop for the whole run, so that
  channels_redis keeps one connection pool (``send_to_group`` from plain sync
  code makes a new loop, and so a new Redis connection, per call).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bench.fanout_app import REDIS_URL
from bench.fanout_shared import PAYLOAD, group_for

__all__ = ["main"]


async def serve(redis_url: str) -> None:
    """Answer broadcast commands from stdin until it ends."""
    import redis.asyncio as redis
    from channels.layers import get_channel_layer

    from rohrpost import asend_to_group

    client = redis.Redis.from_url(redis_url)
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        command: dict[str, Any] = json.loads(line)
        count, group = int(command["count"]), group_for(command["contender"])
        started = time.process_time()
        for _ in range(count):
            if command["contender"] == "bare":
                await client.publish(group, json.dumps(PAYLOAD))
            elif command["contender"] == "channels":
                await layer.group_send(group, {"type": "fanout.push", "message": PAYLOAD})
            else:
                await asend_to_group(group, PAYLOAD)
        print(json.dumps({"sent": count, "cpu": time.process_time() - started}), flush=True)
    await client.aclose()


def main() -> None:
    if REDIS_URL is None:
        sys.exit("bench.fanout_broadcast: set BENCH_FANOUT_REDIS to the Redis URL")
    asyncio.run(serve(REDIS_URL))


if __name__ == "__main__":
    main()
