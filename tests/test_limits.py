"""Tests for rohrpost.limits and the consumers' use of it: rate limit and flood close (4029).

The token bucket and the gate are driven by an injected clock; the consumers
are driven through ``WebsocketCommunicator``, with settings made tight enough
that real time (a test takes milliseconds, a token takes a second) never refills.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from rohrpost.consumers import AsyncRohrpostConsumer, SyncRohrpostConsumer
from rohrpost.limits import CLOSE_FLOODING, COOLDOWN, FloodCooldown, FrameGate, TokenBucket
from rohrpost.protocol import Limits
from rohrpost.registry import HandlerRegistry
from tests.communicators import connect

REFUSAL = {"error": "Too many requests: slow down.", "code": "rate_limited"}
#: What the consumer tests configure: 3 frames at once, 1 more per second, close on the 3rd refusal.
TIGHT = {"RATE_LIMIT": {"RATE": 1, "BURST": 3}, "FLOOD_CLOSE_AFTER": 2}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- TokenBucket -----------------------------------------------------------------------


def test_bucket_starts_full_and_refuses_once_empty() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.tokens == 0


def test_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.take(0.0)
    assert not bucket.take(0.05)  # half a token
    assert bucket.tokens == pytest.approx(0.5)
    assert bucket.take(0.1)  # one whole token: taken
    assert bucket.tokens == pytest.approx(0.0)
    assert not bucket.take(0.1)
    assert bucket.take(0.2)
    assert not bucket.take(0.2)


def test_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert bucket.take(0.0)
    assert bucket.take(3600.0)  # an hour idle: back to 3 tokens, not 36000
    assert bucket.tokens == 2
    assert [bucket.take(3600.0) for _ in range(3)] == [True, True, False]


def test_a_refused_take_keeps_the_fraction_earned() -> None:
    bucket = TokenBucket(rate=4, burst=1, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.125)  # half a token
    assert not bucket.take(0.2)  # 0.8 token
    assert bucket.take(0.25)  # 1 token, earned across two refusals


def test_fractional_rate_and_burst() -> None:
    bucket = TokenBucket(rate=0.5, burst=1.5, now=0.0)
    assert bucket.take(0.0)
    assert not bucket.take(0.0)  # half a token left
    assert bucket.take(1.0)  # 0.5 + 0.5
    assert not bucket.take(1.0)


# --- FrameGate -------------------------------------------------------------------------


def test_refusal_is_the_exact_rate_limited_frame() -> None:
    assert json.loads(FrameGate.refusal) == REFUSAL
    assert list(json.loads(FrameGate.refusal)) == ["error", "code"]


def test_without_a_rate_limit_every_frame_is_admitted() -> None:
    clock = Clock()
    gate = FrameGate(None, flood_close_after=1, clock=clock)
    assert gate.bucket is None
    assert {gate.admit() for _ in range(10_000)} == {"admit"}


def test_the_gate_admits_the_burst_then_refuses() -> None:
    clock = Clock()
    gate = FrameGate({"RATE": 1, "BURST": 3}, flood_close_after=5, clock=clock)
    assert [gate.admit() for _ in range(5)] == ["admit"] * 3 + ["refuse"] * 2


def test_the_gate_closes_after_more_than_flood_close_after_refusals() -> None:
    clock = Clock()
    gate = FrameGate({"RATE": 1, "BURST": 1}, flood_close_after=2, clock=clock)
    assert [gate.admit() for _ in range(5)] == ["admit", "refuse", "refuse", "close", "drop"]


def test_refusals_spread_over_more_than_a_second_do_not_close() -> None:
    clock = Clock()
    gate = FrameGate({"RATE": 0.001, "BURST": 1}, flood_close_after=2, clock=clock)
    assert gate.admit() == "admit"
    assert [gate.admit(), gate.admit()] == ["refuse", "refuse"]
    clock.now += 0.999
    assert gate.admit() == "close"  # still within the first second: 3 refusals


def test_the_refusal_count_starts_over_a_second_after_the_window_began() -> None:
    clock = Clock()
    gate = FrameGate({"RATE": 0.001, "BURST": 1}, flood_close_after=2, clock=clock)
    assert gate.admit() == "admit"
    clock.now += 5.0  # the first refusal opens a fresh window
    assert [gate.admit(), gate.admit()] == ["refuse", "refuse"]
    clock.now += 1.0  # exactly a second later: a new window
    assert [gate.admit(), gate.admit()] == ["refuse", "refuse"]
    assert gate.admit() == "close"


def test_a_new_window_counts_from_the_first_refusal_in_it() -> None:
    clock = Clock()
    gate = FrameGate({"RATE": 0.001, "BURST": 1}, flood_close_after=1, clock=clock)
    assert gate.admit() == "admit"
    assert gate.admit() == "refuse"
    clock.now += 1.5
    assert gate.admit() == "refuse"  # window reset at +1.5
    clock.now += 0.9
    assert gate.admit() == "close"  # +2.4: still the window that began at +1.5


def test_a_refilled_token_is_admitted_between_refusals() -> None:
    clock = Clock()
    gate = FrameGate({"RATE": 10, "BURST": 1}, flood_close_after=100, clock=clock)
    assert [gate.admit(), gate.admit()] == ["admit", "refuse"]
    clock.now += 0.1
    assert [gate.admit(), gate.admit()] == ["admit", "refuse"]
    assert gate.refused == 2


def test_the_byte_budget_refuses_large_frames_past_its_burst_then_refills() -> None:
    clock = Clock()
    gate = FrameGate(
        None, flood_close_after=100, clock=clock, byte_rate_limit={"RATE": 1000, "BURST": 3000}
    )
    assert [gate.admit(1000) for _ in range(4)] == ["admit"] * 3 + ["refuse"]
    assert gate.admit(0) == "admit"  # an empty frame costs nothing
    clock.now += 0.5
    assert [gate.admit(400), gate.admit(400)] == ["admit", "refuse"]


def test_a_frame_must_pass_both_budgets() -> None:
    clock = Clock()
    gate = FrameGate(
        {"RATE": 1, "BURST": 2},
        flood_close_after=100,
        clock=clock,
        byte_rate_limit={"RATE": 1, "BURST": 100},
    )
    assert gate.admit(100) == "admit"
    assert gate.admit(1) == "refuse"  # a frame token left, no byte budget
    clock.now += 1.0
    assert gate.admit(1) == "admit"  # one byte back, the second frame token
    assert gate.admit(0) == "refuse"  # no frame token


def test_byte_refusals_count_towards_the_flood_close() -> None:
    clock = Clock()
    gate = FrameGate(
        None, flood_close_after=2, clock=clock, byte_rate_limit={"RATE": 1, "BURST": 10}
    )
    assert [gate.admit(10), gate.admit(5), gate.admit(5), gate.admit(5), gate.admit(5)] == [
        "admit",
        "refuse",
        "refuse",
        "close",
        "drop",
    ]


def test_the_byte_burst_is_never_below_the_largest_frame() -> None:
    """A burst smaller than MAX_FRAME_BYTES would refuse the largest frames for ever."""
    gate = FrameGate(None, 1, byte_rate_limit={"RATE": 10, "BURST": 100}, max_frame_bytes=5000)
    assert gate.byte_bucket is not None
    assert gate.byte_bucket.burst == 5000.0
    assert gate.admit(5000) == "admit"


def test_a_frame_over_the_size_limit_costs_only_the_size_limit() -> None:
    """It is refused by its length (``too_large``), not by the byte budget."""
    gate = FrameGate(None, 1, byte_rate_limit={"RATE": 1, "BURST": 100}, max_frame_bytes=100)
    assert gate.admit(2_000_000) == "admit"
    assert gate.admit(1) == "refuse"


def test_the_gate_uses_the_monotonic_clock_by_default() -> None:
    import time

    assert FrameGate(None, 1).clock is time.monotonic


def test_from_settings_reads_rohrpost(settings: Any) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 2, "BURST": 5}, "FLOOD_CLOSE_AFTER": 7}
    gate = FrameGate.from_settings()
    assert gate.bucket is not None
    assert (gate.bucket.rate, gate.bucket.burst, gate.bucket.tokens) == (2.0, 5.0, 5.0)
    assert gate.flood_close_after == 7


def test_from_settings_uses_the_defaults(settings: Any) -> None:
    del settings.ROHRPOST
    gate = FrameGate.from_settings()
    assert gate.bucket is not None
    assert (gate.bucket.rate, gate.bucket.burst) == (100.0, 200.0)
    assert gate.byte_bucket is not None
    assert (gate.byte_bucket.rate, gate.byte_bucket.burst) == (524288.0, 1048576.0)
    assert gate.flood_close_after == 100


def test_from_settings_reads_the_byte_rate_limit(settings: Any) -> None:
    settings.ROHRPOST = {"BYTE_RATE_LIMIT": {"RATE": 10, "BURST": 20}, "MAX_FRAME_BYTES": 30}
    gate = FrameGate.from_settings()
    assert gate.byte_bucket is not None
    assert (gate.byte_bucket.rate, gate.byte_bucket.burst) == (10.0, 30.0)


def test_from_settings_with_the_rate_limits_off(settings: Any) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": None, "BYTE_RATE_LIMIT": None}
    gate = FrameGate.from_settings()
    assert (gate.bucket, gate.byte_bucket) == (None, None)
    assert {gate.admit(10**9) for _ in range(1000)} == {"admit"}


def test_from_settings_falls_back_to_the_defaults_for_invalid_values(settings: Any) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": -1, "BURST": 5}, "FLOOD_CLOSE_AFTER": 0}
    gate = FrameGate.from_settings()
    assert gate.bucket is not None
    assert (gate.bucket.rate, gate.bucket.burst) == (100.0, 200.0)
    assert gate.flood_close_after == 100


# --- the consumers ---------------------------------------------------------------------


class ThreadedSyncConsumer(SyncRohrpostConsumer):
    """Overrides ``receive``: frames take 4.x's threaded path."""

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        super().receive(text_data, bytes_data)


ConsumerClass = type[SyncRohrpostConsumer] | type[AsyncRohrpostConsumer]


pytestmark = pytest.mark.usefixtures("fresh_channel_layers")


@pytest.fixture(
    params=[SyncRohrpostConsumer, ThreadedSyncConsumer, AsyncRohrpostConsumer],
    ids=["sync", "sync-threaded", "async"],
)
def consumer_class(request: pytest.FixtureRequest) -> ConsumerClass:
    return request.param  # type: ignore[no-any-return]


def test_the_threaded_subclass_takes_the_threaded_path() -> None:
    assert not ThreadedSyncConsumer()._rohrpost_loop_receive
    assert SyncRohrpostConsumer()._rohrpost_loop_receive


async def send_ping(communicator: WebsocketCommunicator, request_id: int) -> None:
    await communicator.send_to(text_data=json.dumps({"id": request_id, "type": "ping"}))


async def receive_json(communicator: WebsocketCommunicator) -> Any:
    return json.loads(await communicator.receive_from(timeout=1))


async def test_a_connection_over_its_rate_is_refused_then_closed_4029(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = TIGHT
    async with connect(consumer_class) as communicator:
        for request_id in (1, 2, 3):
            await send_ping(communicator, request_id)
            assert await receive_json(communicator) == {"id": request_id, "type": "pong"}
        # Refusals 1 and 2 (FLOOD_CLOSE_AFTER): answered, the connection stays open.
        for request_id in (4, 5):
            await send_ping(communicator, request_id)
            assert await receive_json(communicator) == REFUSAL
        # Refusal 3, more than FLOOD_CLOSE_AFTER in one second: answered, then closed.
        await send_ping(communicator, 6)
        assert await receive_json(communicator) == REFUSAL
        assert await communicator.receive_output(timeout=1) == {
            "type": "websocket.close",
            "code": CLOSE_FLOODING,
        }
        assert await communicator.receive_nothing(timeout=0.05)


async def test_large_frames_past_the_byte_budget_are_refused_undecoded(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {
        "BYTE_RATE_LIMIT": {"RATE": 1, "BURST": 2000},
        "MAX_FRAME_BYTES": 1000,
        "FLOOD_CLOSE_AFTER": 5,
    }
    big = json.dumps({"id": 0, "type": "ping", "data": "x" * 900})
    async with connect(consumer_class) as communicator:
        for request_id in (1, 2):
            await communicator.send_to(text_data=big.replace('"id": 0', f'"id": {request_id}'))
            assert (await receive_json(communicator))["id"] == request_id
        await communicator.send_to(text_data=big)
        assert await receive_json(communicator) == REFUSAL
        # Small frames still fit in what is left of the budget.
        await send_ping(communicator, 4)
        assert await receive_json(communicator) == {"id": 4, "type": "pong"}


async def test_nothing_is_sent_after_the_flood_close(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 1, "BURST": 1}, "FLOOD_CLOSE_AFTER": 1}
    async with connect(consumer_class) as communicator:
        for request_id in (1, 2, 3):
            await send_ping(communicator, request_id)
        assert await receive_json(communicator) == {"id": 1, "type": "pong"}
        assert await receive_json(communicator) == REFUSAL
        assert await receive_json(communicator) == REFUSAL
        assert await communicator.receive_output(timeout=1) == {
            "type": "websocket.close",
            "code": CLOSE_FLOODING,
        }
        # A frame the server had already read when it closed: it must not be answered.
        await send_ping(communicator, 4)
        assert await communicator.receive_nothing(timeout=0.1)


async def test_a_closed_gate_drops_frames_without_an_answer() -> None:
    """Defensive: the consumer ends at the flood close, but a frame that met a closed
    gate anyway would get nothing (no send is attempted: these consumers have no client).
    """
    for consumer in (AsyncRohrpostConsumer(), SyncRohrpostConsumer()):
        consumer._rohrpost_gate.closed = True
        assert await consumer._rohrpost_atake('{"id": 1, "type": "ping"}', None) == []


@pytest.mark.django_db(transaction=True)  # the `join` handler runs off the event loop
async def test_the_flood_close_ends_the_consumer_as_a_disconnect_does(
    settings: Any, consumer_class: ConsumerClass, registry: HandlerRegistry
) -> None:
    """The consumer stops at once: groups left, ``disconnect()`` called, no more reading."""
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 1, "BURST": 1}, "FLOOD_CLOSE_AFTER": 1}
    disconnected: list[int] = []

    @registry.handler("join")
    async def join(consumer: Any, request: dict[str, Any]) -> str:
        await consumer.aadd_to_group("room")
        return "joined"

    class Recording(consumer_class):  # type: ignore[valid-type, misc]
        def disconnect(self, code: int) -> Any:
            disconnected.append(code)
            return super().disconnect(code)

    communicator = WebsocketCommunicator(Recording.as_asgi(), "/ws/")
    assert (await communicator.connect(timeout=1))[0]
    await get_channel_layer().group_add("room", "someone-else")
    await communicator.send_to(text_data=json.dumps({"id": 1, "type": "join"}))
    assert (await receive_json(communicator))["data"] == "joined"
    assert len(get_channel_layer().groups["room"]) == 2
    for request_id in (2, 3):
        await send_ping(communicator, request_id)
    assert await receive_json(communicator) == REFUSAL
    assert await receive_json(communicator) == REFUSAL
    assert await communicator.receive_output(timeout=1) == {
        "type": "websocket.close",
        "code": CLOSE_FLOODING,
    }
    await communicator.wait(timeout=1)  # the application returned without a disconnect event
    assert disconnected == [CLOSE_FLOODING]
    assert list(get_channel_layer().groups["room"]) == ["someone-else"]


async def test_a_refused_frame_is_not_decoded(settings: Any, consumer_class: ConsumerClass) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 1, "BURST": 1}, "FLOOD_CLOSE_AFTER": 5}
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data="not json")
        assert (await receive_json(communicator))["code"] == "invalid_json"
        await communicator.send_to(text_data="not json")
        assert await receive_json(communicator) == REFUSAL
        await communicator.send_to(bytes_data=b"\x00")
        assert await receive_json(communicator) == REFUSAL


async def test_each_connection_has_its_own_bucket(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 1, "BURST": 1}, "FLOOD_CLOSE_AFTER": 5}
    async with connect(consumer_class) as first, connect(consumer_class) as second:
        await send_ping(first, 1)
        assert await receive_json(first) == {"id": 1, "type": "pong"}
        await send_ping(first, 2)
        assert await receive_json(first) == REFUSAL
        await send_ping(second, 3)
        assert await receive_json(second) == {"id": 3, "type": "pong"}


async def test_settings_are_read_per_connection(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 1, "BURST": 1}, "FLOOD_CLOSE_AFTER": 5}
    async with connect(consumer_class) as limited:
        settings.ROHRPOST = {"RATE_LIMIT": None}
        async with connect(consumer_class) as unlimited:
            for request_id in (1, 2):
                await send_ping(unlimited, request_id)
                assert await receive_json(unlimited) == {"id": request_id, "type": "pong"}
        # The first connection keeps the gate it was created with.
        await send_ping(limited, 3)
        assert await receive_json(limited) == {"id": 3, "type": "pong"}
        await send_ping(limited, 4)
        assert await receive_json(limited) == REFUSAL


async def test_without_a_rate_limit_every_frame_is_answered(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": None, "FLOOD_CLOSE_AFTER": 1}
    async with connect(consumer_class) as communicator:
        for request_id in range(500):
            await send_ping(communicator, request_id)
        for request_id in range(500):
            assert await receive_json(communicator) == {"id": request_id, "type": "pong"}
        assert await communicator.receive_nothing(timeout=0.01)


async def test_default_rate_limit_admits_a_burst_of_200(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    del settings.ROHRPOST
    async with connect(consumer_class) as communicator:
        for request_id in range(200):
            await send_ping(communicator, request_id)
        for request_id in range(200):
            assert await receive_json(communicator) == {"id": request_id, "type": "pong"}


@pytest.fixture
def sync_handler(registry: HandlerRegistry) -> HandlerRegistry:
    """A sync handler (run in a worker thread) behind the gate too."""

    @registry.handler("test.sync")
    def handle(consumer: Any, request: dict[str, Any]) -> str:
        return "done"

    return registry


@pytest.mark.usefixtures("sync_handler")
async def test_sync_handlers_are_behind_the_gate(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 1, "BURST": 1}, "FLOOD_CLOSE_AFTER": 5}
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data=json.dumps({"id": 1, "type": "test.sync"}))
        assert await receive_json(communicator) == {"id": 1, "type": "test.sync", "data": "done"}
        await communicator.send_to(text_data=json.dumps({"id": 2, "type": "test.sync"}))
        assert await receive_json(communicator) == REFUSAL


def nested(depth: int) -> str:
    """A ping whose data nests to ``depth`` in all (the request object is depth 1)."""
    return json.dumps(
        {"id": 1, "type": "ping", "data": json.loads("[" * (depth - 1) + "]" * (depth - 1))}
    )


async def test_max_frame_bytes_setting_bounds_frames(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"MAX_FRAME_BYTES": 40}
    ping = '{"id": 1, "type": "ping"}'
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data=ping.ljust(40))
        assert await receive_json(communicator) == {"id": 1, "type": "pong"}
        await communicator.send_to(text_data=ping.ljust(41))
        assert await receive_json(communicator) == {
            "error": "The frame is larger than 40 bytes.",
            "code": "too_large",
        }


async def test_max_depth_setting_bounds_nesting(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"MAX_DEPTH": 3}
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data=nested(3))
        assert (await receive_json(communicator))["type"] == "pong"
        await communicator.send_to(text_data=nested(4))
        reply = await receive_json(communicator)
        assert reply["code"] == "too_deep"
        assert (reply["id"], reply["type"]) == (1, "ping")


async def test_default_limits_apply_without_the_setting(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    del settings.ROHRPOST
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data=nested(32))
        assert (await receive_json(communicator))["type"] == "pong"
        await communicator.send_to(text_data=nested(33))
        assert (await receive_json(communicator))["code"] == "too_deep"
        await communicator.send_to(text_data="x" * (256 * 1024 + 1))
        assert (await receive_json(communicator))["code"] == "too_large"


async def test_invalid_limit_settings_fall_back_to_the_defaults(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"MAX_FRAME_BYTES": 0, "MAX_DEPTH": 501}
    async with connect(consumer_class) as communicator:
        await communicator.send_to(text_data=nested(32))
        assert (await receive_json(communicator))["type"] == "pong"
        await communicator.send_to(text_data=nested(33))
        assert (await receive_json(communicator))["code"] == "too_deep"


async def test_class_level_limits_win_over_the_settings(
    settings: Any, consumer_class: ConsumerClass
) -> None:
    settings.ROHRPOST = {"MAX_FRAME_BYTES": 10, "MAX_DEPTH": 1}
    bounded = type("Bounded", (consumer_class,), {"rohrpost_limits": Limits(100, 4)})
    async with connect(bounded) as communicator:
        await communicator.send_to(text_data=nested(4))
        assert (await receive_json(communicator))["type"] == "pong"
        await communicator.send_to(text_data=nested(5))
        assert (await receive_json(communicator))["code"] == "too_deep"
        await communicator.send_to(
            text_data=json.dumps({"id": 1, "type": "ping", "data": "x" * 100})
        )
        assert await receive_json(communicator) == {
            "error": "The frame is larger than 100 bytes.",
            "code": "too_large",
        }


# --- the cooldown after a flood close -----------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def client_scope(address: str) -> dict[str, Any]:
    return {"type": "websocket", "client": (address, 50000)}


def test_a_recorded_address_is_refused_until_the_cooldown_ends() -> None:
    clock = FakeClock()
    cooldown = FloodCooldown(clock=clock)
    assert not cooldown.refuses(client_scope("10.0.0.1"), 10)
    cooldown.record(client_scope("10.0.0.1"))
    assert cooldown.refuses(client_scope("10.0.0.1"), 10)
    assert not cooldown.refuses(client_scope("10.0.0.2"), 10)
    clock.now += 9.9
    assert cooldown.refuses(client_scope("10.0.0.1"), 10)
    clock.now += 0.1
    assert not cooldown.refuses(client_scope("10.0.0.1"), 10)
    assert cooldown.closed_at == {}  # forgotten once expired


async def test_behind_a_proxy_granians_wrapper_gives_the_cooldown_the_clients_address() -> None:
    """docs/deployment.md's granian snippet: the forwarded address is what gets refused."""
    from granian.utils.proxies import wrap_asgi_with_proxy_headers

    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    wrapped = wrap_asgi_with_proxy_headers(app, trusted_hosts="127.0.0.1")
    headers = [(b"x-forwarded-for", b"203.0.113.7")]
    for peer in ("127.0.0.1", "198.51.100.1"):  # the proxy, then a client that lies
        await wrapped(
            {"type": "websocket", "client": (peer, 50000), "headers": headers}, None, None
        )
    cooldown = FloodCooldown(clock=FakeClock())
    cooldown.record(seen[0])
    assert cooldown.refuses(client_scope("203.0.113.7"), 10)
    assert not cooldown.refuses(client_scope("127.0.0.1"), 10)
    assert seen[1]["client"] == ("198.51.100.1", 50000)


@pytest.mark.parametrize("scope", [{}, {"client": None}, {"client": ()}, {"client": [None, 1]}])
def test_a_scope_without_a_client_address_is_never_recorded_or_refused(
    scope: dict[str, Any],
) -> None:
    cooldown = FloodCooldown()
    cooldown.record(scope)
    assert cooldown.closed_at == {}
    cooldown.record(client_scope("10.0.0.1"))
    assert not cooldown.refuses(scope, 10)


def test_the_cooldown_remembers_a_bounded_number_of_addresses() -> None:
    cooldown = FloodCooldown(max_entries=3)
    for last in range(5):
        cooldown.record(client_scope(f"10.0.0.{last}"))
    cooldown.record(client_scope("10.0.0.2"))  # again: now the newest
    assert list(cooldown.closed_at) == ["10.0.0.3", "10.0.0.4", "10.0.0.2"]


@pytest.fixture
def cooldown() -> Any:
    """The process's cooldown record, empty before and after the test."""
    COOLDOWN.closed_at.clear()
    yield COOLDOWN
    COOLDOWN.closed_at.clear()


async def flood_close(consumer_class: ConsumerClass, address: str) -> None:
    communicator = WebsocketCommunicator(consumer_class.as_asgi(), "/ws/")
    communicator.scope["client"] = (address, 40000)
    assert (await communicator.connect(timeout=1))[0]
    for request_id in (1, 2, 3):
        await send_ping(communicator, request_id)
    for _ in range(3):
        await communicator.receive_output(timeout=1)
    assert await communicator.receive_output(timeout=1) == {
        "type": "websocket.close",
        "code": CLOSE_FLOODING,
    }
    await communicator.wait(timeout=1)


async def try_connect(consumer_class: ConsumerClass, address: str) -> bool:
    communicator = WebsocketCommunicator(consumer_class.as_asgi(), "/ws/")
    communicator.scope["client"] = (address, 40001)
    connected, _ = await communicator.connect(timeout=1)
    await communicator.disconnect(timeout=1)
    return bool(connected)


async def test_a_flood_closed_address_may_not_reconnect_for_a_while(
    settings: Any, consumer_class: ConsumerClass, cooldown: FloodCooldown
) -> None:
    settings.ROHRPOST = {"RATE_LIMIT": {"RATE": 1, "BURST": 1}, "FLOOD_CLOSE_AFTER": 1}
    await flood_close(consumer_class, "10.1.1.1")
    assert "10.1.1.1" in cooldown.closed_at
    assert not await try_connect(consumer_class, "10.1.1.1")  # refused before accept: HTTP 403
    assert await try_connect(consumer_class, "10.1.1.2")
    cooldown.closed_at["10.1.1.1"] -= 10.0  # the cooldown has passed
    assert await try_connect(consumer_class, "10.1.1.1")


async def test_a_zero_cooldown_lets_a_flooder_straight_back_in(
    settings: Any, consumer_class: ConsumerClass, cooldown: FloodCooldown
) -> None:
    settings.ROHRPOST = {
        "RATE_LIMIT": {"RATE": 1, "BURST": 1},
        "FLOOD_CLOSE_AFTER": 1,
        "FLOOD_COOLDOWN": 0,
    }
    await flood_close(consumer_class, "10.1.1.3")
    assert await try_connect(consumer_class, "10.1.1.3")
