"""What the change-feed tests share: channel layers, databases and a listening channel.

A :class:`Listener` is a channel of the test's channel layer that joins groups
and reads what reaches it, as a consumer would. It knows it has read
everything when a marker it sends to itself after the pushes comes back: no
test waits for a timeout to prove that nothing came.

Sync tests listen from a :class:`LoopThread` (their own event loop in a
thread, as a server process would have); async tests on their own loop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings as django_settings

from rohrpost import publisher
from rohrpost.consumers import group_message_frames
from tests.services import POSTGRES, require_redis, require_service

T = TypeVar("T")

#: The database aliases the core tests run on ("postgres" only when PostgreSQL answers).
DATABASES = [alias for alias in ("default", "postgres") if alias in django_settings.DATABASES]

_END = "listener.end"


def redis_layers(url: str, prefix: str) -> dict[str, Any]:
    """CHANNEL_LAYERS for channels_redis on ``url``, with keys under ``prefix``."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": prefix},
        }
    }


MEMORY_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def use_layers(settings: Any, layers: dict[str, Any]) -> None:
    """Switch CHANNEL_LAYERS for this test (pytest-django's ``settings`` restores it)."""
    settings.CHANNEL_LAYERS = layers
    channel_layers.backends = {}


def release_layers() -> None:
    """Send what is still queued, close the background loop's Redis connections, forget layers.

    Channel layers keep per-event-loop state; the publisher's background loop
    lives for the whole run, so its connections are closed here, on that loop.
    """
    assert publisher.flush(timeout=10)
    background = publisher._background
    for layer in list(channel_layers.backends.values()):
        loops = getattr(layer, "_layers", None)  # channels_redis: connections per loop
        if background is not None and loops and background[1] in loops:
            asyncio.run_coroutine_threadsafe(
                loops.pop(background[1]).flush(), background[1]
            ).result(10)
    channel_layers.backends = {}


@pytest.fixture(params=["memory", "redis"])
def layer_kind(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """Run the test on the in-memory layer and on channels_redis (unique key prefix)."""
    if request.param == "redis":
        use_layers(settings, redis_layers(require_redis(), f"rohrpost-test-{uuid.uuid4().hex}"))
    else:
        use_layers(settings, MEMORY_LAYERS)
    yield request.param
    release_layers()


@pytest.fixture(params=["default", "postgres"])
def db_alias(request: pytest.FixtureRequest) -> str:
    """Run the test on SQLite and on PostgreSQL (skipped, or failed, when it is absent)."""
    if request.param == "postgres":
        require_service("PostgreSQL", str(POSTGRES["HOST"]), int(POSTGRES["PORT"]))
    return str(request.param)


class LoopThread:
    """An event loop running in its own thread, as a server process has one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-listener")
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Listener:
    """A channel that joins groups and reads the events sent to them."""

    def __init__(self) -> None:
        self.layer: Any = get_channel_layer()
        self.channel = ""
        self.events: list[dict[str, Any]] = []

    async def ajoin(self, *groups: str) -> None:
        if not self.channel:
            self.channel = await self.layer.new_channel()
        for group in groups:
            await self.layer.group_add(group, self.channel)

    async def aevents(self) -> list[dict[str, Any]]:
        """Return the events that arrived since the last call (queued pushes sent first)."""
        await publisher.aflush()
        await self.layer.send(self.channel, {"type": _END})
        events = []
        while True:
            event = await asyncio.wait_for(self.layer.receive(self.channel), 10)
            if event["type"] == _END:
                self.events.extend(events)
                return events
            events.append(event)

    async def apushes(self) -> list[dict[str, Any]]:
        """Return the decoded frames that arrived since the last call."""
        return decode(await self.aevents())


class SyncListener:
    """A :class:`Listener` for sync tests, living on a :class:`LoopThread`."""

    def __init__(self, thread: LoopThread) -> None:
        self.thread = thread
        self.listener = thread.run(_make_listener())

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.listener.events

    def join(self, *groups: str) -> SyncListener:
        """Join ``groups`` once what was published before has been sent."""
        assert publisher.flush(timeout=10)
        self.thread.run(self.listener.ajoin(*groups))
        return self

    def events_now(self) -> list[dict[str, Any]]:
        """Wait until the background loop has sent its queue; return what arrived."""
        assert publisher.flush(timeout=10)
        return self.thread.run(self.listener.aevents())

    def pushes(self) -> list[dict[str, Any]]:
        return decode(self.events_now())


async def _make_listener() -> Listener:
    return Listener()


def decode(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The frames the events carry, decoded, in order."""
    return [json.loads(text) for event in events for text in group_message_frames(event)]


@pytest.fixture
def listen() -> Iterator[Callable[..., SyncListener]]:
    """``listen(*groups)`` returns a :class:`SyncListener` that joined ``groups``."""
    thread = LoopThread()
    try:
        yield lambda *groups: SyncListener(thread).join(*groups)
    finally:
        thread.close()


def summary(pushes: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """``(kind, group, object)`` of each push, the part most tests compare."""
    return [(p["data"]["type"], p["data"]["group"], p["data"]["object"]) for p in pushes]


def push_shape_ok(push: dict[str, Any]) -> bool:
    """The push has exactly the 4.x keys, an integer id and the push type."""
    return (
        set(push) == {"id", "type", "data"}
        and type(push["id"]) is int
        and push["type"] == "subscription-update"
        and set(push["data"]) == {"type", "group", "object"}
    )


@pytest.fixture
def fresh_layers(settings: Any) -> Iterator[None]:
    """The in-memory layer, new for the test; nothing queued leaks into the next test."""
    use_layers(settings, MEMORY_LAYERS)
    yield
    release_layers()


@pytest.fixture
async def alisten() -> Any:
    """``await alisten(*groups)`` returns a :class:`Listener` on the test's loop."""

    async def make(*groups: str) -> Listener:
        await publisher.aflush()  # what was published before is not for this listener
        listener = Listener()
        await listener.ajoin(*groups)
        return listener

    yield make
    await publisher.aflush()
