"""Recent pushes per group, so that a client that was away gets what it missed.

With ``ROHRPOST["HISTORY"] = {"ENABLED": True}``, a subscription kind
declared with ``history=True``
(:meth:`rohrpost.subscriptions.Subscriptions.declare`) has its groups
*tracked*: every push to a tracked group gets a **position**, an ``offset``
that grows by one per push within an ``epoch`` (a random id for the life of
that group's history), and is kept in a capped log. A client that
subscribes again with the position it last saw gets exactly the pushes after
it, or is told to reset when they are gone (the epoch changed because Redis
restarted empty or the history expired, or the position is older than what
is kept). Nothing pretends to have recovered.

Two stores, chosen by :func:`store`:

- :class:`RedisHistory`, when the default channel layer is one of
  channels_redis's (or ``ROHRPOST["HISTORY"]["REDIS_URL"]`` is set): a Redis
  Stream per group, capped at ``SIZE`` entries, and a small hash with its
  epoch and last offset; one Lua script appends and assigns the offsets in
  one atomic step, so every process agrees on them. Both keys expire
  ``TTL`` seconds after the group's last push or subscription.
- :class:`MemoryHistory` otherwise: a ring per group in this process (the
  in-memory channel layer serves one process anyway).

Positions travel on the wire as a ``position`` field, spliced into the
frame's text (:func:`positioned`): ``{"id", "type", "data", "position":
{"group", "epoch", "offset"}}``. Clients that do not know the field ignore
it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rohrpost import conf, encoding

logger = logging.getLogger("rohrpost")

__all__ = [
    "DEFAULT_SIZE",
    "DEFAULT_TTL",
    "HistoryStore",
    "MemoryHistory",
    "Position",
    "RedisHistory",
    "Replay",
    "arecord",
    "arecord_many",
    "enabled",
    "positioned",
    "store",
]

#: Pushes kept per group, and seconds a group's history outlives its last push.
DEFAULT_SIZE: Final = 1000
DEFAULT_TTL: Final = 300


@dataclass(frozen=True, slots=True)
class Position:
    """Where a group's stream of pushes stands: ``offset`` pushes into ``epoch``."""

    epoch: str
    offset: int

    def wire(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset}

    @classmethod
    def from_wire(cls, value: Any) -> Position | None:
        """Read a client's ``since``; ``None`` when it is not a position."""
        if not isinstance(value, dict):
            return None
        epoch, offset = value.get("epoch"), value.get("offset")
        if not isinstance(epoch, str) or not 0 < len(epoch) <= 64:
            return None
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            return None
        return cls(epoch, offset)


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resume gets: the frames after the client's position, and the position now."""

    frames: list[str]
    position: Position


def positioned(group: str, text: str, epoch: str, offset: int) -> str:
    """Return the frame ``text`` with its ``position`` field (unchanged if not an object)."""
    body = text.rstrip()
    if not (body.startswith("{") and body.endswith("}")) or body == "{}":
        return text
    position = encoding.dumps({"group": group, "epoch": epoch, "offset": offset})
    return f'{body[:-1]},"position":{position}}}'


class HistoryStore:
    """Where the positions and the recent pushes of tracked groups are kept."""

    size: int
    ttl: float

    async def aopen(self, group: str) -> Position:
        """Track ``group`` (a new epoch when it has none); return its position now."""
        raise NotImplementedError  # pragma: no cover - each store defines it

    async def aappend(self, group: str, texts: Sequence[str]) -> tuple[list[str], Position] | None:
        """Record pushes to ``group``: their positioned frames and the first one's position.

        ``None`` when the group is not tracked (nobody subscribed with history).
        """
        raise NotImplementedError  # pragma: no cover - each store defines it

    async def areplay(self, group: str, since: Position) -> Replay | None:
        """The pushes after ``since``, in order; ``None`` when the client must reset."""
        raise NotImplementedError  # pragma: no cover - each store defines it

    async def aappend_many(
        self, texts: Mapping[str, Sequence[str]]
    ) -> dict[str, tuple[list[str], Position]]:
        """:meth:`aappend` for several groups at once; the tracked ones are in the result."""
        recorded = {}
        for group, group_texts in texts.items():
            found = await self.aappend(group, group_texts)
            if found is not None:
                recorded[group] = found
        return recorded


class _Ring:
    __slots__ = ("entries", "epoch", "offset", "touched")

    def __init__(self, size: int, now: float) -> None:
        self.epoch = uuid.uuid4().hex[:16]
        self.offset = 0
        self.entries: deque[tuple[int, str]] = deque(maxlen=size)
        self.touched = now


class MemoryHistory(HistoryStore):
    """History in this process: a ring of the last ``size`` pushes per tracked group."""

    def __init__(self, size: int = DEFAULT_SIZE, ttl: float = DEFAULT_TTL) -> None:
        self.size = size
        self.ttl = ttl
        self._rings: dict[str, _Ring] = {}
        # Publishers run on other threads' loops (rohrpost.publisher): one lock for all.
        self._lock = threading.Lock()

    def _ring(self, group: str, *, create: bool) -> _Ring | None:
        now = time.monotonic()
        ring = self._rings.get(group)
        if ring is not None and now - ring.touched > self.ttl:
            del self._rings[group]  # expired: a new epoch if tracked again
            ring = None
        if ring is None and create:
            ring = self._rings[group] = _Ring(self.size, now)
        if ring is not None:
            ring.touched = now
        return ring

    async def aopen(self, group: str) -> Position:
        with self._lock:
            ring = self._ring(group, create=True)
            assert ring is not None
            return Position(ring.epoch, ring.offset)

    async def aappend(self, group: str, texts: Sequence[str]) -> tuple[list[str], Position] | None:
        with self._lock:
            ring = self._ring(group, create=False)
            if ring is None:
                return None
            first = ring.offset + 1
            frames = []
            for text in texts:
                ring.offset += 1
                frame = positioned(group, text, ring.epoch, ring.offset)
                ring.entries.append((ring.offset, frame))
                frames.append(frame)
            return frames, Position(ring.epoch, first)

    async def areplay(self, group: str, since: Position) -> Replay | None:
        with self._lock:
            ring = self._ring(group, create=False)
            if ring is None or ring.epoch != since.epoch or since.offset > ring.offset:
                return None
            position = Position(ring.epoch, ring.offset)
            missed = ring.offset - since.offset
            if missed == 0:
                return Replay([], position)
            if missed > len(ring.entries):
                return None  # some are gone: the ring is shorter than the gap
            return Replay([frame for _, frame in list(ring.entries)[-missed:]], position)


# KEYS: meta hash, stream. ARGV: new epoch, ttl.
_OPEN = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {epoch, redis.call('HGET', KEYS[1], 'offset')}
"""

# KEYS: meta hash, stream. ARGV: size, ttl, texts... Returns {epoch, first offset} or false.
_APPEND = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return false end
local count = #ARGV - 2
local last = redis.call('HINCRBY', KEYS[1], 'offset', count)
for i = 1, count do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], (last - count + i) .. '-1', 'd', ARGV[i + 2])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {epoch, last - count + 1}
"""

_APPEND_SHA1 = hashlib.sha1(_APPEND.encode(), usedforsecurity=False).hexdigest()

# KEYS: meta hash, stream. ARGV: epoch, since offset. Returns {epoch, top, texts...} or false.
_REPLAY = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch or epoch ~= ARGV[1] then return false end
local top = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local since = tonumber(ARGV[2])
if since > top then return false end
local result = {epoch, top}
if since == top then return result end
local entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-1', '+')
if #entries ~= top - since then return false end
for i, entry in ipairs(entries) do result[i + 2] = entry[2][2] end
return result
"""


class RedisHistory(HistoryStore):
    """History in Redis, shared by every process: a capped Stream per tracked group.

    Args:
        url: The Redis server's URL.
        size: Most pushes kept per group (``XADD MAXLEN ~``: Redis may keep a few more).
        ttl: Seconds a group's history lives after its last push or subscription.
        prefix: Prefix of the keys.
    """

    def __init__(
        self,
        url: str,
        size: int = DEFAULT_SIZE,
        ttl: float = DEFAULT_TTL,
        prefix: str = "rohrpost:history",
    ) -> None:
        self.url = url
        self.size = size
        self.ttl = ttl
        self.prefix = prefix
        # redis-py's asyncio clients belong to one event loop each.
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}

    def _client(self) -> Any:
        import redis.asyncio
        import redis.exceptions
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            for stale in [known for known in self._clients if known.is_closed()]:
                del self._clients[stale]
            # A connection that Redis closed (a restart) is replaced and the
            # call tried again, instead of failing the subscribe that made it.
            client = self._clients[loop] = redis.asyncio.Redis.from_url(
                self.url,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.01), 3),
                retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
            )
        return client

    def _keys(self, group: str) -> list[str]:
        return [f"{self.prefix}:meta:{group}", f"{self.prefix}:stream:{group}"]

    async def aopen(self, group: str) -> Position:
        epoch, offset = await self._client().eval(
            _OPEN, 2, *self._keys(group), uuid.uuid4().hex[:16], int(self.ttl)
        )
        return Position(epoch.decode(), int(offset))

    async def aappend(self, group: str, texts: Sequence[str]) -> tuple[list[str], Position] | None:
        return (await self.aappend_many({group: texts})).get(group)

    async def aappend_many(
        self, texts: Mapping[str, Sequence[str]]
    ) -> dict[str, tuple[list[str], Position]]:
        import redis.exceptions

        groups = [group for group, group_texts in texts.items() if group_texts]
        client = self._client()

        async def append() -> list[Any]:
            # One round trip for every group, the script called by its digest
            # (one group, the most common batch, without a pipeline's cost).
            if len(groups) == 1:
                keys = self._keys(groups[0])
                args = (self.size, int(self.ttl), *texts[groups[0]])
                return [await client.evalsha(_APPEND_SHA1, 2, *keys, *args)]
            pipe = client.pipeline(transaction=False)
            for group in groups:
                keys = self._keys(group)
                pipe.evalsha(_APPEND_SHA1, 2, *keys, self.size, int(self.ttl), *texts[group])
            found: list[Any] = await pipe.execute()
            return found

        try:
            results = await append()
        except redis.exceptions.NoScriptError:  # a server that never saw it: no call ran
            await client.script_load(_APPEND)
            results = await append()
        recorded = {}
        for group, found in zip(groups, results, strict=True):
            if found:
                epoch, first = found[0].decode(), int(found[1])
                frames = [
                    positioned(group, text, epoch, first + i) for i, text in enumerate(texts[group])
                ]
                recorded[group] = (frames, Position(epoch, first))
        return recorded

    async def areplay(self, group: str, since: Position) -> Replay | None:
        found = await self._client().eval(_REPLAY, 2, *self._keys(group), since.epoch, since.offset)
        if not found:
            return None
        epoch, top = found[0].decode(), int(found[1])
        frames = [
            positioned(group, text.decode(), epoch, since.offset + 1 + i)
            for i, text in enumerate(found[2:])
        ]
        return Replay(frames, Position(epoch, top))

    async def aclose(self) -> None:
        """Close this loop's connection to Redis."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


async def arecord(group: str, texts: list[str]) -> tuple[list[str], Position | None]:
    """``texts`` positioned when ``group`` is tracked, and the first one's position (publishers).

    Costs nothing while ``ROHRPOST["HISTORY"]["ENABLED"]`` is off. A store that
    fails is logged; the pushes then go out without a position (a client
    resuming past them is told to reset only if the gap shows).
    """
    if not texts or not enabled():  # the common case, on every send_to_group: no dicts
        return texts, None
    return (await arecord_many({group: texts}))[group]


async def arecord_many(
    texts: Mapping[str, list[str]],
) -> dict[str, tuple[list[str], Position | None]]:
    """:func:`arecord` for several groups, in one round trip to a Redis store."""
    unrecorded: dict[str, tuple[list[str], Position | None]] = {
        group: (group_texts, None) for group, group_texts in texts.items()
    }
    if not enabled() or not any(texts.values()):
        return unrecorded
    try:
        recorded = await store().aappend_many(texts)
    except Exception:
        count = sum(len(group_texts) for group_texts in texts.values())
        where = repr(next(iter(texts))) if len(texts) == 1 else f"{len(texts)} groups"
        logger.exception("Recording %d pushes to %s in the history failed", count, where)
        return unrecorded
    return {**unrecorded, **recorded}


_store: HistoryStore | None = None
_store_lock = threading.Lock()


def enabled() -> bool:
    """Whether history is on (``ROHRPOST["HISTORY"]["ENABLED"]``): then every publisher records.

    A setting, not something the subscription kinds switch on as they are
    declared: a process that publishes (a management command, a task worker)
    may never import them, and a push it sent unrecorded would be missed by
    a resuming client without a reset.
    """
    return bool(conf.get("HISTORY").get("ENABLED", False))


def store() -> HistoryStore:
    """The history store of this process, made from the settings on first use."""
    global _store
    with _store_lock:
        if _store is None:
            _store = _from_settings()
        return _store


def reset_store() -> None:
    """Forget the store (tests change the settings)."""
    global _store
    _store = None


def _from_settings() -> HistoryStore:
    options = conf.get("HISTORY")
    size, ttl = options.get("SIZE", DEFAULT_SIZE), options.get("TTL", DEFAULT_TTL)
    url = options.get("REDIS_URL") or _layer_redis_url()
    if url:
        return RedisHistory(url, size, ttl)
    return MemoryHistory(size, ttl)


def _layer_redis_url() -> str | None:
    """The first Redis of the default channel layer, when it is one of channels_redis's."""
    from django.conf import settings

    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    if not str(layer.get("BACKEND", "")).startswith("channels_redis."):
        return None
    hosts = layer.get("CONFIG", {}).get("hosts") or ["redis://localhost:6379"]
    host = hosts[0]
    if isinstance(host, str):
        return host
    if isinstance(host, dict) and isinstance(host.get("address"), str):
        return str(host["address"])
    if isinstance(host, list | tuple) and len(host) == 2:
        return f"redis://{host[0]}:{host[1]}"
    return None
