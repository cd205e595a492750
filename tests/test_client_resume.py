"""rohrpost.client and groups with history, against the demo (whose boards keep history).

The client keeps the last position per group, resubscribes ``since`` it after
a reconnect (the server replays what was missed), drops pushes it has seen,
and queues a ``reset`` push when the missed pushes are gone: after a server
restart (the in-memory history went with it), or when a push of a new epoch
comes on a live connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from rohrpost.client import Client, Push
from tests.demo_server import DemoServer, restarted_demo, run_demo
from tests.test_client import FAST, IO_TIMEOUT, CuttableProxy, add_task, next_push, until

pytestmark = pytest.mark.e2e

PUBLIC = {"type": "board", "id": 1}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with run_demo(tmp_path_factory.mktemp("resume")) as server:
        yield server


@pytest.fixture
def own_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """A server of the test's own, for a test that restarts it."""
    with run_demo(tmp_path_factory.mktemp("restart")) as server:
        yield server


async def quiet(client: Client, seconds: float = 0.2) -> list[Push]:
    """The pushes that come within ``seconds`` (none are expected)."""
    pushes: list[Push] = []
    try:
        async with asyncio.timeout(seconds):
            async for push in client.pushes():
                pushes.append(push)
    except TimeoutError:
        pass
    return pushes


async def test_subscribe_data_has_the_snapshot_and_position_pushes_advance_it(
    demo: DemoServer,
) -> None:
    async with Client(demo.ws_url) as client:
        data = await client.subscribe_data(PUBLIC)
        assert data["group"] == "board-1"
        assert isinstance(data["snapshot"]["tasks"], list)
        assert client.position("board-1") == data["position"]
        task = await add_task(demo, "positioned")
        push = await next_push(client)
        assert push.object == task
        assert push.position == {
            "group": "board-1",
            "epoch": data["position"]["epoch"],
            "offset": data["position"]["offset"] + 1,
        }
        assert client.position("board-1") == {
            "epoch": data["position"]["epoch"],
            "offset": data["position"]["offset"] + 1,
        }
        assert client.position("board-2") is None


async def test_after_a_cut_the_client_gets_exactly_the_missed_pushes_then_live_ones(
    demo: DemoServer,
) -> None:
    async with CuttableProxy(demo.port) as proxy, Client(proxy.url, **FAST) as client:
        await client.subscribe(PUBLIC)
        proxy.refuse = True
        proxy.cut()
        await until(lambda: not client.connected)
        titles = [f"missed {number}" for number in range(20)]
        async with Client(demo.ws_url) as editor:
            for title in titles:
                await editor.call("task.add", {"board": 1, "title": title})
            proxy.refuse = False
            got = [await next_push(client) for _ in titles]
            await editor.call("task.add", {"board": 1, "title": "live"})
            got.append(await next_push(client))
        assert [(push.type, push.object["title"]) for push in got] == [
            ("subscription-update", title) for title in [*titles, "live"]
        ]
        offsets = [push.position["offset"] for push in got]
        assert offsets == list(range(offsets[0], offsets[0] + len(got)))
        assert await quiet(client) == []


async def test_a_push_seen_before_is_dropped(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        await client.subscribe(PUBLIC)
        await add_task(demo, "once")
        push = await next_push(client)
        frame = push.as_message()
        client._dispatch(json.dumps(frame))  # the same push again, as an overlapping replay
        offset = frame["position"]["offset"]
        older = {**frame, "position": {**frame["position"], "offset": offset - 1}}
        client._dispatch(json.dumps(older))
        assert await quiet(client) == []
        newer = {**frame, "position": {**frame["position"], "offset": offset + 3}}
        client._dispatch(json.dumps(newer))
        assert (await next_push(client)).position == newer["position"]


async def test_after_a_server_restart_the_client_gets_a_reset_with_a_fresh_snapshot(
    own_demo: DemoServer,
) -> None:
    async with Client(own_demo.ws_url, **FAST) as client:
        before = await client.subscribe_data(PUBLIC)
        with restarted_demo(own_demo) as again:
            reset = await next_push(client, timeout=IO_TIMEOUT * 3)
            assert reset.type == "reset"
            assert reset.group == "board-1"
            assert isinstance(reset.snapshot["tasks"], list)
            assert reset.data["position"]["epoch"] != before["position"]["epoch"]
            assert client.position("board-1") == reset.data["position"]
            assert client.subscriptions == {"board-1": PUBLIC}
            task = await add_task(again, "after the restart")
            push = await next_push(client)
            assert push.object == task


async def test_a_push_of_a_new_epoch_resets_a_live_group(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        data = await client.subscribe_data(PUBLIC)
        stranger: dict[str, Any] = {
            "id": 1,
            "type": "subscription-update",
            "data": {"type": "update", "group": "board-1", "object": {"id": 1}},
            "position": {"group": "board-1", "epoch": "another", "offset": 1},
        }
        client._dispatch(json.dumps(stranger))
        assert (await next_push(client)).position == stranger["position"]
        reset = await next_push(client)
        assert reset.type == "reset"
        assert reset.group == "board-1"
        assert isinstance(reset.snapshot["tasks"], list)
        assert reset.data["position"]["epoch"] == data["position"]["epoch"]
        assert client.position("board-1") == reset.data["position"]


async def test_an_interrupted_reset_is_finished_by_the_next_connection(demo: DemoServer) -> None:
    async with CuttableProxy(demo.port) as proxy, Client(proxy.url, **FAST) as client:
        await client.subscribe(PUBLIC)
        proxy.blackhole()  # the reset's subscribe gets no answer
        stranger = {
            "id": 1,
            "type": "subscription-update",
            "data": {"type": "update", "group": "board-1", "object": {"id": 1}},
            "position": {"group": "board-1", "epoch": "another", "offset": 1},
        }
        client._dispatch(json.dumps(stranger))
        await next_push(client)
        proxy.cut()
        reset = await next_push(client)
        assert reset.type == "reset"
        assert isinstance(reset.snapshot["tasks"], list)


async def test_unsubscribe_forgets_the_position(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        await client.subscribe(PUBLIC)
        assert client.position("board-1") is not None
        await client.unsubscribe(PUBLIC)
        assert client.position("board-1") is None


async def test_a_push_without_a_position_in_a_group_with_history_resets_it(
    demo: DemoServer,
) -> None:
    async with Client(demo.ws_url) as client:
        await client.subscribe(PUBLIC)
        # What a server sends after Redis restarted empty: the group is no longer tracked.
        unrecorded = {
            "id": 1,
            "type": "subscription-update",
            "data": {"type": "update", "group": "board-1", "object": {"id": 1}},
        }
        client._dispatch(json.dumps(unrecorded))
        client._dispatch(json.dumps({**unrecorded, "id": 2}))
        assert [(await next_push(client)).id for _ in range(2)] == [1, 2]
        reset = await next_push(client)
        assert reset.type == "reset"
        assert client.position("board-1") == reset.data["position"]
        assert await quiet(client) == []  # one fresh subscribe for both
