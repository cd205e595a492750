"""rohrpost.client and groups with history, against the demo (whose boards keep history).

The client keeps the last position per group, resubscribes ``since`` it after
a reconnect (the server replays what was missed), drops pushes it has seen,
asks the same way for a push lost on a live connection (a gap in the offsets
that stays open), and queues a ``reset`` push when the missed pushes are gone:
after a server restart (the in-memory history went with it), or when a push
of a new epoch comes on a live connection. What the demo cannot be made to
answer on demand is played by a scripted server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from rohrpost.client import Client, Push
from rohrpost.client._subscriptions import MAX_AHEAD
from tests.demo_server import DemoServer, restarted_demo, run_demo
from tests.test_client import (
    FAST,
    IO_TIMEOUT,
    CuttableProxy,
    add_task,
    answer,
    next_push,
    scripted_server,
    until,
)

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


# --- a push lost on a live connection ----------------------------------------------------


async def test_a_push_lost_on_a_live_connection_is_filled_in_without_a_reset(
    demo: DemoServer,
) -> None:
    async with Client(demo.ws_url) as client:
        data = await client.subscribe_data(PUBLIC)
        lost: list[str] = []
        dispatch = client._dispatch

        def losing(text: str) -> None:
            # The server's channel layer dropping one push on its way to this client.
            frame = json.loads(text)
            if not lost and frame.get("data", {}).get("object", {}).get("title") == "lost":
                lost.append(text)
                return
            dispatch(text)

        client._dispatch = losing  # type: ignore[method-assign]
        await add_task(demo, "lost")
        await until(lambda: bool(lost))
        await add_task(demo, "after")  # the gap shows
        got = [await next_push(client) for _ in range(2)]
        assert [(push.type, push.object["title"]) for push in got] == [
            ("subscription-update", "after"),
            ("subscription-update", "lost"),  # replayed, late
        ]
        start = data["position"]["offset"]
        assert [push.position["offset"] for push in got] == [start + 2, start + 1]
        assert client.position("board-1") == {
            "epoch": data["position"]["epoch"],
            "offset": start + 2,
        }
        live = await add_task(demo, "live")
        assert (await next_push(client)).object == live
        assert await quiet(client) == []  # no reset, nothing twice


def update(offset: int, epoch: str = "e") -> dict[str, Any]:
    """A push to the group "feed" at ``offset``."""
    return {
        "id": offset,
        "type": "subscription-update",
        "data": {"type": "update", "group": "feed", "object": {"n": offset}},
        "position": {"group": "feed", "epoch": epoch, "offset": offset},
    }


FEED = {"type": "feed"}


async def test_a_gap_the_server_cannot_fill_is_asked_for_once_and_ends_in_a_reset() -> None:
    requests: list[dict[str, Any]] = []

    async def script(connection: ServerConnection, number: int) -> None:
        await answer(connection, {"group": "feed", "position": {"epoch": "e", "offset": 0}})
        for offset in (1, 3, 4, 5):  # 2 was lost on its way
            await connection.send(json.dumps(update(offset)))
        gone = {"group": "feed", "position": {"epoch": "e", "offset": 9}, "reset": True}
        requests.append(await answer(connection, {**gone, "snapshot": {"n": 9}}))
        with contextlib.suppress(asyncio.TimeoutError):  # nothing more is asked
            requests.append(json.loads(await asyncio.wait_for(connection.recv(), 0.5)))
        await connection.send(json.dumps(update(10)))
        await connection.wait_closed()

    async with scripted_server(script) as url, Client(url, ping_interval=None) as client:
        await client.subscribe(FEED)
        pushes = [await next_push(client) for _ in range(6)]
    assert [push.type for push in pushes] == [
        *["subscription-update"] * 4,
        "reset",
        "subscription-update",
    ]
    assert pushes[4].data == {
        "group": "feed",
        "snapshot": {"n": 9},
        "position": {"epoch": "e", "offset": 9},
    }
    assert pushes[5].position == update(10)["position"]
    (request,) = requests
    assert (request["type"], request["data"]) == ("subscribe", FEED)
    assert request["since"] == {"epoch": "e", "offset": 1}  # below the gap


async def test_a_gap_that_max_ahead_pushes_passed_is_asked_for_at_once() -> None:
    top = MAX_AHEAD + 10
    requests: list[dict[str, Any]] = []

    async def script(connection: ServerConnection, number: int) -> None:
        await answer(connection, {"group": "feed", "position": {"epoch": "e", "offset": 0}})
        # Past MAX_AHEAD every push asks at once, but not while a request is on its way.
        for offset in range(2, top + 1):
            await connection.send(json.dumps(update(offset)))
        request = json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))
        requests.append(request)
        for offset in range(1, top + 1):  # the replay: the lost one, then repeats
            await connection.send(json.dumps(update(offset)))
        reply = {"group": "feed", "position": {"epoch": "e", "offset": top}, "resumed": top}
        await connection.send(json.dumps({"id": request["id"], "type": "subscribe", "data": reply}))
        with contextlib.suppress(asyncio.TimeoutError):  # nothing more is asked
            requests.append(json.loads(await asyncio.wait_for(connection.recv(), 0.3)))
        await connection.wait_closed()

    # Only the count can trigger it.
    async with (
        scripted_server(script) as url,
        Client(url, ping_interval=None, gap_fill_delay=60) as client,
    ):
        await client.subscribe(FEED)
        offsets = [(await next_push(client)).position["offset"] for _ in range(top)]
        await until(lambda: client.position("feed") == {"epoch": "e", "offset": top})
        assert await quiet(client, 0.4) == []
    assert offsets == [*range(2, top + 1), 1]
    assert [request["since"] for request in requests] == [{"epoch": "e", "offset": 0}]


async def test_a_refused_gap_fill_takes_the_client_out_of_the_group() -> None:
    async def script(connection: ServerConnection, number: int) -> None:
        await answer(connection, {"group": "feed", "position": {"epoch": "e", "offset": 0}})
        await connection.send(json.dumps(update(2)))
        request = json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))
        refusal = {"error": "You may not subscribe to this group.", "code": "forbidden"}
        await connection.send(json.dumps({"id": request["id"], "type": "subscribe", **refusal}))
        await connection.wait_closed()

    async with scripted_server(script) as url, Client(url, ping_interval=None) as client:
        await client.subscribe(FEED)
        assert (await next_push(client)).position == update(2)["position"]
        push = await next_push(client)
        assert push.type == "unsubscribed"
        assert push.group == "feed"
        assert "for missing pushes" in (push.reason or "")
        assert client.subscriptions == {}


async def test_a_gap_fill_that_times_out_is_tried_again() -> None:
    since: list[Any] = []

    async def script(connection: ServerConnection, number: int) -> None:
        await answer(connection, {"group": "feed", "position": {"epoch": "e", "offset": 0}})
        await connection.send(json.dumps(update(2)))
        since.append(json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))["since"])
        request = json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))  # again
        since.append(request["since"])
        await connection.send(json.dumps(update(1)))
        reply = {"group": "feed", "position": {"epoch": "e", "offset": 2}, "resumed": 2}
        await connection.send(json.dumps({"id": request["id"], "type": "subscribe", "data": reply}))
        await connection.wait_closed()

    async with (
        scripted_server(script) as url,
        Client(url, ping_interval=None, call_timeout=0.2, gap_fill_delay=0.05) as client,
    ):
        await client.subscribe(FEED)
        assert [(await next_push(client)).position["offset"] for _ in range(2)] == [2, 1]
        await until(lambda: client.position("feed") == {"epoch": "e", "offset": 2})
    assert since == [{"epoch": "e", "offset": 0}] * 2


async def test_pushes_that_cross_close_their_gap_without_a_request() -> None:
    asked: list[dict[str, Any]] = []

    async def script(connection: ServerConnection, number: int) -> None:
        await answer(connection, {"group": "feed", "position": {"epoch": "e", "offset": 0}})
        await connection.send(json.dumps(update(2)))
        await asyncio.sleep(0.05)  # the other publisher's push, a little later
        await connection.send(json.dumps(update(1)))
        with contextlib.suppress(asyncio.TimeoutError):
            asked.append(json.loads(await asyncio.wait_for(connection.recv(), 0.8)))
        await connection.wait_closed()

    async with (
        scripted_server(script) as url,
        Client(url, ping_interval=None, gap_fill_delay=0.3) as client,
    ):
        await client.subscribe(FEED)
        assert [(await next_push(client)).position["offset"] for _ in range(2)] == [2, 1]
        assert client.position("feed") == {"epoch": "e", "offset": 2}
        await asyncio.sleep(0.9)
        assert client._gap_fills == {}
    assert asked == []


async def test_a_gap_fill_cut_off_by_a_lost_connection_is_finished_by_the_resubscribe() -> None:
    resubscribed: list[dict[str, Any]] = []

    async def script(connection: ServerConnection, number: int) -> None:
        if number == 1:
            await answer(connection, {"group": "feed", "position": {"epoch": "e", "offset": 0}})
            await connection.send(json.dumps(update(2)))
            await asyncio.wait_for(connection.recv(), IO_TIMEOUT)  # the gap-fill ...
            await connection.close(1011)  # ... whose answer never comes
            return
        request = json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))
        resubscribed.append(request)
        for offset in (1, 2):
            await connection.send(json.dumps(update(offset)))
        reply = {"group": "feed", "position": {"epoch": "e", "offset": 2}, "resumed": 2}
        await connection.send(json.dumps({"id": request["id"], "type": "subscribe", "data": reply}))
        await connection.wait_closed()

    async with (
        scripted_server(script) as url,
        Client(url, ping_interval=None, gap_fill_delay=0.05, **FAST) as client,
    ):
        await client.subscribe(FEED)
        assert [(await next_push(client)).position["offset"] for _ in range(2)] == [2, 1]
        await until(lambda: client.position("feed") == {"epoch": "e", "offset": 2})
        assert await quiet(client) == []
    assert [request["since"] for request in resubscribed] == [{"epoch": "e", "offset": 0}]
