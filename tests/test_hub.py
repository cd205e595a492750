"""Tests for rohrpost.hub: one control channel per process, routing, and layer faults survived."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from rohrpost import hub as hub_module
from rohrpost.hub import CONTROL_EVENT_TYPE, CONTROL_GROUP, Hub, hub_for


class Member:
    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []

    def rohrpost_control(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def __repr__(self) -> str:
        return self.name


def control(**fields: Any) -> dict[str, Any]:
    return {"type": CONTROL_EVENT_TYPE, **fields}


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_control_event_reaches_the_local_members_of_its_group_only() -> None:
    layer = InMemoryChannelLayer()
    hub = hub_for(layer)
    alice, bob = Member("alice"), Member("bob")
    hub.add("room", alice)
    hub.add("other", bob)
    await settle()
    await layer.group_send(CONTROL_GROUP, control(action="close", group="room"))
    await settle()
    assert alice.events == [control(action="close", group="room")]
    assert bob.events == []


async def test_an_event_for_a_kind_reaches_every_local_member_once() -> None:
    hub = Hub(InMemoryChannelLayer())
    alice, bob = Member("alice"), Member("bob")
    for group in ("a", "b"):
        hub.add(group, alice)
    hub.add("b", bob)
    hub.route(control(action="recheck", group=None, kind="board"))
    assert len(alice.events) == 1
    assert len(bob.events) == 1


async def test_one_member_failing_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Member):
        def rohrpost_control(self, event: dict[str, Any]) -> None:
            raise RuntimeError("broken")

    hub = Hub(InMemoryChannelLayer())
    good = Member("good")
    hub.add("room", Broken("broken"))
    hub.add("room", good)
    with caplog.at_level(logging.ERROR, "rohrpost"):
        hub.route(control(action="close", group="room"))
    assert len(good.events) == 1
    assert "failed to act on a control event" in caplog.text


async def test_an_event_without_a_group_or_kind_is_logged_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(InMemoryChannelLayer())
    member = Member("m")
    hub.add("room", member)
    with caplog.at_level(logging.WARNING, "rohrpost"):
        hub.route(control(action="close", group=5))
    assert member.events == []
    assert "without a group" in caplog.text


async def test_members_leave_groups_and_empty_groups_are_dropped() -> None:
    hub = Hub(InMemoryChannelLayer())
    member = Member("m")
    hub.add("a", member)
    hub.add("b", member)
    hub.discard("a", member)
    hub.discard("nowhere", member)
    assert hub.groups == {"b": {member}}
    hub.forget(member, ["b"])
    assert hub.groups == {}


async def test_one_hub_per_layer_and_event_loop() -> None:
    layer = InMemoryChannelLayer()
    hub = hub_for(layer)
    assert hub_for(layer) is hub
    assert hub_for(InMemoryChannelLayer()) is not hub
    hub.loop = asyncio.new_event_loop()  # as if made on another loop
    try:
        assert hub_for(layer) is not hub
    finally:
        hub.loop.close()


async def test_events_of_other_types_on_the_hub_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer()
    hub = hub_for(layer)
    member = Member("m")
    hub.add("room", member)
    await settle()
    with caplog.at_level(logging.WARNING, "rohrpost"):
        await layer.group_send(CONTROL_GROUP, {"type": "chat.message"})
        await settle()
    assert member.events == []
    assert "Ignoring an event of type 'chat.message' on the hub" in caplog.text


class FlakyLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """An in-memory layer whose receive fails ``failures`` times, as Redis does in an outage."""

    def __init__(self, failures: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures
        self.joins = 0

    async def group_add(self, group: str, channel: str) -> None:
        self.joins += 1
        await super().group_add(group, channel)

    async def receive(self, channel: str) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Redis is down")
        return await super().receive(channel)


async def test_the_hub_survives_layer_failures_logs_once_and_joins_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(hub_module, "RETRY_FIRST_SECONDS", 0.001)
    layer = FlakyLayer(failures=4)
    hub = hub_for(layer)
    member = Member("m")
    with caplog.at_level(logging.WARNING, "rohrpost"):
        hub.add("room", member)
        for _ in range(200):
            await asyncio.sleep(0.002)
            if not layer.failures:
                break
        await settle()
        await layer.group_send(CONTROL_GROUP, control(action="close", group="room"))
        for _ in range(100):
            await asyncio.sleep(0.002)
            if member.events:
                break
    assert member.events == [control(action="close", group="room")]
    assert caplog.text.count("The channel layer failed") == 1
    assert caplog.text.count("answers again") == 1
    assert layer.joins == 5  # the first join, then once after each failure


async def test_the_membership_is_renewed_before_the_group_expires() -> None:
    layer = FlakyLayer(failures=0, group_expiry=0.04)
    hub = hub_for(layer)
    hub.add("room", Member("m"))
    await asyncio.sleep(0.15)
    assert layer.joins >= 4  # every 0.02 s: half the expiry
    assert hub._rejoin_every() == 0.02


async def test_a_layer_without_group_expiry_gets_no_renewals() -> None:
    layer = FlakyLayer(failures=0, group_expiry=0)
    hub = hub_for(layer)
    member = Member("m")
    hub.add("room", member)
    await asyncio.sleep(0.02)
    assert layer.joins == 1
    await layer.group_send(CONTROL_GROUP, control(action="close", group="room"))
    await settle()
    assert len(member.events) == 1
    assert hub._task is not None
    hub._task.cancel()
    await asyncio.wait({hub._task}, timeout=1)


@pytest.mark.parametrize("expiry", [None, 0, True, "1"])
def test_no_renewal_without_a_usable_group_expiry(expiry: Any) -> None:
    class Layer:
        group_expiry = expiry

    hub = Hub.__new__(Hub)
    hub.layer = Layer()
    assert hub._rejoin_every() is None


async def test_the_renewer_keeps_going_when_a_renewal_fails() -> None:
    class FailingJoins(FlakyLayer):
        async def group_add(self, group: str, channel: str) -> None:
            self.joins += 1
            if self.joins > 1:
                raise ConnectionError("Redis is down")
            await InMemoryChannelLayer.group_add(self, group, channel)

    layer = FailingJoins(failures=0, group_expiry=0.02)
    hub_for(layer).add("room", Member("m"))
    await asyncio.sleep(0.08)
    assert layer.joins >= 3


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.cancelling() is Python 3.11+")
async def test_a_cancellation_the_layer_turns_into_an_error_still_stops_the_hub() -> None:
    """redis-py, cancelled mid-command, may raise a connection error instead."""

    class Converting(InMemoryChannelLayer):  # type: ignore[misc]
        async def receive(self, channel: str) -> Any:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise ConnectionError("closed while reading") from None

    hub = hub_for(Converting())
    hub.add("room", Member("m"))
    await settle()
    task = hub._task
    assert task is not None
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.cancelled()


async def test_the_hub_runs_in_a_context_of_its_own() -> None:
    """It may be started from a sync handler's async_to_sync, whose context dies with it."""
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="clean")
    seen: list[str] = []

    class Seeing(Member):
        def rohrpost_control(self, event: dict[str, Any]) -> None:
            seen.append(marker.get())

    layer = InMemoryChannelLayer()
    marker.set("the starter's")
    hub_for(layer).add("room", Seeing("m"))
    await settle()
    await layer.group_send(CONTROL_GROUP, control(action="close", group="room"))
    await settle()
    assert seen == ["clean"]
