"""The ASGI application the flood benchmark serves: both consumers with default limits.

Run by :mod:`bench.flood` as ``uvicorn bench.flood_app:application``. There is
no ``ROHRPOST`` setting: the server runs with rohrpost's defaults, which are
what the benchmark measures (100 frames and 512 KiB per second per connection,
bursts of 200 frames and 1 MiB, close 4029 after more than 100 refusals in one
second, 256 KiB frames, 32 levels of nesting). ``BENCH_ROHRPOST`` in the
environment, a JSON object, is made the ``ROHRPOST`` setting instead
(``python -m bench.flood --rohrpost JSON``), to measure other limits.

==========  ==============================================================
path        what
==========  ==============================================================
``/async``  :class:`rohrpost.AsyncRohrpostConsumer` (the built-in ``ping``)
``/sync``   :class:`rohrpost.SyncRohrpostConsumer` (the built-in ``ping``)
``/rss``    ``GET``: the process's resident set size (``VmRSS``) and its
            peak (``VmHWM``) in bytes, from ``/proc/self/status``, and a few
            facts about the server, its rate limits among them
==========  ==============================================================

With ``BENCH_GC_FREEZE=1`` in the environment the server calls ``gc.freeze()``
once it is set up (``python -m bench.flood --gc-freeze``).
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

from bench.server_kit import configure, json_endpoint, server_facts

# Without BENCH_ROHRPOST no ROHRPOST setting: rohrpost's defaults are what is measured.
_OVERRIDE = os.environ.get("BENCH_ROHRPOST")
configure(**({"ROHRPOST": json.loads(_OVERRIDE)} if _OVERRIDE else {}))

# Channels and rohrpost read the settings on import: both come after setup().
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer, conf  # noqa: E402

__all__ = ["application", "memory_usage"]

if os.environ.get("BENCH_GC_FREEZE"):
    # What `python -m bench.flood --gc-freeze` measures: everything loaded so far moves
    # to the permanent generation, so a full collection no longer walks it.
    gc.collect()
    gc.freeze()


def memory_usage() -> dict[str, int]:
    """Return this process's ``VmRSS`` and ``VmHWM`` from ``/proc/self/status``, in bytes."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            kilobytes, unit = value.split()
            assert unit == "kB", f"unexpected unit in /proc/self/status: {line!r}"
            found[name] = int(kilobytes) * 1024
    return {"rss_bytes": found["VmRSS"], "peak_rss_bytes": found["VmHWM"]}


#: The limits the report names: a rohrpost without a byte budget has no BYTE_RATE_LIMIT.
RATE_LIMITS = ("RATE_LIMIT", "BYTE_RATE_LIMIT")


def _memory_and_facts() -> dict[str, Any]:
    # Only the settings this rohrpost knows: the benchmark also measures older versions.
    limits = {name: conf.get(name) for name in RATE_LIMITS if name in conf.DEFAULTS}
    return (
        memory_usage()
        | server_facts()
        | {"gc_frozen_objects": gc.get_freeze_count(), "rate_limits": limits}
    )


application = ProtocolTypeRouter(
    {
        "http": json_endpoint("/rss", _memory_and_facts),
        "websocket": URLRouter(
            [
                path("async", AsyncRohrpostConsumer.as_asgi()),
                path("sync", SyncRohrpostConsumer.as_asgi()),
            ]
        ),
    }
)
