"""Django system checks for rohrpost (run by ``manage.py check``, and once at start-up).

=================  ==========================================================
``rohrpost.E001``  a problem with the ``ROHRPOST`` setting: an unknown key (a
                   typo), a value of the wrong type or out of range, a token
                   hook that does not import
``rohrpost.W001``  no channel layer: ``CHANNEL_LAYERS`` has no ``"default"``,
                   so groups, subscriptions and the change feed cannot work
``rohrpost.W002``  ``"rohrpost"`` is not in ``INSTALLED_APPS``: no JavaScript
                   client as a static file, no handler autodiscovery, and
                   ``manage.py check`` runs none of these checks
``rohrpost.W003``  a channels_redis layer whose hosts leave redis-py 8's
                   5-second ``socket_timeout`` on: every connection's
                   blocking receive times out and the WebSocket is dropped
                   every 5 seconds
``rohrpost.W005``  ``SYNC_THREADS`` above 1 with an in-memory SQLite
                   database: each worker thread would open its own empty
                   database
=================  ==========================================================

ASGI servers run no system checks, so :func:`rohrpost.startup.check_once` runs
:func:`rohrpost_problems` when a process opens its first rohrpost connection
and logs what it finds.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register

from rohrpost import conf

__all__ = [
    "check_channel_layers",
    "check_settings",
    "check_sync_threads",
    "in_memory_sqlite",
    "rohrpost_problems",
]

#: redis-py from this major version on times socket reads out after 5 s by default.
REDIS_TIMEOUT_MAJOR = 8

SETTINGS_HINT = "See rohrpost.conf for every key and its meaning."


@register("rohrpost")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every problem with ``settings.ROHRPOST`` as an error ``rohrpost.E001``."""
    from django.conf import settings

    if not hasattr(settings, "ROHRPOST"):
        return []
    return [
        Error(problem, hint=SETTINGS_HINT, id="rohrpost.E001")
        for problem in conf.problems(settings.ROHRPOST)
    ]


@register("rohrpost")
def check_channel_layers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when there is no default channel layer (``W001``) or a Redis one drops (``W003``)."""
    from django.conf import settings

    layers = getattr(settings, "CHANNEL_LAYERS", None)
    if isinstance(layers, dict) and isinstance(layers.get("default"), dict):
        return _redis_timeout_problems(layers)
    return [
        Warning(
            "CHANNEL_LAYERS has no 'default' layer: joining groups, subscriptions, "
            "send_to_group and the change feed cannot work.",
            hint=(
                "For one process: CHANNEL_LAYERS = {'default': {'BACKEND': "
                "'channels.layers.InMemoryChannelLayer'}}; for several, channels_redis "
                "(pip install 'rohrpost[redis]')."
            ),
            id="rohrpost.W001",
        )
    ]


def _redis_timeout_problems(layers: dict[str, Any]) -> list[CheckMessage]:
    """Warn (``rohrpost.W003``) for channels_redis hosts that keep redis-py 8's read timeout.

    channels_redis receives with a blocking ``BZPOPMIN`` of 5 seconds; since
    redis-py 8 a socket read also gives up after 5 seconds unless the host
    sets ``socket_timeout``, so the receive fails and the consumer with it.
    """
    if _redis_major() < REDIS_TIMEOUT_MAJOR:
        return []
    problems: list[CheckMessage] = []
    for alias, layer in layers.items():
        if not isinstance(layer, dict) or "channels_redis" not in str(layer.get("BACKEND", "")):
            continue
        config = layer.get("CONFIG")
        hosts = config.get("hosts") if isinstance(config, dict) else None
        hosts = hosts if isinstance(hosts, list | tuple) else [None]  # channels_redis' default
        if any(not (isinstance(host, dict) and "socket_timeout" in host) for host in hosts):
            problems.append(
                Warning(
                    f"The channel layer {alias!r} uses channels_redis with redis-py 8 or later "
                    "and no socket_timeout: every connection is dropped after 5 seconds "
                    "without a message (Timeout reading from ...).",
                    hint=(
                        'Give each host as a dict with the timeout off: "hosts": '
                        '[{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}].'
                    ),
                    id="rohrpost.W003",
                )
            )
    return problems


def _redis_major() -> int:
    """redis-py's major version, 0 when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("redis").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return 0


@register("rohrpost")
def check_sync_threads(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn (``rohrpost.W005``) when pool threads would each see their own in-memory SQLite.

    Django opens one database connection per thread, and every connection to
    an in-memory SQLite database (``":memory:"``, or a ``mode=memory`` URI
    without ``cache=shared``) makes a new, empty database. With Channels' one
    shared thread every handler sees the same one; in a pool each thread would
    see its own. (Django's test runner turns such a database into a shared
    one, in the settings too: in tests the check stays quiet.)
    """
    from django.conf import settings

    if conf.get("SYNC_THREADS") == 1:
        return []
    return [
        Warning(
            f"ROHRPOST['SYNC_THREADS'] runs sync handlers in several threads, and the database "
            f"{alias!r} is an in-memory SQLite database: each thread opens its own, empty one.",
            hint=(
                "Use a SQLite file (or another database), or leave SYNC_THREADS at 1 "
                "(Channels' one shared thread)."
            ),
            id="rohrpost.W005",
        )
        for alias, database in settings.DATABASES.items()
        if in_memory_sqlite(database)
    ]


def in_memory_sqlite(database: Any) -> bool:
    """Tell whether a ``DATABASES`` entry makes a new SQLite database for every connection."""
    if not isinstance(database, dict) or "sqlite" not in str(database.get("ENGINE", "")):
        return False
    name = str(database.get("NAME", ""))
    return name == ":memory:" or ("mode=memory" in name and "cache=shared" not in name)


def rohrpost_problems() -> list[CheckMessage]:
    """Every problem rohrpost's checks find, ``INSTALLED_APPS`` included (for start-up)."""
    from django.apps import apps

    problems = [*check_settings(), *check_channel_layers(), *check_sync_threads()]
    if not apps.is_installed("rohrpost"):
        problems.insert(
            0,
            Warning(
                "'rohrpost' is not in INSTALLED_APPS: the JavaScript client is not served "
                "as a static file, handler modules are not autodiscovered, and "
                "manage.py check does not check rohrpost's settings.",
                hint="Add 'rohrpost' to INSTALLED_APPS.",
                id="rohrpost.W002",
            ),
        )
    return problems
