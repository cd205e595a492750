"""Tests for rohrpost.history: positions, replay or reset, in memory and in Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rohrpost import history
from rohrpost.history import (
    HistoryStore,
    MemoryHistory,
    Position,
    RedisHistory,
    positioned,
)
from tests.services import RedisServer


def push(n: int) -> str:
    return json.dumps({"id": n, "type": "subscription-update", "data": {"n": n}})


def offsets(frames: list[str]) -> list[int]:
    return [json.loads(frame)["position"]["offset"] for frame in frames]


def test_a_position_is_spliced_into_an_object_frame_and_only_there() -> None:
    frame = positioned("g", '{"id":1,"type":"x"}\n', "e", 7)
    assert json.loads(frame) == {
        "id": 1,
        "type": "x",
        "position": {"group": "g", "epoch": "e", "offset": 7},
    }
    for text in ("[1, 2]", '"text"', "{}"):
        assert positioned("g", text, "e", 1) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"epoch": "abc", "offset": 3}, Position("abc", 3)),
        ({"epoch": "abc", "offset": 0}, Position("abc", 0)),
        ({"epoch": "", "offset": 3}, None),
        ({"epoch": "x" * 65, "offset": 3}, None),
        ({"epoch": "abc", "offset": -1}, None),
        ({"epoch": "abc", "offset": True}, None),
        ({"epoch": "abc", "offset": "3"}, None),
        ({"epoch": 5, "offset": 3}, None),
        ("abc:3", None),
    ],
)
def test_a_clients_since_is_read_strictly(value: Any, expected: Position | None) -> None:
    assert Position.from_wire(value) == expected


async def _redis_store(url: str) -> AsyncIterator[RedisHistory]:
    store = RedisHistory(url, size=5, ttl=60, prefix=f"rohrpost-test-{uuid.uuid4().hex}")
    yield store
    client = store._client()
    keys = await client.keys(f"{store.prefix}:*")
    if keys:
        await client.delete(*keys)
    await store.aclose()


@pytest.fixture
async def redis_history(redis_url: str) -> AsyncIterator[RedisHistory]:
    async for store in _redis_store(redis_url):
        yield store


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[HistoryStore]:
    if request.param == "memory":
        yield MemoryHistory(size=5, ttl=60)
        return
    async for redis_store in _redis_store(request.getfixturevalue("redis_url")):
        yield redis_store


async def test_an_untracked_group_records_nothing(store: HistoryStore) -> None:
    assert await store.aappend("g", [push(1)]) is None
    assert await store.areplay("g", Position("e", 0)) is None


async def test_pushes_get_consecutive_offsets_and_a_resume_gets_what_it_missed(
    store: HistoryStore,
) -> None:
    start = await store.aopen("g")
    assert start.offset == 0
    recorded = await store.aappend("g", [push(1), push(2)])
    assert recorded is not None
    frames, first = recorded
    assert first == Position(start.epoch, 1)
    assert offsets(frames) == [1, 2]
    assert json.loads(frames[0])["position"]["epoch"] == start.epoch
    third = await store.aappend("g", [push(3)])
    assert third is not None
    assert third[1] == Position(start.epoch, 3)
    replay = await store.areplay("g", Position(start.epoch, 1))
    assert replay is not None
    assert offsets(replay.frames) == [2, 3]
    assert [json.loads(f)["id"] for f in replay.frames] == [2, 3]
    assert replay.position == Position(start.epoch, 3)
    # Up to date: nothing to replay, no reset.
    current = await store.areplay("g", Position(start.epoch, 3))
    assert current is not None
    assert current.frames == []
    # Opening again keeps the epoch and the offset.
    assert await store.aopen("g") == Position(start.epoch, 3)


async def test_a_resume_that_cannot_be_served_is_a_reset(store: HistoryStore) -> None:
    start = await store.aopen("g")
    # 300 pushes, 5 kept (Redis trims a stream by whole nodes of 100: a few more).
    await store.aappend("g", [push(n) for n in range(1, 301)])
    assert await store.areplay("g", Position("another-epoch", 297)) is None
    assert await store.areplay("g", Position(start.epoch, 301)) is None  # ahead of the server
    assert await store.areplay("g", Position(start.epoch, 1)) is None  # 2 and on are gone
    replay = await store.areplay("g", Position(start.epoch, 295))
    assert replay is not None
    assert offsets(replay.frames) == [296, 297, 298, 299, 300]


async def test_memory_history_expires_after_its_ttl() -> None:
    store = MemoryHistory(size=5, ttl=0.05)
    start = await store.aopen("g")
    await store.aappend("g", [push(1)])
    await asyncio.sleep(0.1)
    assert await store.aappend("g", [push(2)]) is None  # expired: not tracked any more
    assert await store.areplay("g", Position(start.epoch, 0)) is None
    assert (await store.aopen("g")).epoch != start.epoch


async def test_redis_history_is_shared_and_a_lost_redis_is_a_new_epoch(
    redis_history: RedisHistory,
) -> None:
    other = RedisHistory(redis_history.url, size=5, ttl=60, prefix=redis_history.prefix)
    try:
        start = await redis_history.aopen("g")
        await other.aappend("g", [push(1)])
        await redis_history.aappend("g", [push(2)])
        replay = await other.areplay("g", Position(start.epoch, 0))
        assert replay is not None
        assert offsets(replay.frames) == [1, 2]
        # As after a restart that came back empty: the keys are gone.
        client = redis_history._client()
        await client.delete(*redis_history._keys("g"))
        assert await other.aappend("g", [push(3)]) is None
        assert await other.areplay("g", Position(start.epoch, 2)) is None
        assert (await other.aopen("g")).epoch != start.epoch
    finally:
        await other.aclose()


async def test_recording_costs_nothing_while_history_is_off(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.ROHRPOST = {}
    monkeypatch.setattr(history, "_store", None)
    assert await history.arecord("g", [push(1)]) == ([push(1)], None)
    assert history._store is None  # not even made


async def test_a_failing_store_is_logged_and_the_pushes_go_out_unpositioned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    class Broken(MemoryHistory):
        async def aappend(self, group: str, texts: Any) -> Any:
            raise ConnectionError("Redis is down")

    settings.ROHRPOST = {"HISTORY": {"ENABLED": True}}
    monkeypatch.setattr(history, "_store", Broken())
    assert await history.arecord("g", [push(1)]) == ([push(1)], None)
    assert "Recording 1 pushes to 'g' in the history failed" in caplog.text
    monkeypatch.setattr(history, "_store", MemoryHistory())
    assert await history.arecord("g", [push(1)]) == ([push(1)], None)  # not tracked
    assert await history.arecord("g", []) == ([], None)


def test_the_store_follows_the_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "_store", None)
    settings.ROHRPOST = {"HISTORY": {"SIZE": 7, "TTL": 9}}
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    memory = history.store()
    assert isinstance(memory, MemoryHistory)
    assert (memory.size, memory.ttl) == (7, 9)
    assert history.store() is memory
    cases = [
        ({"hosts": ["redis://r:1/2"]}, "redis://r:1/2"),
        ({"hosts": [{"address": "redis://r:1/3", "socket_timeout": None}]}, "redis://r:1/3"),
        ({"hosts": [("r", 6380)]}, "redis://r:6380"),
        ({}, "redis://localhost:6379"),
    ]
    for config, url in cases:
        history.reset_store()
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": config}
        }
        made = history.store()
        assert isinstance(made, RedisHistory)
        assert made.url == url
    history.reset_store()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"sentinels": [("s", 26379)], "master_name": "m"}]},
        }
    }
    assert isinstance(history.store(), MemoryHistory)  # name REDIS_URL for a Sentinel
    history.reset_store()
    settings.ROHRPOST = {"HISTORY": {"REDIS_URL": "redis://h:1/0"}}
    assert isinstance(history.store(), RedisHistory)
    history.reset_store()


# --- any interleaving: the full sequence, or an explicit reset ------------------------------

Step = tuple[str, int]  # ("publish", n) | ("leave", client) | ("resume", client)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.integers(1, 4)),
            st.tuples(st.sampled_from(["leave", "resume"]), st.integers(0, 2)),
        ),
        max_size=40,
    )
)
def test_every_client_sees_every_push_once_in_order_or_is_told_to_reset(
    steps: list[Step],
) -> None:
    asyncio.run(_interleave(steps))


async def _interleave(steps: list[Step]) -> None:
    store = MemoryHistory(size=6, ttl=3600)
    start = await store.aopen("g")
    published = 0
    clients = [
        {"connected": True, "seen": [], "position": start, "reset_at": None} for _ in range(3)
    ]
    for action, value in steps:
        if action == "publish":
            recorded = await store.aappend("g", [push(published + i + 1) for i in range(value)])
            assert recorded is not None
            published += value
            for client in clients:
                if client["connected"]:
                    for frame in recorded[0]:
                        _apply(client, frame)
        elif action == "leave":
            clients[value]["connected"] = False
        elif not clients[value]["connected"]:
            client = clients[value]
            client["connected"] = True
            replay = await store.areplay("g", client["position"])
            if replay is None:
                # Told to reset: start again from the position now (a snapshot).
                client["reset_at"] = published
                client["seen"] = []
                client["position"] = await store.aopen("g")
            else:
                for frame in replay.frames:
                    _apply(client, frame)
                client["position"] = replay.position
    for client in clients:
        first = 1 if client["reset_at"] is None else client["reset_at"] + 1
        if client["connected"]:
            assert client["seen"] == list(range(first, published + 1))
        else:  # left: everything up to where it left, in order, without a gap
            assert client["seen"] == list(range(first, first + len(client["seen"])))


def _apply(client: dict[str, Any], frame: str) -> None:
    decoded = json.loads(frame)
    client["seen"].append(decoded["id"])
    where = decoded["position"]
    client["position"] = Position(where["epoch"], where["offset"])


def test_a_redis_store_keeps_one_client_per_event_loop(redis_url: str) -> None:
    store = RedisHistory(redis_url, prefix=f"rohrpost-test-{uuid.uuid4().hex}")
    gone = asyncio.new_event_loop()
    gone.close()
    store._clients[gone] = object()  # the client of a loop that has ended

    async def use() -> None:
        await store.aopen("g")
        assert list(store._clients) == [asyncio.get_running_loop()]  # the stale one dropped
        await store._client().delete(*store._keys("g"))
        await store.aclose()
        await store.aclose()  # closed already: nothing to do

    asyncio.run(use())
    assert store._clients == {}


async def test_many_groups_are_recorded_together_and_only_tracked_ones_get_positions(
    store: HistoryStore,
) -> None:
    g, h = await store.aopen("g"), await store.aopen("h")
    recorded = await store.aappend_many(
        {"g": [push(1), push(2)], "untracked": [push(3)], "h": [push(4)], "empty": []}
    )
    assert set(recorded) == {"g", "h"}
    assert recorded["g"][1] == Position(g.epoch, 1)
    assert offsets(recorded["g"][0]) == [1, 2]
    assert recorded["h"][1] == Position(h.epoch, 1)


async def test_a_redis_that_never_saw_the_append_script_is_sent_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    store = RedisHistory(server.url, size=5, ttl=60)
    try:
        start = await store.aopen("g")
        assert await store.aappend("g", [push(1)]) is not None
        assert await store.aappend("g", [push(2)]) is not None
        replay = await store.areplay("g", start)
        assert replay is not None
        assert offsets(replay.frames) == [1, 2]
    finally:
        await store.aclose()
        server.stop()


async def test_a_failing_store_leaves_every_group_unpositioned_and_is_logged(
    settings: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ROHRPOST = {"HISTORY": {"ENABLED": True}}

    class Broken(MemoryHistory):
        async def aappend(self, group: str, texts: Sequence[str]) -> None:
            raise ConnectionError("down")

    monkeypatch.setattr(history, "_store", Broken())
    recorded = await history.arecord_many({"g": [push(1)], "h": [push(2), push(3)]})
    assert recorded == {"g": ([push(1)], None), "h": ([push(2), push(3)], None)}
    (record,) = [r for r in caplog.records if r.name == "rohrpost"]
    assert record.getMessage() == "Recording 3 pushes to 2 groups in the history failed"
