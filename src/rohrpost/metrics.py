"""Prometheus metrics of a rohrpost server (``pip install "rohrpost[metrics]"``).

Off by default; ``ROHRPOST["METRICS"] = True`` turns them on (it needs
``prometheus_client``, which the ``metrics`` extra installs). They are kept in
``prometheus_client``'s default registry; route :func:`metrics_view` to let
Prometheus scrape them:

==========================================  =========  ===========================================
name                                        kind       labels
==========================================  =========  ===========================================
``rohrpost_open_connections``               gauge
``rohrpost_frames_received_total``         counter    ``type``
``rohrpost_replies_sent_total``             counter    ``type``, ``code`` (``"ok"`` for success)
``rohrpost_handler_duration_seconds``       histogram  ``type``
``rohrpost_pushes_delivered_total``         counter
``rohrpost_pushes_dropped_total``           counter    ``reason``
``rohrpost_slow_clients_closed_total``      counter
``rohrpost_channel_layer_errors_total``     counter    ``where``
``rohrpost_hub_reconnects_total``           counter
==========================================  =========  ===========================================

The ``type`` label is a request type that has a handler, :data:`UNKNOWN_TYPE`
for a type nobody handles and :data:`INVALID_FRAME` for a frame that is not a
valid request: a client cannot create label values of its own choosing.

When metrics are off, a frame costs one check of :data:`enabled` and nothing
else, and nothing is registered with ``prometheus_client``. The record
functions below are safe to call either way, from any thread.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from rohrpost import conf

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse
    from prometheus_client.metrics import Counter, Histogram

__all__ = [
    "INVALID_FRAME",
    "OK",
    "UNKNOWN_TYPE",
    "RequestMetrics",
    "configure",
    "connection_closed",
    "connection_opened",
    "enabled",
    "hub_reconnected",
    "layer_error",
    "metrics_view",
    "push_dropped",
    "pushes_delivered",
    "received",
    "rejected",
    "replied",
    "slow_client_closed",
]

#: The ``type`` label of a request whose type has no handler.
UNKNOWN_TYPE = "(unknown)"
#: The ``type`` label of a frame that is not a valid request (its ``code`` says why).
INVALID_FRAME = "(invalid)"
#: The ``code`` label of a successful reply.
OK = "ok"

#: Upper bounds of the handler-duration buckets, in seconds: from a fraction of
#: a millisecond (``ping``, a cached read) to the ten seconds of a stuck call.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: ``False`` once rohrpost knows that metrics are off: the one check a frame
#: makes. ``True`` while they are on, and until the first record call (or
#: :func:`configure`) has read the setting.
enabled = True

_decided = False
_lock = threading.Lock()


class _Instruments:
    """rohrpost's metrics, registered once per process in the default registry."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.open_connections = Gauge(
            "rohrpost_open_connections",
            "WebSocket connections accepted by a rohrpost consumer and not yet closed.",
            multiprocess_mode="livesum",
        )
        self.frames = Counter(
            "rohrpost_frames_received",
            "Frames received from clients and parsed, by request type.",
            ["type"],
        )
        self.replies = Counter(
            "rohrpost_replies_sent",
            "Replies sent to requests, by request type and error code ('ok': success).",
            ["type", "code"],
        )
        self.durations = Histogram(
            "rohrpost_handler_duration_seconds",
            "Time from a handler's call to its encoded reply, by request type.",
            ["type"],
            buckets=DURATION_BUCKETS,
        )
        self.pushes_delivered = Counter(
            "rohrpost_pushes_delivered",
            "Pushes (group messages) handed to a client connection to send.",
        )
        self.pushes_dropped = Counter(
            "rohrpost_pushes_dropped",
            "Pushes that did not reach a client connection, by reason.",
            ["reason"],
        )
        self.slow_clients_closed = Counter(
            "rohrpost_slow_clients_closed",
            "Connections closed because the client fell too far behind in reading.",
        )
        self.layer_errors = Counter(
            "rohrpost_channel_layer_errors",
            "Errors from the channel layer, by where rohrpost met them.",
            ["where"],
        )
        self.hub_reconnects = Counter(
            "rohrpost_hub_reconnects",
            "Times the process's delivery hub reconnected to the channel layer.",
        )
        # One entry per request type: `labels()` takes a lock and builds a key on each call.
        self._types: dict[str, RequestMetrics] = {}

    def of_type(self, request_type: str) -> RequestMetrics:
        series = self._types.get(request_type)
        if series is None:
            series = self._types[request_type] = RequestMetrics(self, request_type)
        return series


class RequestMetrics:
    """The series of one request type, found once per frame: what a measured call records into.

    Attributes:
        received: The type's ``rohrpost_frames_received_total`` child.
    """

    __slots__ = ("_by_code", "_duration", "_replies", "_type", "received")

    def __init__(self, instruments: _Instruments, request_type: str) -> None:
        self.received: Counter = instruments.frames.labels(request_type)
        self._duration: Histogram = instruments.durations.labels(request_type)
        self._replies = instruments.replies
        self._type = request_type
        self._by_code: dict[str, Counter] = {}

    def handled(self, seconds: float, code: str | None) -> None:
        """Record a handler's run: its duration and, unless ``code`` is ``None``, its reply."""
        self._duration.observe(seconds)
        if code is not None:
            self.replied(code)

    def replied(self, code: str) -> None:
        """Count a reply with ``code`` (:data:`OK` or the error code)."""
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._replies.labels(self._type, code)
        child.inc()


_instruments: _Instruments | None = None


def configure() -> bool:
    """Read ``ROHRPOST["METRICS"]`` and start or stop recording; return whether metrics are on.

    Called by the first record call of a process, by :func:`metrics_view` and
    by the ``rohrpost`` app when Django starts. Call it again after changing
    the setting (in a test). Turning metrics off keeps what is registered:
    ``prometheus_client`` cannot take a metric back out of its default
    registry in every mode, and values already scraped must not vanish.
    """
    global enabled, _decided, _instruments
    with _lock:
        on = bool(conf.get("METRICS"))
        if on and _instruments is None:
            _instruments = _Instruments()
        enabled = on
        _decided = True
    return on


def _recorder() -> _Instruments | None:
    """The instruments to record with, or ``None`` when metrics are off."""
    if not _decided:
        configure()
    return _instruments if enabled else None


def connection_opened() -> None:
    """Count a connection as open (a rohrpost consumer accepted it)."""
    if enabled and (recorder := _recorder()):
        recorder.open_connections.inc()


def connection_closed() -> None:
    """Count an open connection as closed."""
    if enabled and (recorder := _recorder()):
        recorder.open_connections.dec()


def received(request_type: str) -> RequestMetrics | None:
    """Count a valid request whose type has a handler; return its type's series.

    Returns:
        What to record the handler's run into, or ``None`` when metrics are off.
    """
    if enabled and (recorder := _recorder()):
        series = recorder.of_type(request_type)
        series.received.inc()
        return series
    return None


def rejected(label: str, code: str) -> None:
    """Count a frame answered with an error before any handler ran, and that answer.

    Args:
        label: :data:`INVALID_FRAME` or :data:`UNKNOWN_TYPE`.
        code: The error code answered.
    """
    if enabled and (recorder := _recorder()):
        series = recorder.of_type(label)
        series.received.inc()
        series.replied(code)


def replied(request_type: str, code: str) -> None:
    """Count a reply sent to a request of ``request_type`` (``code``: :data:`OK` or the error)."""
    if enabled and (recorder := _recorder()):
        recorder.of_type(request_type).replied(code)


def pushes_delivered(count: int) -> None:
    """Count ``count`` pushes handed to client connections to send."""
    if enabled and (recorder := _recorder()):
        recorder.pushes_delivered.inc(count)


def push_dropped(reason: str) -> None:
    """Count a push that did not reach its connection.

    Args:
        reason: A word from a small fixed set (it becomes a label value),
            such as ``"queue_full"`` or ``"closed"``.
    """
    if enabled and (recorder := _recorder()):
        recorder.pushes_dropped.labels(reason).inc()


def slow_client_closed() -> None:
    """Count a connection closed because its client fell too far behind."""
    if enabled and (recorder := _recorder()):
        recorder.slow_clients_closed.inc()


def layer_error(where: str) -> None:
    """Count an error from the channel layer.

    Args:
        where: What rohrpost was doing, from a small fixed set (a label
            value), such as ``"receive"``, ``"group_add"`` or ``"group_send"``.
    """
    if enabled and (recorder := _recorder()):
        recorder.layer_errors.labels(where).inc()


def hub_reconnected() -> None:
    """Count a reconnection of the process's delivery hub to the channel layer."""
    if enabled and (recorder := _recorder()):
        recorder.hub_reconnects.inc()


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve every metric of the process in Prometheus' text format (a Django view).

    Route it on a path that only Prometheus reaches (see the deployment
    guide); it answers in OpenMetrics when the scraper asks for it. In
    ``prometheus_client``'s multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
    set) it serves the sum over every process instead of this process's own.

    Raises:
        ImproperlyConfigured: ``prometheus_client`` is not installed.
    """
    from django.core.exceptions import ImproperlyConfigured
    from django.http import HttpResponse

    try:
        from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
        from prometheus_client.exposition import choose_encoder
    except ImportError as exc:
        raise ImproperlyConfigured(
            'rohrpost.metrics.metrics_view needs prometheus_client: pip install "rohrpost[metrics]"'
        ) from exc
    configure()  # rohrpost's metrics show (at zero) before the first connection
    registry: Any = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # prometheus_client's way: a fresh registry reading every process's files.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry), content_type=content_type)
