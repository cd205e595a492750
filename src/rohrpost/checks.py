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
``rohrpost.W003``  a channels_redis ``RedisChannelLayer`` host left with
                   redis-py 8's default ``socket_timeout`` (5 s), no longer
                   than the layer's blocking receive (5 s): every idle
                   receive times out (retried by rohrpost; a message may be
                   lost, and plain Channels consumers close)
``rohrpost.W004``  the same with a ``socket_timeout`` the host sets (a dict
                   key or the URL's ``?socket_timeout=``) at or below the
                   blocking receive
``rohrpost.W005``  ``SYNC_THREADS`` above 1 with an in-memory SQLite
                   database: each worker thread would open its own empty
                   database
=================  ==========================================================

ASGI servers run no system checks, so :func:`rohrpost.startup.check_once` runs
:func:`rohrpost_problems` when a process opens its first rohrpost connection
and logs what it finds.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple, cast
from urllib.parse import parse_qs, urlsplit

from django.core.checks import CheckMessage, Error, Warning, register

from rohrpost import conf

__all__ = [
    "check_channel_layers",
    "check_settings",
    "check_sync_threads",
    "in_memory_sqlite",
    "rohrpost_problems",
]

#: Part of ``rohrpost.W004``'s hint when the timeout comes from a URL.
URL_TIMEOUT_NOTE = (
    " A ?socket_timeout= in the address URL wins over the dict's key: take it out of the URL."
)

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
    """Warn when there is no default layer (``W001``) or a Redis one drops idle sockets.

    The Redis warnings are ``W003`` and ``W004``, see :func:`_redis_timeout_problems`.
    """
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
    """Warn for channels_redis hosts whose socket timeout cuts a blocking receive short.

    ``RedisChannelLayer`` receives with a ``BZPOPMIN`` that Redis holds for
    ``brpop_timeout`` (5) seconds when nothing comes. redis-py gives up a
    socket read after the host's ``socket_timeout``, 5 seconds by default
    since redis-py 8, so at or below the blocking time every idle receive
    raises ``redis.exceptions.TimeoutError`` (channels_redis issue #422).
    rohrpost's hub retries such a receive; a message popped as the read gives
    up is lost all the same, and a plain Channels consumer closes its
    WebSocket. ``rohrpost.W003`` is redis-py's default
    doing this, ``rohrpost.W004`` a ``socket_timeout`` the host sets (as a
    dict key or in its URL's query). ``RedisPubSubChannelLayer`` reads with
    a timeout of its own per call, so its hosts are not checked.
    """
    problems: list[CheckMessage] = []
    for alias, layer in layers.items():
        blocking = _blocking_receive_timeout(layer)
        if blocking is None:
            continue
        from channels_redis.utils import decode_hosts

        config = layer.get("CONFIG")
        try:
            hosts = decode_hosts(config.get("hosts") if isinstance(config, dict) else None)
        except (TypeError, ValueError):
            continue  # channels_redis refuses these hosts itself, louder than a warning
        default: float | None = None
        defaulted: list[str] = []
        configured: list[str] = []
        from_url = False
        for index, host in enumerate(hosts):
            timeout = _socket_timeout(host)
            if timeout is None or timeout.seconds is None or timeout.seconds > blocking:
                continue
            where = f"hosts[{index}]"
            if timeout.source == "default":
                default = timeout.seconds
                defaulted.append(where)
            else:
                configured.append(f"{where} ({timeout.source}={timeout.seconds:g})")
                from_url = from_url or timeout.source == "?socket_timeout"
        fix = (
            'Give each host as a dict with the timeout off, {"address": '
            f'"redis://host:6379/0", "socket_timeout": None}}, or above {blocking:g} s.'
        )
        effect = (
            f"no longer than the {blocking:g} s the layer's receive blocks on Redis: every idle "
            "receive fails with redis.exceptions.TimeoutError. rohrpost retries its own, but a "
            "message Redis hands over just as the client gives up is lost, and Channels' own "
            "consumers close their WebSocket."
        )
        if defaulted:
            problems.append(
                Warning(
                    f"The channel layer {alias!r} leaves redis-py's default socket_timeout "
                    f"of {default:g} s on {', '.join(defaulted)}, {effect}",
                    hint=fix,
                    id="rohrpost.W003",
                )
            )
        if configured:
            problems.append(
                Warning(
                    f"The channel layer {alias!r} sets a socket_timeout on "
                    f"{', '.join(configured)}, {effect}",
                    hint=fix + (URL_TIMEOUT_NOTE if from_url else ""),
                    id="rohrpost.W004",
                )
            )
    return problems


def _blocking_receive_timeout(layer: Any) -> float | None:
    """How long the layer's receive blocks on a Redis socket, ``None`` if it is no such layer."""
    if not isinstance(layer, dict) or not isinstance(layer.get("BACKEND"), str):
        return None
    from django.utils.module_loading import import_string

    try:
        from channels_redis.core import RedisChannelLayer

        backend: Any = import_string(layer["BACKEND"])
    except ImportError:
        return None  # no channels_redis; or a backend that fails Channels itself
    if not (isinstance(backend, type) and issubclass(backend, RedisChannelLayer)):
        return None
    return float(cast("Any", backend).brpop_timeout)


class _SocketTimeout(NamedTuple):
    #: The read timeout in seconds; ``None``: reads wait as long as it takes.
    seconds: float | None
    #: ``"default"`` (redis-py's), ``"socket_timeout"`` (the host dict's) or
    #: ``"?socket_timeout"`` (the address URL's query, which wins over the dict).
    source: str


def _socket_timeout(host: dict[str, Any]) -> _SocketTimeout | None:
    """The read timeout channels_redis' connections to ``host`` get; ``None``: it cannot tell.

    The host is turned into a connection pool the way channels_redis does it
    (nothing connects), so a URL's query, the dict's keys and redis-py's
    defaults take precedence exactly as they do at run time.
    """
    from channels_redis.utils import create_pool

    try:
        pool = create_pool(host)
    except (KeyError, TypeError, ValueError):
        return None  # channels_redis fails on this host when it connects, with the cause
    kwargs = pool.connection_kwargs
    if "socket_timeout" not in kwargs:
        return _SocketTimeout(_default_socket_timeout(pool.connection_class), "default")
    query = urlsplit(str(host.get("address", ""))).query
    source = "?socket_timeout" if "socket_timeout" in parse_qs(query) else "socket_timeout"
    return _SocketTimeout(kwargs["socket_timeout"], source)


def _default_socket_timeout(connection_class: type) -> float | None:
    """The ``socket_timeout`` a redis-py connection class takes when it is not given one."""
    for cls in connection_class.__mro__:
        init = vars(cls).get("__init__")
        parameter = (
            None if init is None else inspect.signature(init).parameters.get("socket_timeout")
        )
        if parameter is not None:
            return parameter.default  # type: ignore[no-any-return]
    return None


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
