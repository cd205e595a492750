"""Tests for rohrpost.delivery: events in turn, pushes after the reply, a channel only on demand."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.exceptions import StopConsumer
from channels.layers import channel_layers, get_channel_layer

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer
from rohrpost.handlers import handle_ping
from rohrpost.hub import hub_for
from rohrpost.message import asend_to_group
from rohrpost.registry import HandlerRegistry
from tests.communicators import ask, connect, connection_groups

pytestmark = pytest.mark.usefixtures("fresh_channel_layers")

#: Set by a test, awaited by the "wait" handler: a frame whose handling lasts.
GATE: dict[str, asyncio.Event] = {}
SEEN: list[str] = []


def make_registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("ping", handle_ping, inline=True)

    @registry.handler("join")
    async def join(consumer: Any, request: dict[str, Any]) -> str:
        for group in request["data"]:
            await consumer.aadd_to_group(group)
        return "joined"

    @registry.handler("join-push-leave")
    async def join_push_leave(consumer: Any, request: dict[str, Any]) -> str:
        await consumer.aadd_to_group("kept")
        await consumer.aadd_to_group("left")
        for group in ("kept", "left"):
            await asend_to_group(group, {"id": 0, "type": "push", "data": group})
        for _ in range(200):  # until the hub has delivered both: held for this frame
            if len(consumer._rohrpost_held or ()) == 2:
                break
            await asyncio.sleep(0.005)
        await consumer.aremove_from_group("left")
        return "done"

    @registry.handler("push-then-answer")
    async def push_then_answer(consumer: Any, request: dict[str, Any]) -> str:
        # As a handler whose save publishes: the push reaches the hub before the reply.
        text = "x" * int(request["data"])
        await asend_to_group("room", {"id": 0, "type": "push", "data": text})
        for _ in range(200):
            if consumer._rohrpost_held or consumer._rohrpost_revoked is not None:
                break
            await asyncio.sleep(0.005)
        return "answered"

    @registry.handler("leave")
    async def leave(consumer: Any, request: dict[str, Any]) -> str:
        await consumer.aremove_from_group(request["data"])
        return "left"

    @registry.handler("wait")
    async def wait(consumer: Any, request: dict[str, Any]) -> str:
        SEEN.append("wait")
        await GATE["frame"].wait()
        return "waited"

    @registry.handler("quit")
    async def quit_(consumer: Any, request: dict[str, Any]) -> None:
        await consumer._rohrpost_aclose(1000)  # still in its groups until the client goes

    @registry.handler("channel")
    async def channel(consumer: Any, request: dict[str, Any]) -> str:
        return str(consumer.channel_name)

    return registry


REGISTRY = make_registry()


def chat_frame(event: dict[str, Any]) -> str:
    """The frame a custom event handler sends; raises as the event asks."""
    if event.get("fail"):
        raise RuntimeError("the event handler failed")
    if event.get("stop"):
        raise StopConsumer
    return json.dumps({"id": 0, "type": "chat", "data": event["text"]})


class AsyncRelaying(AsyncRohrpostConsumer):
    """A consumer with a handler of its own for a custom group event."""

    rohrpost_registry = REGISTRY

    async def chat_message(self, event: dict[str, Any]) -> None:
        SEEN.append(f"chat:{event['text']}")
        if event.get("hold"):
            await GATE["relay"].wait()
        await self.send(text_data=chat_frame(event))


class SyncRelaying(SyncRohrpostConsumer):
    rohrpost_registry = REGISTRY

    def chat_message(self, event: dict[str, Any]) -> None:
        SEEN.append(f"chat:{event['text']}")
        self.send(text_data=chat_frame(event))


@pytest.fixture(params=[AsyncRelaying, SyncRelaying], ids=["async", "sync"])
def consumer_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def fresh_state() -> None:
    GATE.clear()
    GATE.update(frame=asyncio.Event(), relay=asyncio.Event())
    SEEN.clear()


async def frame(client: Any) -> Any:
    return json.loads(await client.receive_from(timeout=2))


async def until(condition: Any, seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not hold in time")


# --- pushes after the reply ------------------------------------------------------------


async def test_pushes_of_a_group_joined_by_a_frame_follow_its_reply(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as client:
        reply = await ask(client, {"id": 1, "type": "join-push-leave"})
        assert reply["data"] == "done"
        # "left" was left before the reply: its held push is dropped.
        assert (await frame(client))["data"] == "kept"
        assert await client.receive_nothing(timeout=0.1)


async def test_joining_several_groups_in_one_frame_holds_them_all(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as client:
        assert (await ask(client, {"id": 1, "type": "join", "data": ["a", "b"]}))["data"]
        for group in ("a", "b"):
            await asend_to_group(group, {"id": 0, "type": "push", "data": group})
        assert {(await frame(client))["data"] for _ in range(2)} == {"a", "b"}


# --- other events, in turn ---------------------------------------------------------------


async def test_a_custom_group_event_reaches_the_consumers_handler(
    consumer_class: type[Any],
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as a, connect(consumer_class) as b:
        for client in (a, b):
            await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        await layer.group_send("room", {"type": "chat.message", "text": "hi"})
        for client in (a, b):
            assert (await frame(client)) == {"id": 0, "type": "chat", "data": "hi"}


async def test_an_event_waits_for_the_frame_being_handled_and_a_frame_for_the_event() -> None:
    layer = get_channel_layer()
    async with connect(AsyncRelaying) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        # An event while a frame is handled: dispatched after its reply.
        await client.send_to(text_data=json.dumps({"id": 2, "type": "wait"}))
        await until(lambda: SEEN == ["wait"])
        await layer.group_send("room", {"type": "chat.message", "text": "during"})
        await asyncio.sleep(0.05)
        assert SEEN == ["wait"]
        GATE["frame"].set()
        assert (await frame(client))["data"] == "waited"
        assert (await frame(client))["data"] == "during"
        # A frame while an event is handled: dispatched after it.
        await layer.group_send("room", {"type": "chat.message", "text": "slow", "hold": True})
        await until(lambda: SEEN[-1] == "chat:slow")
        await client.send_to(text_data=json.dumps({"id": 3, "type": "ping"}))
        await asyncio.sleep(0.05)
        assert await client.receive_nothing(timeout=0.05)
        GATE["relay"].set()
        assert (await frame(client))["data"] == "slow"
        assert (await frame(client))["type"] == "pong"


async def test_a_failing_event_handler_is_logged_and_the_connection_goes_on(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        with caplog.at_level(logging.ERROR, "rohrpost"):
            await layer.group_send("room", {"type": "chat.message", "text": "x", "fail": True})
            await until(lambda: "Handling a 'chat.message' event failed" in caplog.text)
        assert (await ask(client, {"id": 2, "type": "ping"}))["type"] == "pong"


async def test_an_event_handler_that_stops_the_consumer_closes_the_connection(
    consumer_class: type[Any],
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        await layer.group_send("room", {"type": "chat.message", "text": "x", "stop": True})
        # Ended at once (in turn after a frame), or closed (from the relaying task).
        await until(lambda: client.future.done() or not client.output_queue.empty())
        if not client.future.done():
            assert await client.receive_output() == {"type": "websocket.close", "code": 1000}


async def test_an_event_that_stops_the_consumer_during_a_frame_ends_it() -> None:
    layer = get_channel_layer()
    async with connect(AsyncRelaying) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        await client.send_to(text_data=json.dumps({"id": 2, "type": "wait"}))
        await until(lambda: SEEN == ["wait"])
        await layer.group_send("room", {"type": "chat.message", "text": "x", "stop": True})
        await asyncio.sleep(0.02)
        GATE["frame"].set()
        assert (await frame(client))["data"] == "waited"
        await client.wait(timeout=2)  # the consumer ended


def hub_channels(layer: Any) -> set[str]:
    hub = hub_for(layer)
    return {hub.channel, *(served.channel for served in hub.served.values())}  # type: ignore[misc]


# --- the connection's own channel -----------------------------------------------------------


async def test_a_connection_receives_on_its_own_channel_only_once_asked(
    consumer_class: type[Any],
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        # The hub's channels (control, "room") are received on; the connection's not.
        assert len(layer.channels) == 2
        channel = (await ask(client, {"id": 2, "type": "channel"}))["data"]
        await layer.send(channel, {"type": "chat.message", "text": "direct"})
        assert channel in layer.channels
        assert (await frame(client))["data"] == "direct"


def test_the_channel_name_is_unknown_before_the_connection_starts() -> None:
    with pytest.raises(AttributeError, match="not started yet"):
        _ = AsyncRelaying().channel_name


async def test_the_own_receive_survives_layer_faults(
    consumer_class: type[Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.exceptions

    from rohrpost import upkeep as upkeep_module

    monkeypatch.setattr(upkeep_module, "RETRY_FIRST_SECONDS", 0.001)
    monkeypatch.setattr(upkeep_module, "CANARY_SECONDS", 0.01)
    layer = get_channel_layer()
    faults = [redis.exceptions.TimeoutError("idle"), ConnectionError("Redis is down")]
    real_receive = layer.receive
    own: list[str] = []

    async def receive(channel: str) -> Any:
        if faults and channel not in hub_channels(layer):
            await asyncio.sleep(0)
            raise faults.pop(0)
        return await real_receive(channel)

    monkeypatch.setattr(layer, "receive", receive)
    async with connect(consumer_class) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        with caplog.at_level(logging.WARNING, "rohrpost"):
            own.append((await ask(client, {"id": 2, "type": "channel"}))["data"])
            await until(lambda: not faults)
            await layer.send(own[0], {"type": "chat.message", "text": "after"})
            assert (await frame(client))["data"] == "after"
        assert caplog.text.count("The channel layer failed") == 1


@pytest.fixture
def pubsub_layer(redis_url: str, settings: Any) -> Iterator[None]:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": f"rohrpost-test-{uuid.uuid4().hex[:8]}"},
        }
    }
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.mark.usefixtures("pubsub_layer")
async def test_on_the_pubsub_layer_a_channel_never_received_on_is_unsubscribed(
    consumer_class: type[Any],
) -> None:
    layer = get_channel_layer()
    try:
        async with connect(consumer_class) as client:
            await ask(client, {"id": 1, "type": "join", "data": ["room"]})
            await asend_to_group("room", {"id": 0, "type": "push", "data": "over pubsub"})
            assert (await frame(client))["data"] == "over pubsub"
            inner = layer._get_layer()
            own = set(inner.channels) - hub_channels(layer)
            assert len(own) == 1  # new_channel() subscribed the connection's channel
        await until(lambda: not own & set(inner.channels))
    finally:
        await layer.flush()


async def test_a_consumer_with_its_own_membership_leaves_its_groups(
    settings: Any,
) -> None:
    class OwnChannel(AsyncRelaying):
        async def rohrpost_message(self, event: dict[str, Any]) -> None:
            await super().rohrpost_message(event)

    layer = get_channel_layer()
    async with connect(OwnChannel) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        channel = (await ask(client, {"id": 2, "type": "channel"}))["data"]
        assert set(layer.groups["room"]) == {channel}
        await asend_to_group("room", {"id": 0, "type": "push", "data": "own"})
        assert (await frame(client))["data"] == "own"
        await ask(client, {"id": 3, "type": "leave", "data": "room"})
        assert "room" not in connection_groups()


async def test_a_disconnect_while_an_event_is_handled_ends_the_relay() -> None:
    layer = get_channel_layer()
    async with connect(AsyncRelaying) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        await layer.group_send("room", {"type": "chat.message", "text": "slow", "hold": True})
        await until(lambda: SEEN[-1:] == ["chat:slow"])
    # Disconnected with the event handler still waiting: it was cancelled.
    GATE["relay"].set()
    await asyncio.sleep(0.02)
    assert SEEN == ["chat:slow"]


async def test_reading_the_channel_name_off_the_loop_or_again_starts_one_receive_at_most() -> None:
    consumer = AsyncRelaying()
    consumer.channel_name = "specific.inmemory!bare"
    assert consumer.channel_name == "specific.inmemory!bare"  # not running: no receive
    assert consumer._rohrpost_listener is None
    consumer.channel_layer = None
    consumer._rohrpost_listen()  # no layer: nothing to receive on
    assert consumer._rohrpost_listener is None


async def test_a_plain_channels_consumer_an_overriding_one_and_the_hubs_share_a_group() -> None:
    """Each gets every push once: the layer reaches the others, the hub its members."""
    from channels.generic.websocket import AsyncWebsocketConsumer

    class Plain(AsyncWebsocketConsumer):
        async def connect(self) -> None:
            await self.channel_layer.group_add("shared", self.channel_name)
            await self.accept()

        async def rohrpost_message(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["message"])

    class Overriding(AsyncRelaying):
        async def rohrpost_message(self, event: dict[str, Any]) -> None:
            await super().rohrpost_message(event)

    async with (
        connect(Plain) as plain,
        connect(Overriding) as overriding,
        connect(AsyncRelaying) as via_hub,
        connect(SyncRelaying) as via_hub_sync,
    ):
        for client in (overriding, via_hub, via_hub_sync):
            await ask(client, {"id": 1, "type": "join", "data": ["shared"]})
        for n in (1, 2):
            await asend_to_group("shared", {"id": n, "type": "push"})
        for client in (plain, overriding, via_hub, via_hub_sync):
            assert [(await frame(client))["id"] for _ in range(2)] == [1, 2]
            assert await client.receive_nothing(timeout=0.05)


async def test_a_push_to_a_connection_that_is_closing_is_dropped(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        await client.send_to(text_data=json.dumps({"id": 2, "type": "quit"}))
        assert await client.receive_output(timeout=2) == {"type": "websocket.close", "code": 1000}
        await asend_to_group("room", {"id": 3, "type": "too-late"})
        assert await client.receive_nothing(timeout=0.1)


async def test_a_handlers_reply_comes_before_the_push_its_own_change_caused(
    consumer_class: type[Any],
) -> None:
    """As in 4.x, whose consumer took the next event only after the frame's reply."""
    async with connect(consumer_class) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        await client.send_to(text_data=json.dumps({"id": 2, "type": "push-then-answer", "data": 1}))
        assert (await frame(client))["data"] == "answered"
        assert (await frame(client))["type"] == "push"


async def test_pushes_held_past_the_send_queue_limit_close_the_connection(
    consumer_class: type[Any], settings: Any
) -> None:
    settings.ROHRPOST = {"SEND_QUEUE_LIMIT": 65536}
    async with connect(consumer_class) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        request = {"id": 2, "type": "push-then-answer", "data": 70000}
        await client.send_to(text_data=json.dumps(request))
        assert await client.receive_output(timeout=2) == {"type": "websocket.close", "code": 4008}


async def test_a_push_that_comes_while_an_event_is_handled_follows_it() -> None:
    layer = get_channel_layer()
    async with connect(AsyncRelaying) as client:
        await ask(client, {"id": 1, "type": "join", "data": ["room"]})
        await layer.group_send("room", {"type": "chat.message", "text": "slow", "hold": True})
        await until(lambda: SEEN[-1:] == ["chat:slow"])
        await asend_to_group("room", {"id": 3, "type": "push"})
        assert await client.receive_nothing(timeout=0.05)
        GATE["relay"].set()
        assert (await frame(client))["data"] == "slow"
        assert (await frame(client))["type"] == "push"
