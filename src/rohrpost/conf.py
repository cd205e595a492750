"""rohrpost's settings: one ``ROHRPOST`` dict in the Django settings.

Every key is optional::

    ROHRPOST = {
        "MAX_FRAME_BYTES": 262144,          # larger frames: error `too_large`
        "MAX_DEPTH": 32,                    # deeper nesting: error `too_deep`
        "MAX_CONTAINERS": 10000,            # more arrays and objects: error `too_complex`
        "RATE_LIMIT": {"RATE": 100, "BURST": 200},  # frames per second per connection
        "BYTE_RATE_LIMIT": {"RATE": 524288, "BURST": 1048576},  # bytes per second, ditto
        "FLOOD_CLOSE_AFTER": 100,           # refused frames in one second: close 4029
        "FLOOD_COOLDOWN": 10.0,             # seconds a flood-closed address may not reconnect
        "BATCH_GROUP_MESSAGES": False,      # True: pushes share events (all consumers rohrpost's)
        "PUBLISH_WINDOW": 0.02,             # seconds between change-feed sends under load
        "MAX_IN_FLIGHT": 1,                 # handlers one connection may run at once
        "SYNC_THREADS": 1,                  # threads for sync handlers (1: Channels' shared one)
        "SEND_QUEUE_LIMIT": 1048576,        # bytes waiting for a client: over it, close 4008
        "AUTHENTICATE": None,               # token hook: "myapp.auth.user_for_token"
        "REQUIRE_AUTHENTICATION": False,    # True: anonymous clients are refused
        "HISTORY": {"ENABLED": False, "SIZE": 1000, "TTL": 300, "REDIS_URL": None},
        "METRICS": False,                   # True: Prometheus metrics (rohrpost[metrics])
    }

``"RATE_LIMIT": None`` and ``"BYTE_RATE_LIMIT": None`` turn rate limiting off. ``AUTHENTICATE`` and
``REQUIRE_AUTHENTICATION`` are explained in :mod:`rohrpost.auth`,
``MAX_IN_FLIGHT`` in :class:`rohrpost.AsyncRohrpostConsumer`, ``SEND_QUEUE_LIMIT``
in :mod:`rohrpost.outbox`, ``HISTORY`` in :mod:`rohrpost.history`, ``SYNC_THREADS``
in :mod:`rohrpost.workers`, ``METRICS`` in :mod:`rohrpost.metrics`. The values are
checked by Django's system checks (``manage.py check``) when ``"rohrpost"`` is in
``INSTALLED_APPS``, and, since ASGI servers run none, once when a process opens
its first connection (:mod:`rohrpost.startup`); :func:`problems` lists what is wrong.
"""

from __future__ import annotations

import math
from typing import Any

from rohrpost.protocol import MAX_DEPTH_BOUND

__all__ = ["DEFAULTS", "get", "options", "problems"]

DEFAULTS: dict[str, Any] = {
    "MAX_FRAME_BYTES": 256 * 1024,
    "MAX_DEPTH": 32,
    "MAX_CONTAINERS": 10_000,
    "RATE_LIMIT": {"RATE": 100.0, "BURST": 200},
    "BYTE_RATE_LIMIT": {"RATE": 512 * 1024, "BURST": 1024 * 1024},
    "FLOOD_CLOSE_AFTER": 100,
    "FLOOD_COOLDOWN": 10.0,
    "BATCH_GROUP_MESSAGES": False,
    "PUBLISH_WINDOW": 0.02,
    "MAX_IN_FLIGHT": 1,
    "SYNC_THREADS": 1,
    "SEND_QUEUE_LIMIT": 1024 * 1024,
    "AUTHENTICATE": None,
    "REQUIRE_AUTHENTICATION": False,
    "HISTORY": {"ENABLED": False, "SIZE": 1000, "TTL": 300, "REDIS_URL": None},
    "METRICS": False,
}

#: Highest ``MAX_IN_FLIGHT`` accepted: beyond it, one client could start
#: thousands of handlers.
MAX_IN_FLIGHT_BOUND = 1000

#: Highest ``SYNC_THREADS`` accepted: each thread may hold a database connection.
SYNC_THREADS_BOUND = 256

#: Highest ``MAX_CONTAINERS`` accepted: a frame under the size limit holds fewer anyway.
MAX_CONTAINERS_BOUND = 10**7

#: The range of ``SEND_QUEUE_LIMIT``: 64 KiB (a few frames) to 1 GiB.
SEND_QUEUE_LIMIT_BOUNDS = (64 * 1024, 1024**3)


def options() -> dict[str, Any]:
    """Return the ``ROHRPOST`` setting, or ``{}`` when it is missing or not a dict."""
    from django.conf import settings

    value = getattr(settings, "ROHRPOST", None)
    return value if isinstance(value, dict) else {}


def get(name: str) -> Any:
    """Return the setting ``name``, its default when unset or invalid.

    An invalid value is reported by the system checks; at run time the
    default keeps the server safe instead of crashing it.
    """
    value = options().get(name, DEFAULTS[name])
    if _problem(name, value) is not None:
        return DEFAULTS[name]
    return value


def problems(value: Any) -> list[str]:
    """Describe everything wrong with a ``ROHRPOST`` setting (empty when it is fine)."""
    if not isinstance(value, dict):
        return [f"ROHRPOST must be a dict, not {type(value).__name__}."]
    found = []
    for name in value:
        if name not in DEFAULTS:
            known = ", ".join(sorted(DEFAULTS))
            found.append(f"ROHRPOST has an unknown key {name!r}; the keys are: {known}.")
    for name in DEFAULTS:
        if name in value:
            problem = _problem(name, value[name])
            if problem is not None:
                found.append(f"ROHRPOST[{name!r}] {problem}")
    return found


def _is_number(value: Any) -> bool:
    """A finite int or float (NaN compares false with everything: it slips past ranges)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problem(name: str, value: Any) -> str | None:
    if name == "MAX_FRAME_BYTES":
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return f"must be a positive integer (bytes), not {value!r}."
    elif name == "MAX_CONTAINERS":
        if not (isinstance(value, int) and not isinstance(value, bool)) or not (
            1 <= value <= MAX_CONTAINERS_BOUND
        ):
            return f"must be an integer from 1 to {MAX_CONTAINERS_BOUND}, not {value!r}."
    elif name == "MAX_DEPTH":
        if not (isinstance(value, int) and not isinstance(value, bool)) or not (
            1 <= value <= MAX_DEPTH_BOUND
        ):
            return f"must be an integer from 1 to {MAX_DEPTH_BOUND}, not {value!r}."
    elif name in ("RATE_LIMIT", "BYTE_RATE_LIMIT"):
        if value is None:
            return None
        if (
            not isinstance(value, dict)
            or set(value) != {"RATE", "BURST"}
            or not _is_number(value["RATE"])
            or not _is_number(value["BURST"])
            or value["RATE"] <= 0
            or value["BURST"] < 1
        ):
            unit = "frames" if name == "RATE_LIMIT" else "bytes"
            return (
                f"must be None or {{'RATE': <{unit} per second, > 0>, "
                f"'BURST': <{unit}, >= 1>}}, not {value!r}."
            )
    elif name == "FLOOD_CLOSE_AFTER":
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return f"must be a positive integer (refused frames per second), not {value!r}."
    elif name == "FLOOD_COOLDOWN":
        if not (_is_number(value) and 0 <= value <= 3600):
            return f"must be a number of seconds from 0 to 3600, not {value!r}."
    elif name == "BATCH_GROUP_MESSAGES":
        if not isinstance(value, bool):
            return f"must be True or False, not {value!r}."
    elif name == "PUBLISH_WINDOW":
        if not (_is_number(value) and 0 <= value <= 10):
            return f"must be a number of seconds from 0 to 10, not {value!r}."
    elif name == "MAX_IN_FLIGHT":
        if not (isinstance(value, int) and not isinstance(value, bool)) or not (
            1 <= value <= MAX_IN_FLIGHT_BOUND
        ):
            return f"must be an integer from 1 to {MAX_IN_FLIGHT_BOUND}, not {value!r}."
    elif name == "SYNC_THREADS":
        if not (isinstance(value, int) and not isinstance(value, bool)) or not (
            1 <= value <= SYNC_THREADS_BOUND
        ):
            return f"must be an integer from 1 to {SYNC_THREADS_BOUND} (threads), not {value!r}."
    elif name == "SEND_QUEUE_LIMIT":
        if not (isinstance(value, int) and not isinstance(value, bool)) or not (
            SEND_QUEUE_LIMIT_BOUNDS[0] <= value <= SEND_QUEUE_LIMIT_BOUNDS[1]
        ):
            low, high = SEND_QUEUE_LIMIT_BOUNDS
            return f"must be an integer from {low} to {high} (bytes), not {value!r}."
    elif name == "AUTHENTICATE":
        return _hook_problem(value)
    elif name == "REQUIRE_AUTHENTICATION" and not isinstance(value, bool):
        return f"must be True or False, not {value!r}."
    elif name == "HISTORY":
        return _history_problem(value)
    elif name == "METRICS":
        return _metrics_problem(value)
    return None


#: The ranges of ``HISTORY``'s ``SIZE`` (pushes per group) and ``TTL`` (seconds, a week).
HISTORY_SIZE_BOUNDS = (1, 1_000_000)
HISTORY_TTL_BOUNDS = (1, 7 * 24 * 3600)


def _history_problem(value: Any) -> str | None:
    shape = (
        "{'ENABLED': <bool>, 'SIZE': <pushes per group>, 'TTL': <seconds>, "
        "'REDIS_URL': <url or None>}"
    )
    if not isinstance(value, dict) or not set(value) <= {"ENABLED", "SIZE", "TTL", "REDIS_URL"}:
        return f"must be a dict like {shape}, not {value!r}."
    if not isinstance(value.get("ENABLED", False), bool):
        return f"['ENABLED'] must be True or False, not {value['ENABLED']!r}."
    size, ttl = value.get("SIZE", 1), value.get("TTL", 1)
    if not (isinstance(size, int) and not isinstance(size, bool)) or not (
        HISTORY_SIZE_BOUNDS[0] <= size <= HISTORY_SIZE_BOUNDS[1]
    ):
        return f"['SIZE'] must be an integer from 1 to {HISTORY_SIZE_BOUNDS[1]}, not {size!r}."
    if not (_is_number(ttl) and HISTORY_TTL_BOUNDS[0] <= ttl <= HISTORY_TTL_BOUNDS[1]):
        return (
            f"['TTL'] must be a number of seconds from 1 to {HISTORY_TTL_BOUNDS[1]}, not {ttl!r}."
        )
    url = value.get("REDIS_URL")
    if url is not None and not (
        isinstance(url, str) and url.startswith(("redis://", "rediss://", "unix://"))
    ):
        return f"['REDIS_URL'] must be None or a redis:// URL, not {url!r}."
    return None


def _metrics_problem(value: Any) -> str | None:
    if not isinstance(value, bool):
        return f"must be True or False, not {value!r}."
    if value:
        try:
            import prometheus_client  # noqa: F401 - only whether it imports
        except ImportError:
            return (
                'is True, but prometheus_client is not installed: pip install "rohrpost[metrics]".'
            )
    return None


def _hook_problem(value: Any) -> str | None:
    from rohrpost.auth import resolve_hook

    try:
        resolve_hook(value)
    except ImportError as exc:
        return f"must name a token hook that imports: {value!r} does not ({exc})."
    except TypeError:
        return (
            "must be None, a callable authenticate(token, scope) or its dotted path, "
            f"not {value!r}."
        )
    return None
