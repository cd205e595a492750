"""Django settings for the change-feed benchmark (:mod:`bench.changefeed`).

Each channel layer is measured in its own process, which chooses it and the
database file through the environment before Django starts:

- ``ROHRPOST_BENCH_LAYER``: ``memory`` (``InMemoryChannelLayer``) or ``redis``
  (``channels_redis``' ``RedisChannelLayer`` on ``ROHRPOST_BENCH_REDIS``,
  default ``redis://127.0.0.1:6379/0``, with the key prefix
  ``ROHRPOST_BENCH_REDIS_PREFIX`` so that a run never touches other keys);
- ``ROHRPOST_BENCH_DB``: the SQLite database file (in a temporary directory);
- ``ROHRPOST_BENCH_BATCH=1``: measure with ``ROHRPOST["BATCH_GROUP_MESSAGES"]``
  on (the pushes for a group share channel-layer events); off by default, as
  in rohrpost's own defaults;
- ``ROHRPOST_BENCH_HISTORY=1``: with ``ROHRPOST["HISTORY"]`` on
  (``--history``); the history keys expire 60 s after the run.

Both layers get a channel capacity of :data:`CHANNEL_CAPACITY` messages
instead of the default 100: the benchmark's one subscribed channel receives
a whole batch before it is read, and a send to a full channel is dropped
early, which would make publishing look cheaper than real delivery is.
"""

from __future__ import annotations

import os
from typing import Any

#: Messages one channel may hold; above the most one timed batch delivers (1000).
CHANNEL_CAPACITY = 10_000

LAYER = os.environ.get("ROHRPOST_BENCH_LAYER", "memory")
REDIS_URL = os.environ.get("ROHRPOST_BENCH_REDIS", "redis://127.0.0.1:6379/0")

SECRET_KEY = "rohrpost-bench-not-secret"  # noqa: S105 - a local benchmark, no server
DEBUG = False  # DEBUG=True would log every query and distort the timings
USE_TZ = True
INSTALLED_APPS = ["rohrpost", "bench.feedmodels"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ROHRPOST_BENCH_DB", ":memory:"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
ROHRPOST: dict[str, Any] = {"BATCH_GROUP_MESSAGES": os.environ.get("ROHRPOST_BENCH_BATCH") == "1"}
if os.environ.get("ROHRPOST_BENCH_HISTORY") == "1":  # python -m bench.changefeed --history
    ROHRPOST["HISTORY"] = {"ENABLED": True, "TTL": 60}
LOGGING_CONFIG = None

CHANNEL_LAYERS: dict[str, dict[str, Any]]
if LAYER == "redis":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": os.environ.get("ROHRPOST_BENCH_REDIS_PREFIX", "rohrpost-bench"),
                "capacity": CHANNEL_CAPACITY,
            },
        }
    }
elif LAYER == "memory":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY},
        }
    }
else:
    raise ValueError(f"ROHRPOST_BENCH_LAYER must be 'memory' or 'redis', not {LAYER!r}")
