"""Per-connection admission of frames: token-bucket rate limits and flood detection.

Each connection may send ``RATE`` frames per second on average and ``BURST``
frames at once (``ROHRPOST["RATE_LIMIT"]``), and ``RATE`` bytes per second
on average and ``BURST`` bytes at once (``ROHRPOST["BYTE_RATE_LIMIT"]``): the
work a frame costs the server grows with its size, so a client sending few but
large, dense frames is held to a bounded share of the event loop too. A frame
over either limit is not decoded: it is answered with the error ``rate_limited``. A client that goes
on flooding, more than ``ROHRPOST["FLOOD_CLOSE_AFTER"]`` refused frames within
one second, is disconnected with close code :data:`CLOSE_FLOODING` (4029).

A flooder that reconnects would get a fresh burst each time, so for
``ROHRPOST["FLOOD_COOLDOWN"]`` seconds after such a close the server refuses
new connections from the same client address (:class:`FloodCooldown`): the
WebSocket handshake is answered with HTTP 403 before any consumer work.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Literal

from rohrpost import conf, protocol

__all__ = ["CLOSE_FLOODING", "COOLDOWN", "FloodCooldown", "FrameGate", "TokenBucket"]

#: Close code for a connection that kept flooding past the rate limit.
CLOSE_FLOODING: Final = 4029

Admission = Literal["admit", "refuse", "close", "drop"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; a frame takes one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1) -> bool:
        """Take ``cost`` tokens if they are there."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= cost:
            self.tokens = tokens - cost
            return True
        self.tokens = tokens
        return False


class FrameGate:
    """Decides, frame by frame, whether a connection's frame is handled."""

    __slots__ = (
        "bucket",
        "byte_bucket",
        "clock",
        "closed",
        "flood_close_after",
        "max_cost",
        "refused",
        "window_start",
    )

    #: The error reply to a refused frame (always the same text: built once).
    refusal: Final = protocol.encode_error(
        None, None, "Too many requests: slow down.", protocol.RATE_LIMITED
    )

    def __init__(
        self,
        rate_limit: dict[str, Any] | None,
        flood_close_after: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        byte_rate_limit: dict[str, Any] | None = None,
        max_frame_bytes: int = 0,
    ) -> None:
        self.clock = clock
        now = clock()
        self.bucket = (
            None
            if rate_limit is None
            else TokenBucket(float(rate_limit["RATE"]), float(rate_limit["BURST"]), now)
        )
        # A frame over the size limit is refused by its length alone: it costs
        # no more than the largest frame that is decoded.
        self.max_cost = max_frame_bytes or None
        # A burst below the largest frame would refuse such frames forever.
        self.byte_bucket = (
            None
            if byte_rate_limit is None
            else TokenBucket(
                float(byte_rate_limit["RATE"]),
                float(max(byte_rate_limit["BURST"], max_frame_bytes)),
                now,
            )
        )
        self.flood_close_after = flood_close_after
        self.closed = False
        self.refused = 0
        self.window_start = now

    @classmethod
    def from_settings(cls) -> FrameGate:
        """A gate configured by ``ROHRPOST["RATE_LIMIT"]``, ``["BYTE_RATE_LIMIT"]``
        and ``["FLOOD_CLOSE_AFTER"]``.
        """
        return cls(
            conf.get("RATE_LIMIT"),
            conf.get("FLOOD_CLOSE_AFTER"),
            byte_rate_limit=conf.get("BYTE_RATE_LIMIT"),
            max_frame_bytes=conf.get("MAX_FRAME_BYTES"),
        )

    def admit(self, size: int = 0) -> Admission:
        """Return ``"admit"``, ``"refuse"`` (answer ``rate_limited``), ``"close"``
        (answer, then close 4029) or ``"drop"`` (closed already: no answer at all).

        Args:
            size: The frame's length (characters of a text frame, bytes of a
                binary one), taken from the byte budget; at most
                ``max_frame_bytes`` (a larger frame is refused by its length).
        """
        bucket, byte_bucket = self.bucket, self.byte_bucket
        if bucket is None and byte_bucket is None:
            return "admit"
        if self.closed:
            # Frames that arrived before the close took effect get nothing.
            return "drop"
        now = self.clock()
        if self.max_cost is not None and size > self.max_cost:
            size = self.max_cost
        if (bucket is None or bucket.take(now)) and (
            byte_bucket is None or byte_bucket.take(now, size)
        ):
            return "admit"
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.refused = 0
        self.refused += 1
        if self.refused > self.flood_close_after:
            self.closed = True
            return "close"
        return "refuse"


class FloodCooldown:
    """The client addresses whose connection was closed for flooding, and when.

    One per process (:data:`COOLDOWN`). The address is the ASGI scope's
    ``client`` host: behind a reverse proxy, run the server with its proxy
    headers option (``uvicorn --proxy-headers``, ``daphne --proxy-headers``)
    so that it is the client's own address, not the proxy's. At most
    ``max_entries`` addresses are remembered; the oldest go first.
    """

    __slots__ = ("clock", "closed_at", "max_entries")

    def __init__(
        self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.closed_at: OrderedDict[str, float] = OrderedDict()

    def record(self, scope: Any) -> None:
        """Remember that the connection of ``scope`` was closed for flooding."""
        address = _client_address(scope)
        if address is None:
            return
        self.closed_at[address] = self.clock()
        self.closed_at.move_to_end(address)
        while len(self.closed_at) > self.max_entries:
            self.closed_at.popitem(last=False)

    def refuses(self, scope: Any, seconds: float) -> bool:
        """Whether a new connection from the client of ``scope`` is refused for now."""
        if not self.closed_at:
            return False
        address = _client_address(scope)
        closed_at = self.closed_at.get(address) if address is not None else None
        if closed_at is None:
            return False
        if self.clock() - closed_at < seconds:
            return True
        del self.closed_at[address]  # type: ignore[arg-type]
        return False


def _client_address(scope: Any) -> str | None:
    client = scope.get("client")
    if isinstance(client, list | tuple) and client and isinstance(client[0], str):
        return client[0]
    return None


#: The process's record of flood-closed client addresses.
COOLDOWN = FloodCooldown()
