"""Tests for rohrpost.hub: one control channel per process, routing, and layer faults survived."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer

from rohrpost import upkeep as upkeep_module
from rohrpost.hub import CONTROL_EVENT_TYPE, CONTROL_GROUP, PUSH_EVENT_TYPE, Hub, hub_for

PUSH = PUSH_EVENT_TYPE


class Member:
    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.pushes: list[tuple[str, Any]] = []
        self.relayed: list[dict[str, Any]] = []

    def rohrpost_control(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def rohrpost_push(self, group: str, texts: Any, event: dict[str, Any]) -> None:
        self.pushes.append((group, None if texts is None else list(texts)))

    def rohrpost_relay(self, event: dict[str, Any]) -> None:
        self.relayed.append(event)

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
    hub.add("b", member, "own.channel!x")
    hub.discard("a", member)
    hub.discard("nowhere", member)
    assert hub.groups == {"b": {member: "own.channel!x"}}
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


async def test_events_of_other_types_on_the_control_channel_are_logged(
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


# --- group events, through one membership per process -------------------------------------


async def test_a_group_served_to_many_members_is_one_membership_and_one_delivery() -> None:
    layer = InMemoryChannelLayer()
    hub = hub_for(layer)
    alice, bob, carol = Member("alice"), Member("bob"), Member("carol")
    await hub.ajoin("room", alice)
    await hub.ajoin("room", bob)
    await hub.ajoin("other", carol)
    assert len(layer.groups["room"]) == 1
    await layer.group_send("room", {"type": PUSH, "message": "hello", "group": "room"})
    await layer.group_send("room", {"type": PUSH, "messages": ["a", "b"]})
    await settle()
    assert alice.pushes == bob.pushes == [("room", ["hello"]), ("room", ["a", "b"])]
    assert carol.pushes == []


async def test_a_push_that_is_not_text_is_left_to_each_member_to_encode() -> None:
    layer = InMemoryChannelLayer()
    hub = hub_for(layer)
    member = Member("m")
    await hub.ajoin("room", member)
    for event in (
        {"type": PUSH, "message": {"id": 1}},
        {"type": PUSH, "messages": [{"id": 1}]},
    ):
        await layer.group_send("room", event)
    await settle()
    assert member.pushes == [("room", None), ("room", None)]


async def test_other_group_events_are_relayed_to_each_member() -> None:
    layer = InMemoryChannelLayer()
    hub = hub_for(layer)
    alice, bob = Member("alice"), Member("bob")
    await hub.ajoin("room", alice)
    await hub.ajoin("room", bob)
    await layer.group_send("room", {"type": "chat.message", "text": "hi"})
    await settle()
    assert alice.relayed == bob.relayed == [{"type": "chat.message", "text": "hi"}]
    assert alice.pushes == []


async def test_a_member_failing_to_take_a_push_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Member):
        def rohrpost_push(self, group: str, texts: Any, event: dict[str, Any]) -> None:
            raise RuntimeError("broken")

    layer = InMemoryChannelLayer()
    hub = hub_for(layer)
    good = Member("good")
    await hub.ajoin("room", Broken("broken"))
    await hub.ajoin("room", good)
    with caplog.at_level(logging.ERROR, "rohrpost"):
        await layer.group_send("room", {"type": PUSH, "message": "x"})
        await settle()
    assert good.pushes == [("room", ["x"])]
    assert "A connection failed to take a push" in caplog.text


async def test_the_hub_leaves_a_group_when_its_last_member_does() -> None:
    layer = InMemoryChannelLayer()
    hub = hub_for(layer)
    alice, bob = Member("alice"), Member("bob")
    await hub.ajoin("room", alice)
    await hub.ajoin("room", bob)
    hub.discard("room", alice)
    await settle()
    assert "room" in layer.groups
    hub.forget(bob, ["room"])
    await settle()
    assert "room" not in layer.groups
    assert hub.served == {}
    await layer.group_send("room", {"type": PUSH, "message": "late"})
    await settle()
    assert bob.pushes == []
    # Joining again makes a new membership.
    await hub.ajoin("room", bob)
    await layer.group_send("room", {"type": PUSH, "message": "again"})
    await settle()
    assert bob.pushes == [("room", ["again"])]


async def test_members_joining_at_once_share_one_join_and_leaving_meanwhile_leaves() -> None:
    layer = CountingLayer()
    hub = hub_for(layer)
    alice, bob = Member("alice"), Member("bob")
    await asyncio.gather(hub.ajoin("room", alice), hub.ajoin("room", bob))
    assert layer.adds.count("room") == 1
    # Everyone leaves while the join is still on its way: the hub leaves again.
    joining = asyncio.ensure_future(hub.ajoin("solo", alice))
    await asyncio.sleep(0)
    hub.discard("solo", alice)
    await joining
    await settle()
    assert "solo" not in layer.groups


async def test_a_failed_join_raises_and_leaves_no_member(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(upkeep_module, "RETRY_FIRST_SECONDS", 0.001)
    layer = CountingLayer(failing_adds=1)
    hub = hub_for(layer)
    member = Member("m")
    with caplog.at_level(logging.WARNING, "rohrpost"), pytest.raises(ConnectionError):
        await hub.ajoin("room", member)
    assert hub.groups.get("room") is None
    assert hub.served == {}
    # The layer answers again: the next join works.
    await hub.ajoin("room", member)
    await layer.group_send("room", {"type": PUSH, "message": "x"})
    await settle()
    assert member.pushes == [("room", ["x"])]


class CountingLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """An in-memory layer that counts joins, answers them one step later, and may fail some."""

    def __init__(self, failing_adds: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.adds: list[str] = []
        self.failing_adds = failing_adds

    async def group_add(self, group: str, channel: str) -> None:
        self.adds.append(group)
        await asyncio.sleep(0)
        if self.failing_adds and group != CONTROL_GROUP:
            self.failing_adds -= 1
            raise ConnectionError("Redis is down")
        await super().group_add(group, channel)


# --- layer faults -------------------------------------------------------------------------


class FlakyLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """An in-memory layer whose receive fails ``failures`` times, as Redis does in an outage."""

    def __init__(self, failures: int, error: Exception | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures
        self.error = error or ConnectionError("Redis is down")
        self.joins = 0
        self.down = False  # everything fails, as while Redis is stopped

    async def group_add(self, group: str, channel: str) -> None:
        self.joins += 1
        if self.down:
            raise ConnectionError("Redis is down")
        await super().group_add(group, channel)

    async def group_send(self, group: str, message: Any) -> None:
        if self.down:
            raise ConnectionError("Redis is down")
        await super().group_send(group, message)

    async def receive(self, channel: str) -> Any:
        if self.failures or self.down:
            self.failures = max(0, self.failures - 1)
            await asyncio.sleep(0)
            raise self.error
        return await super().receive(channel)


@pytest.fixture
def fast_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upkeep_module, "RETRY_FIRST_SECONDS", 0.001)
    monkeypatch.setattr(upkeep_module, "CANARY_SECONDS", 0.01)


async def until(condition: Any, seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition did not hold in time")


@pytest.mark.usefixtures("fast_hub")
async def test_the_hub_survives_layer_failures_logs_once_and_joins_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Hub, "_watches", lambda self: True)  # the canary notices first
    layer = FlakyLayer(failures=0)
    hub = hub_for(layer)
    member = Member("m")
    with caplog.at_level(logging.WARNING, "rohrpost"):
        await hub.ajoin("room", member)
        await settle()
        layer.down = True
        await until(lambda: hub._outage)
        await asyncio.sleep(0.05)  # many receives and joins fail meanwhile
        layer.down = False
        await until(lambda: not hub._outage)
        await layer.group_send(CONTROL_GROUP, control(action="close", group="room"))
        await layer.group_send("room", {"type": PUSH, "message": "after"})
        await until(lambda: bool(member.events and member.pushes))
    assert member.events == [control(action="close", group="room")]
    assert member.pushes == [("room", ["after"])]
    assert caplog.text.count("The channel layer failed") == 1
    assert caplog.text.count("answers again") == 1
    assert layer.joins >= 3  # the first joins, then every group again after the outage


@pytest.mark.usefixtures("fast_hub")
async def test_an_idle_redis_timeout_is_received_again_without_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import redis.exceptions

    layer = FlakyLayer(failures=3, error=redis.exceptions.TimeoutError("Timeout reading"))
    hub = hub_for(layer)
    member = Member("m")
    with caplog.at_level(logging.DEBUG, "rohrpost"):
        await hub.ajoin("room", member)
        await until(lambda: not layer.failures)
        await layer.group_send("room", {"type": PUSH, "message": "x"})
        await until(lambda: bool(member.pushes))
    assert "failed" not in caplog.text
    assert not hub._outage


@pytest.mark.usefixtures("fast_hub")
async def test_memberships_the_layer_lost_are_restored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As after Redis restarted empty: the canary stops coming back, the hub joins again."""
    monkeypatch.setattr(Hub, "_watches", lambda self: True)
    layer = FlakyLayer(failures=0)
    hub = hub_for(layer)
    member, own = Member("m"), Member("own")
    await hub.ajoin("room", member)
    hub.add("room", own, "own.channel!x")
    await until(lambda: hub._canary_seen >= 2)
    with caplog.at_level(logging.WARNING, "rohrpost"):
        layer.groups.clear()
        await until(lambda: "room" in layer.groups and CONTROL_GROUP in layer.groups)
    assert set(layer.groups["room"]) == {hub.served["room"].channel, "own.channel!x"}
    await layer.group_send("room", {"type": PUSH, "message": "x"})
    await until(lambda: bool(member.pushes))
    assert "had lost rohrpost's groups" in caplog.text


@pytest.mark.usefixtures("fast_hub")
async def test_a_failing_canary_is_an_outage(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Hub, "_watches", lambda self: True)

    class FailingSends(FlakyLayer):
        sends_failing = 2

        async def group_send(self, group: str, message: Any) -> None:
            if group.startswith("rohrpost.hub.") and self.sends_failing:
                self.sends_failing -= 1
                raise ConnectionError("Redis is down")
            await super().group_send(group, message)

    layer = FailingSends(failures=0)
    hub = hub_for(layer)
    with caplog.at_level(logging.WARNING, "rohrpost"):
        await hub.ajoin("room", Member("m"))
        await until(lambda: not layer.sends_failing and hub._canary_seen > 0)
        await until(lambda: not hub._outage)
    assert caplog.text.count("The channel layer failed") >= 1
    assert "answers again" in caplog.text


async def test_the_memberships_are_renewed_before_they_expire() -> None:
    layer = FlakyLayer(failures=0, group_expiry=0.04)
    hub = hub_for(layer)
    await hub.ajoin("room", Member("m"))
    hub.add("room", Member("own"), "own.channel!x")
    # Every 0.02 s (half the expiry): the control group, the served group, the own channel.
    await until(lambda: layer.joins >= 4 * 3)
    assert hub._rejoin_every() == 0.02


@pytest.mark.parametrize("expiry", [None, 0, True, "1"])
def test_no_renewal_without_a_usable_group_expiry(expiry: Any) -> None:
    class Layer:
        group_expiry = expiry

    hub = Hub.__new__(Hub)
    hub.layer = Layer()
    assert hub._rejoin_every() is None


@pytest.mark.usefixtures("fast_hub")
async def test_the_upkeep_keeps_going_when_a_renewal_fails() -> None:
    class FailingJoins(FlakyLayer):
        async def group_add(self, group: str, channel: str) -> None:
            self.joins += 1
            if 1 < self.joins < 4:
                raise ConnectionError("Redis is down")
            await InMemoryChannelLayer.group_add(self, group, channel)

    layer = FailingJoins(failures=0, group_expiry=0.02)
    member = Member("m")
    hub = hub_for(layer)
    hub.add("room", member)
    await until(lambda: layer.joins >= 5)
    await until(lambda: not hub._outage)
    await layer.group_send(CONTROL_GROUP, control(action="close", group="room"))
    await until(lambda: bool(member.events))


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
    await hub.ajoin("room", Member("m"))
    await settle()
    tasks = list(hub._tasks)
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=1)
    assert all(task.done() for task in tasks)


@pytest.mark.usefixtures("fast_hub")
async def test_receives_that_fail_on_a_served_group_are_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = FlakyLayer(failures=0, group_expiry=0)  # no renewals: only the fault rejoins
    hub = hub_for(layer)
    member = Member("m")
    await hub.ajoin("room", member)
    await settle()
    layer.failures = 3
    with caplog.at_level(logging.WARNING, "rohrpost"):
        await layer.group_send("room", {"type": PUSH, "message": "wake"})  # a receive returns
        await until(lambda: not layer.failures and not hub._outage)
        await layer.group_send("room", {"type": PUSH, "message": "after"})
        await until(lambda: ("room", ["after"]) in member.pushes)
    assert "The channel layer failed" in caplog.text


@pytest.mark.usefixtures("fast_hub")
async def test_a_hub_whose_first_layer_calls_fail_starts_once_the_layer_answers() -> None:
    class Unready(FlakyLayer):
        new_channel_failures = 1
        control_join_failures = 1

        async def new_channel(self, prefix: str = "specific.") -> str:
            if self.new_channel_failures:
                self.new_channel_failures -= 1
                raise ConnectionError("Redis is down")
            return await super().new_channel(prefix)  # type: ignore[no-any-return]

        async def group_add(self, group: str, channel: str) -> None:
            if group == CONTROL_GROUP and self.control_join_failures:
                self.control_join_failures -= 1
                raise ConnectionError("Redis is down")
            await super().group_add(group, channel)

    layer = Unready(failures=0)
    hub = hub_for(layer)
    member = Member("m")
    hub.add("room", member)
    await until(lambda: CONTROL_GROUP in layer.groups and not hub._outage)
    await layer.group_send(CONTROL_GROUP, control(action="close", group="room"))
    await until(lambda: bool(member.events))


async def test_rejoining_before_the_control_channel_exists_joins_the_groups_only() -> None:
    layer = InMemoryChannelLayer()
    hub = Hub(layer)  # not started: no control channel yet
    hub.groups["room"] = {Member("own"): "own.channel!x"}
    await hub._arejoin_all()
    assert set(layer.groups) == {"room"}


async def test_a_failed_leave_is_logged_and_left_to_expire(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailingLeaves(InMemoryChannelLayer):  # type: ignore[misc]
        async def group_discard(self, group: str, channel: str) -> None:
            raise ConnectionError("Redis is down")

    hub = hub_for(FailingLeaves())
    member = Member("m")
    await hub.ajoin("room", member)
    with caplog.at_level(logging.DEBUG, "rohrpost"):
        hub.discard("room", member)
        await settle()
    assert "Leaving group 'room' failed" in caplog.text
    assert hub.served == {}


@pytest.mark.usefixtures("fast_hub")
async def test_a_join_whose_channel_cannot_be_made_leaves_nothing_behind() -> None:
    class NoChannels(InMemoryChannelLayer):  # type: ignore[misc]
        failing = True

        async def new_channel(self, prefix: str = "specific.") -> str:
            if self.failing and asyncio.current_task() is not None and self.groups:
                raise ConnectionError("Redis is down")
            return await super().new_channel(prefix)  # type: ignore[no-any-return]

    layer = NoChannels()
    hub = hub_for(layer)
    hub.add("control-first", Member("x"))
    await until(lambda: CONTROL_GROUP in layer.groups)
    with pytest.raises(ConnectionError):
        await hub.ajoin("room", Member("m"))
    await settle()
    assert hub.served == {}
    assert "room" not in layer.groups


# --- history of the followed groups ----------------------------------------------------------


@pytest.mark.usefixtures("fast_hub")
async def test_the_history_of_followed_groups_is_kept_alive_and_started_again_after_a_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rohrpost import history

    store = history.MemoryHistory()
    monkeypatch.setattr(history, "_store", store)
    monkeypatch.setattr(upkeep_module, "_history_every", lambda: 0.01)
    layer = FlakyLayer(failures=0)
    hub = hub_for(layer)
    member = Member("m")
    await hub.ajoin("room", member)
    first = await store.aopen("room")
    hub.track_history("room")
    hub.track_history("nobody-here")  # no local member: not followed
    assert hub.history_groups == {"room"}
    touched = store._rings["room"].touched
    await until(lambda: store._rings["room"].touched > touched)  # renewed
    store._rings.clear()  # as after Redis restarted empty
    await until(lambda: "room" in store._rings)  # started again, in a new epoch
    assert store._rings["room"].epoch != first.epoch
    hub.discard("room", member)
    assert hub.history_groups == set()


@pytest.mark.usefixtures("fast_hub")
async def test_a_history_store_that_fails_is_a_fault(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from rohrpost import history

    class Broken(history.MemoryHistory):
        async def aopen(self, group: str) -> Any:
            raise ConnectionError("Redis is down")

    monkeypatch.setattr(history, "_store", Broken())
    monkeypatch.setattr(upkeep_module, "_history_every", lambda: 0.01)
    hub = hub_for(FlakyLayer(failures=0))
    await hub.ajoin("room", Member("m"))
    hub.track_history("room")
    with caplog.at_level(logging.WARNING, "rohrpost"):
        await until(lambda: hub._outage)
    assert "The channel layer failed" in caplog.text


def test_history_is_renewed_three_times_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    from rohrpost import history

    monkeypatch.setattr(history, "_store", history.MemoryHistory(ttl=300))
    assert upkeep_module._history_every() == 100
    monkeypatch.setattr(history, "_store", history.MemoryHistory(ttl=1))
    assert upkeep_module._history_every() == 1.0


async def test_a_member_that_leaves_while_its_membership_is_renewed_does_not_get_it_back() -> None:
    """The renewal re-adds a connection's own membership; taken out meanwhile, it is dropped."""

    class SlowJoins(InMemoryChannelLayer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.joining = asyncio.Event()
            self.release = asyncio.Event()

        async def group_add(self, group: str, channel: str) -> None:
            if group == "room":
                self.joining.set()
                await self.release.wait()
            await super().group_add(group, channel)

    layer = SlowJoins()
    hub = Hub(layer)
    member = Member("own")
    hub.groups["room"] = {member: "own.channel!x"}
    renewal = asyncio.ensure_future(hub._arejoin_all())
    await asyncio.wait_for(layer.joining.wait(), 2)
    hub.discard("room", member)  # expelled while the renewal waits on the layer
    layer.release.set()
    await asyncio.wait_for(renewal, 2)
    assert "room" not in layer.groups
