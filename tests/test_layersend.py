"""rohrpost.layersend: a batch of group events costs a few round trips, and arrives as group_send's.

Every test talks to a real Redis: the shared one under a prefix of its own,
or a ``redis-server`` of the test's own where the test needs a server that
has never seen the script.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from rohrpost import layersend
from tests.services import RedisServer


@pytest.fixture(autouse=True)
def _fresh_choices() -> Iterator[None]:
    layersend._senders.clear()
    yield
    layersend._senders.clear()


def _events(count: int, group: str = "g") -> list[dict[str, Any]]:
    return [
        {"type": "rohrpost.message", "message": f"push {index}", "group": group}
        for index in range(count)
    ]


@pytest.fixture
async def core_layer(redis_url: str) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[redis_url], prefix=f"test-layersend-{uuid.uuid4().hex}")
    yield layer
    await layer.flush()


async def _receive_all(layer: Any, channel: str, count: int) -> list[dict[str, Any]]:
    return [await layer.receive(channel) for _ in range(count)]


async def test_every_member_gets_each_event_in_order_as_from_group_send(
    core_layer: RedisChannelLayer,
) -> None:
    plain = "plain-reader"
    specific = [await core_layer.new_channel(), await core_layer.new_channel()]
    for channel in [plain, *specific]:
        await core_layer.group_add("g", channel)
    events = _events(30)

    assert layersend.sender_for(core_layer) is layersend._acore_send
    await layersend.agroups_send(core_layer, {"g": events[:20]})
    await layersend.agroups_send(core_layer, {"g": events[20:]})  # a second batch follows

    for channel in [plain, *specific]:
        assert await _receive_all(core_layer, channel, 30) == events


async def test_groups_sharing_channels_each_get_their_events_in_order(
    core_layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Channels of one process share a Redis key; many groups go out in a few script calls."""
    monkeypatch.setattr(layersend, "MESSAGES_PER_CALL", 4)  # several calls per host
    channels = [await core_layer.new_channel() for _ in range(3)]
    groups = [f"group-{index}" for index in range(5)]
    for group in groups:
        for channel in channels:
            await core_layer.group_add(group, channel)
    await core_layer.group_add("lonely", "reader")
    events = {group: _events(4, group) for group in [*groups, "empty", "lonely"]}

    await layersend.agroups_send(core_layer, events)

    for channel in channels:
        received = await _receive_all(core_layer, channel, 20)
        for group in groups:
            assert [event for event in received if event["group"] == group] == events[group]
    assert await _receive_all(core_layer, "reader", 4) == events["lonely"]


async def test_a_batch_right_after_another_is_received_after_it(
    core_layer: RedisChannelLayer,
) -> None:
    """Scores only grow, even when the clock has not moved between two batches."""
    await core_layer.group_add("g", "reader")
    events = _events(40)
    for start in range(0, 40, 2):
        await layersend.agroups_send(core_layer, {"g": events[start : start + 2]})
    assert await _receive_all(core_layer, "reader", 40) == events


async def test_a_full_channel_takes_what_fits_and_the_rest_is_dropped_and_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    layer = RedisChannelLayer(
        hosts=[redis_url], prefix=f"test-layersend-{uuid.uuid4().hex}", capacity=3
    )
    try:
        await layer.group_add("g", "small")
        await layer.group_add("g", "roomy")
        await layer.send("roomy", {"type": "earlier"})
        with caplog.at_level(logging.INFO, logger="rohrpost"):
            await layersend.agroups_send(layer, {"g": _events(5)})
        assert await _receive_all(layer, "small", 3) == _events(3)
        assert await _receive_all(layer, "roomy", 3) == [{"type": "earlier"}, *_events(2)]
        assert "5 of 10 messages to groups g dropped" in caplog.text
        connection = layer.connection(0)
        assert await connection.zcard(layer.prefix + "small") == 0  # nothing more came
    finally:
        await layer.flush()


async def test_expired_members_and_messages_are_pruned_as_group_send_does(
    core_layer: RedisChannelLayer,
) -> None:
    connection = core_layer.connection(0)
    await core_layer.group_add("g", "current")
    long_ago = int(time.time()) - core_layer.group_expiry - 10
    await connection.zadd(core_layer._group_key("g"), {"gone": long_ago})
    await connection.zadd(core_layer.prefix + "current", {b"stale message": 1})

    await layersend.agroups_send(core_layer, {"g": _events(2)})

    assert await connection.zrange(core_layer._group_key("g"), 0, -1) == [b"current"]
    assert not await connection.exists(core_layer.prefix + "gone")
    assert 0 < await connection.ttl(core_layer.prefix + "current") <= core_layer.expiry
    assert await _receive_all(core_layer, "current", 2) == _events(2)
    assert not await connection.exists(core_layer.prefix + "current")  # the stale one is gone


async def test_an_empty_group_costs_one_round_trip_and_sends_nothing(
    core_layer: RedisChannelLayer,
) -> None:
    await layersend.agroups_send(core_layer, {"nobody": _events(3)})
    keys = await core_layer.connection(0).keys(core_layer.prefix + "*")
    assert keys == []


async def test_members_spread_over_two_hosts_each_get_every_event(redis_url: str) -> None:
    """Each channel's messages land on its own host, as group_send puts them."""
    base = redis_url.rsplit("/", 1)[0]
    hosts = [f"{base}/13", f"{base}/14"]
    layer = RedisChannelLayer(hosts=hosts, prefix=f"test-layersend-{uuid.uuid4().hex}")
    try:
        names = [f"reader-{index}" for index in range(200)]
        channels = [name for name in names if layer.consistent_hash(name) == 0][:3]
        channels += [name for name in names if layer.consistent_hash(name) == 1][:3]
        assert len(channels) == 6
        for channel in channels:
            await layer.group_add("g", channel)
        await layersend.agroups_send(layer, {"g": _events(4)})
        for channel in channels:
            stored = await layer.connection(layer.consistent_hash(channel)).zrange(
                layer.prefix + channel, 0, -1
            )
            received = [layer.deserialize(message) for message in stored]
            assert received == [{**event, "__asgi_channel__": [channel]} for event in _events(4)]
    finally:
        await layer.flush()


async def test_encrypted_layers_get_messages_they_can_decrypt(redis_url: str) -> None:
    layer = RedisChannelLayer(
        hosts=[redis_url],
        prefix=f"test-layersend-{uuid.uuid4().hex}",
        symmetric_encryption_keys=["a key of the test's own"],
    )
    try:
        await layer.group_add("g", "reader")
        await layersend.agroups_send(layer, {"g": _events(3)})
        assert await _receive_all(layer, "reader", 3) == _events(3)
        stored = await layer.connection(0).zrange(layer.prefix + "reader", 0, -1)
        assert stored == []  # all received
    finally:
        await layer.flush()


async def test_a_redis_that_never_saw_the_script_is_sent_it_once(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    try:
        layer = RedisChannelLayer(hosts=[server.url])
        await layer.group_add("g", "reader")
        await layersend.agroups_send(layer, {"g": _events(2)})
        await layersend.agroups_send(layer, {"g": _events(2)})
        assert await _receive_all(layer, "reader", 4) == _events(2) * 2
        client = server.client()
        assert client.script_exists(layersend._ADD_SCRIPT_SHA1) == [True]
        client.close()
        await layer.flush()
    finally:
        server.stop()


async def test_a_batch_to_many_groups_runs_one_script_and_no_group_send(tmp_path: Path) -> None:
    """What makes it cheap: no per-event commands, one script call for every group."""
    server = RedisServer(tmp_path)
    try:
        layer = RedisChannelLayer(hosts=[server.url])
        groups = [f"group-{index}" for index in range(10)]
        for group in groups:
            await layer.group_add(group, "reader")
        client = server.client()
        client.config_resetstat()
        await layersend.agroups_send(layer, {group: _events(5, group) for group in groups})
        stats = client.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in stats.items()}
        assert calls["zrange"] == 10  # one read per group, all in one pipeline
        assert calls["evalsha"] == 1
        assert calls.get("eval", 0) == 1  # the first call on this server loads the script
        assert calls["zadd"] == 50
        client.close()
        assert len(await _receive_all(layer, "reader", 50)) == 50
        await layer.flush()
    finally:
        server.stop()


async def test_a_second_batch_to_unchanged_groups_is_one_script_call(
    core_layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The members last seen are checked and the events added in one step: no read first."""
    await core_layer.group_add("g", "reader")
    await layersend.agroups_send(core_layer, {"g": _events(2)})
    reads: list[list[str]] = []
    read_members = layersend._aread_members

    async def counted(layer: Any, groups: list[str]) -> Any:
        reads.append(groups)
        return await read_members(layer, groups)

    monkeypatch.setattr(layersend, "_aread_members", counted)
    await layersend.agroups_send(core_layer, {"g": _events(3)})
    await layersend.agroups_send(core_layer, {"g": _events(1)})
    assert reads == []
    assert await _receive_all(core_layer, "reader", 6) == _events(2) + _events(3) + _events(1)


async def test_members_that_joined_or_left_since_the_last_batch_are_served_right(
    core_layer: RedisChannelLayer,
) -> None:
    await core_layer.group_add("g", "first")
    await core_layer.group_add("empty", "nobody-yet")
    await core_layer.group_discard("empty", "nobody-yet")
    await layersend.agroups_send(core_layer, {"g": _events(1), "empty": _events(1)})
    await core_layer.group_add("g", "joined")
    await core_layer.group_add("empty", "joined")
    await core_layer.group_discard("g", "first")

    await layersend.agroups_send(core_layer, {"g": _events(2), "empty": _events(2, "empty")})

    assert await _receive_all(core_layer, "first", 1) == _events(1)
    received = await _receive_all(core_layer, "joined", 4)
    assert [event for event in received if event["group"] == "g"] == _events(2)
    assert [event for event in received if event["group"] == "empty"] == _events(2, "empty")
    connection = core_layer.connection(0)
    assert await connection.zcard(core_layer.prefix + "first") == 0  # it left: nothing more


async def test_a_group_last_seen_empty_is_checked_and_its_first_member_served(
    core_layer: RedisChannelLayer,
) -> None:
    await layersend.agroups_send(core_layer, {"g": _events(1)})  # nobody in it yet
    await layersend.agroups_send(core_layer, {"g": _events(1)})  # still nobody: checked
    await core_layer.group_add("g", "reader")
    await layersend.agroups_send(core_layer, {"g": _events(2)})
    assert await _receive_all(core_layer, "reader", 2) == _events(2)


async def test_groups_that_keep_changing_are_read_and_then_sent_to(
    core_layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member joins during each checked attempt: after two, the groups are read first."""
    await core_layer.group_add("g", "reader-0")
    await layersend.agroups_send(core_layer, {"g": _events(1)})
    run_script = layersend._arun_script
    joined: list[str] = []

    async def racing(connection: Any, keys: list[bytes], args: list[Any]) -> Any:
        if args[3]:  # a checked call: another process joins the group meanwhile
            joined.append(f"reader-{len(joined) + 1}")
            await core_layer.group_add("g", joined[-1])
        return await run_script(connection, keys, args)

    monkeypatch.setattr(layersend, "_arun_script", racing)
    await layersend.agroups_send(core_layer, {"g": _events(2)})
    assert joined == ["reader-1", "reader-2"]
    for channel in ["reader-0", *joined]:
        expected = _events(1) + _events(2) if channel == "reader-0" else _events(2)
        assert await _receive_all(core_layer, channel, len(expected)) == expected


async def test_a_checked_send_that_fails_forgets_the_members_it_relied_on(
    core_layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await core_layer.group_add("g", "reader")
    await layersend.agroups_send(core_layer, {"g": _events(1)})
    run_script = layersend._arun_script

    async def failing(connection: Any, keys: list[bytes], args: list[Any]) -> Any:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(layersend, "_arun_script", failing)
    await layersend.agroups_send(core_layer, {"g": _events(1)})
    assert "Publishing 1 frames to group 'g' failed" in caplog.text
    assert "g" not in layersend._known[core_layer]
    monkeypatch.setattr(layersend, "_arun_script", run_script)
    await layersend.agroups_send(core_layer, {"g": _events(2)})
    assert await _receive_all(core_layer, "reader", 3) == _events(1) + _events(2)


async def test_a_batch_too_big_for_one_checked_call_is_read_then_sent_in_several(
    core_layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await core_layer.group_add("g", "reader")
    await layersend.agroups_send(core_layer, {"g": _events(1)})
    monkeypatch.setattr(layersend, "MESSAGES_PER_CALL", 3)
    await layersend.agroups_send(core_layer, {"g": _events(10)})
    assert await _receive_all(core_layer, "reader", 11) == _events(1) + _events(10)


async def test_the_members_remembered_are_bounded(
    core_layer: RedisChannelLayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layersend, "KNOWN_GROUPS_LIMIT", 3)
    await layersend.agroups_send(core_layer, {"a": _events(1), "b": _events(1)})
    assert set(layersend._known[core_layer]) == {"a", "b"}
    await layersend.agroups_send(core_layer, {"c": _events(1), "d": _events(1)})
    assert set(layersend._known[core_layer]) == {"c", "d"}


async def test_only_refused_group_names_send_nothing_and_are_logged(
    core_layer: RedisChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    await layersend.agroups_send(core_layer, {"bad name!": _events(2)})
    (record,) = caplog.records
    assert record.getMessage() == "Publishing 2 frames to group 'bad name!' failed"


async def test_pubsub_layers_publish_a_batch_in_one_pipeline(redis_url: str) -> None:
    layer = RedisPubSubChannelLayer(hosts=[redis_url], prefix=f"test-{uuid.uuid4().hex}")
    try:
        assert layersend.sender_for(layer) is layersend._apubsub_send
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        await layer.group_add("h", channel)
        await layersend.agroups_send(layer, {"g": _events(25), "h": _events(2, "h")})
        assert await _receive_all(layer, channel, 27) == _events(25) + _events(2, "h")
    finally:
        await layer.flush()


async def test_other_layers_get_one_group_send_per_event_and_nothing_for_none() -> None:
    layer = InMemoryChannelLayer()
    await layer.group_add("g", "reader")
    await layersend.agroups_send(layer, {"g": _events(1)})
    await layersend.agroups_send(layer, {})
    await layersend.agroups_send(layer, {"g": []})
    assert await _receive_all(layer, "reader", 1) == _events(1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive("reader"), 0.1)


class _OwnGroupSend(RedisChannelLayer):
    """A project's layer with its own group_send: its way is kept, event by event."""

    sent: list[dict[str, Any]]

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append(message)
        await super().group_send(group, message)


class _OwnPubSubGroupSend(RedisPubSubChannelLayer):
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        raise NotImplementedError  # never called: only the choice is checked


async def test_layers_with_their_own_group_send_and_other_layers_send_event_by_event(
    redis_url: str,
) -> None:
    layer = _OwnGroupSend(hosts=[redis_url], prefix=f"test-layersend-{uuid.uuid4().hex}")
    layer.sent = []
    try:
        await layer.group_add("g", "reader")
        await layersend.agroups_send(layer, {"g": _events(3)})
        assert layer.sent == _events(3)
        assert await _receive_all(layer, "reader", 3) == _events(3)
    finally:
        await layer.flush()
    assert layersend.sender_for(InMemoryChannelLayer()) is layersend._aone_by_one
    assert layersend.sender_for(_OwnPubSubGroupSend(hosts=[redis_url])) is layersend._aone_by_one


def test_without_channels_redis_every_layer_sends_event_by_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "channels_redis.core", None)
    assert layersend.sender_for(InMemoryChannelLayer()) is layersend._aone_by_one


def test_a_redis_layer_missing_what_the_shortcut_relies_on_sends_event_by_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(RedisChannelLayer, "_map_channel_keys_to_connection")
    assert layersend.sender_for(RedisChannelLayer()) is layersend._aone_by_one


def test_a_layer_that_fails_is_logged_with_what_was_lost(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1/0"])
    events = {"g": _events(2), "h": [{"type": "rohrpost.message", "messages": ["a", "b"]}]}
    asyncio.run(layersend.agroups_send(layer, events))
    (record,) = caplog.records
    assert record.getMessage() == "Publishing 4 frames to 2 groups failed"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], redis.ConnectionError)


async def test_a_group_name_the_layer_refuses_costs_only_that_group(
    core_layer: RedisChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    await core_layer.group_add("g", "reader")
    await layersend.agroups_send(core_layer, {"bad name!": _events(1), "g": _events(2)})
    assert await _receive_all(core_layer, "reader", 2) == _events(2)
    (record,) = caplog.records
    assert record.getMessage() == "Publishing 1 frames to group 'bad name!' failed"


async def test_on_other_layers_a_failing_group_costs_only_that_group(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky(InMemoryChannelLayer):
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            if group == "bad":
                raise ConnectionError("down")
            await super().group_send(group, message)

    layer = Flaky()
    await layer.group_add("good", "reader")
    await layersend.agroups_send(layer, {"bad": _events(2), "good": _events(1, "good")})
    assert await _receive_all(layer, "reader", 1) == _events(1, "good")
    (record,) = caplog.records
    assert record.getMessage() == "Publishing 2 frames to group 'bad' failed"
