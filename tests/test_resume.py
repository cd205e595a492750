"""Subscriptions with history: positions on pushes, resume since a position, reset, snapshot."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer, history
from rohrpost.history import MemoryHistory
from rohrpost.message import asend_to_group
from rohrpost.registry import HandlerRegistry
from rohrpost.subscriptions import Subscriptions
from tests.communicators import ask, connect

pytestmark = pytest.mark.usefixtures("fresh_channel_layers")


class Card(BaseModel):
    title: str
    done: bool = False


#: The board's state, as the snapshot reads it.
STATE: dict[str, Any] = {}
#: Pushes the test consumer publishes right after joining, as a concurrent writer would.
RACING: list[dict[str, Any]] = []


def make_registry() -> HandlerRegistry:
    subscriptions = Subscriptions()

    def board_snapshot(user: Any, scope: Any, data: dict[str, Any]) -> Any:
        return dict(STATE)

    @subscriptions.declare(
        "board",
        group=lambda data: f"board-{int(data['id'])}",
        history=True,
        snapshot=board_snapshot,
    )
    def may_see(user: Any, scope: Any, data: dict[str, Any]) -> bool:
        return True

    @subscriptions.declare("log", group=lambda data: f"log-{int(data['id'])}", history=True)
    async def may_read(user: Any, scope: Any, data: dict[str, Any]) -> bool:
        return True

    def typed_snapshot(user: Any, scope: Any, data: dict[str, Any]) -> list[Card]:
        return [Card(title="a"), Card(title="b", done=True)]

    @subscriptions.declare(
        "cards", group=lambda data: "cards", history=True, snapshot=typed_snapshot
    )
    def may_see_cards(user: Any, scope: Any, data: dict[str, Any]) -> bool:
        return True

    @subscriptions.declare("plain", group=lambda data: "plain")
    def may_join(user: Any, scope: Any, data: dict[str, Any]) -> bool:
        return True

    registry = HandlerRegistry()
    subscriptions.install(registry)
    return registry


class Racing:
    rohrpost_registry = HandlerRegistry()  # made by the fixture below, history on

    async def aadd_to_group(self, group_name: str) -> None:
        await super().aadd_to_group(group_name)  # type: ignore[misc]
        for message in RACING:
            await asend_to_group(group_name, message)


class AsyncBoard(Racing, AsyncRohrpostConsumer):
    pass


class SyncBoard(Racing, SyncRohrpostConsumer):
    pass


@pytest.fixture(params=[AsyncBoard, SyncBoard], ids=["async", "sync"])
def consumer_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def memory_history(monkeypatch: pytest.MonkeyPatch, settings: Any) -> MemoryHistory:
    settings.ROHRPOST = {"HISTORY": {"ENABLED": True}}
    monkeypatch.setattr(Racing, "rohrpost_registry", make_registry())
    store = MemoryHistory(size=100, ttl=60)
    monkeypatch.setattr(history, "_store", store)
    STATE.clear()
    RACING.clear()
    return store


def subscribe(kind: str = "board", since: Any = None, request_id: int = 1) -> dict[str, Any]:
    frame: dict[str, Any] = {"id": request_id, "type": "subscribe", "data": {"type": kind, "id": 1}}
    if since is not None:
        frame["since"] = since
    return frame


def note(n: int) -> dict[str, Any]:
    return {"id": n, "type": "subscription-update", "data": {"n": n}}


async def frames(client: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    return [json.loads(await client.receive_from(timeout=2)) for _ in range(count)]


async def test_a_subscription_with_history_answers_its_position_and_snapshot(
    consumer_class: type[Any],
) -> None:
    STATE.update(cards=["a"])
    async with connect(consumer_class) as client:
        reply = await ask(client, subscribe())
        position = reply["data"]["position"]
        assert reply["data"] == {
            "group": "board-1",
            "position": {"epoch": position["epoch"], "offset": 0},
            "snapshot": {"cards": ["a"]},
        }
        for n in (1, 2):
            await asend_to_group("board-1", note(n))
        pushes = await frames(client, 2)
        assert [p["position"] for p in pushes] == [
            {"group": "board-1", "epoch": position["epoch"], "offset": n} for n in (1, 2)
        ]
        assert [p["id"] for p in pushes] == [1, 2]


async def test_a_client_back_within_the_window_gets_exactly_what_it_missed_then_live(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as first:
        reply = await ask(first, subscribe("log"))
        assert "snapshot" not in reply["data"]
        for n in range(1, 4):
            await asend_to_group("log-1", note(n))
        last = (await frames(first, 3))[-1]["position"]
    for n in range(4, 54):  # 50 pushes while away
        await asend_to_group("log-1", note(n))
    since = {"epoch": last["epoch"], "offset": last["offset"]}
    async with connect(consumer_class) as back:
        await back.send_to(text_data=json.dumps(subscribe("log", since)))
        replayed = await frames(back, 50)
        assert [p["id"] for p in replayed] == list(range(4, 54))
        assert [p["position"]["offset"] for p in replayed] == list(range(4, 54))
        (reply,) = await frames(back, 1)
        assert reply["data"] == {
            "group": "log-1",
            "position": {"epoch": last["epoch"], "offset": 53},
            "resumed": 50,
        }
        await asend_to_group("log-1", note(54))
        (live,) = await frames(back, 1)
        assert live["position"]["offset"] == 54
        assert await back.receive_nothing(timeout=0.05)


async def test_a_client_past_the_window_is_told_to_reset_and_gets_a_fresh_snapshot(
    consumer_class: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "_store", MemoryHistory(size=10, ttl=60))
    async with connect(consumer_class) as first:
        epoch = (await ask(first, subscribe()))["data"]["position"]["epoch"]
    for n in range(1, 31):
        await asend_to_group("board-1", note(n))
    STATE.update(cards=["after 30 changes"])
    async with connect(consumer_class) as back:
        reply = await ask(back, subscribe(since={"epoch": epoch, "offset": 0}))
        assert reply["data"] == {
            "group": "board-1",
            "position": {"epoch": epoch, "offset": 30},
            "reset": True,
            "snapshot": {"cards": ["after 30 changes"]},
        }
        # Another epoch (history lost): a reset too.
        reply = await ask(back, subscribe("log", {"epoch": "gone", "offset": 3}, 2))
        assert reply["data"]["reset"] is True
        assert await back.receive_nothing(timeout=0.05)


async def test_a_push_racing_the_subscribe_follows_the_reply_once(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as watcher:
        await ask(watcher, subscribe())  # the group is tracked from now on
        RACING.append(note(1))  # published between the join and the snapshot
        async with connect(consumer_class) as client:
            reply = await ask(client, subscribe())
            # Taken after the racing push was recorded: the snapshot's position covers
            # it, and the held push is not sent again.
            assert reply["data"]["position"]["offset"] == 1
            assert await client.receive_nothing(timeout=0.05)
            RACING.clear()
            await asend_to_group("board-1", note(2))
            (live,) = await frames(client, 1)
            assert live["position"]["offset"] == 2


async def test_on_a_first_subscription_a_racing_push_follows_the_reply(
    consumer_class: type[Any],
) -> None:
    RACING.append(note(1))  # untracked until this subscribe opens the history
    async with connect(consumer_class) as client:
        reply = await ask(client, subscribe())
        assert reply["data"]["position"]["offset"] == 0
        (held,) = await frames(client, 1)
        assert held["id"] == 1
        assert "position" not in held


async def lose(group: str, *notes: int) -> None:
    """Record pushes in the group's history that no connection gets (lost on their way)."""
    await history.arecord(group, [json.dumps(note(n)) for n in notes])


async def test_a_client_already_subscribed_gets_the_pushes_it_lost_replayed(
    consumer_class: type[Any],
) -> None:
    """A held group resubscribed since a position: the missing pushes, then live, none twice."""
    from channels.layers import get_channel_layer

    async with connect(consumer_class) as client:
        epoch = (await ask(client, subscribe("log")))["data"]["position"]["epoch"]
        await asend_to_group("log-1", note(1))
        await lose("log-1", 2, 3)
        await asend_to_group("log-1", note(4))  # the client sees the gap: 1, then 4
        assert [p["position"]["offset"] for p in await frames(client, 2)] == [1, 4]
        await client.send_to(
            text_data=json.dumps(subscribe("log", {"epoch": epoch, "offset": 1}, 2))
        )
        replayed = await frames(client, 3)
        assert [(p["id"], p["position"]["offset"]) for p in replayed] == [(2, 2), (3, 3), (4, 4)]
        (reply,) = await frames(client, 1)
        assert reply["id"] == 2
        assert reply["data"] == {
            "group": "log-1",
            "position": {"epoch": epoch, "offset": 4},
            "resumed": 3,
        }
        # A push the replay sent that reaches the connection late is dropped; later ones pass.
        late = {"type": "rohrpost.message", "message": json.dumps(note(3)), "group": "log-1"}
        await get_channel_layer().group_send("log-1", {**late, "epoch": epoch, "offset": 3})
        await asend_to_group("log-1", note(5))
        (live,) = await frames(client, 1)
        assert live["id"] == 5
        assert await client.receive_nothing(timeout=0.05)
        # Nothing missed: an empty replay, and the connection stays in the group.
        reply = await ask(client, subscribe("log", {"epoch": epoch, "offset": 5}, 3))
        assert reply["data"] == {
            "group": "log-1",
            "position": {"epoch": epoch, "offset": 5},
            "resumed": 0,
        }
        await asend_to_group("log-1", note(6))
        assert [p["id"] for p in await frames(client, 1)] == [6]


async def test_a_client_already_subscribed_whose_pushes_are_gone_is_told_to_reset(
    consumer_class: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "_store", MemoryHistory(size=3, ttl=60))
    async with connect(consumer_class) as client:
        epoch = (await ask(client, subscribe()))["data"]["position"]["epoch"]
        await lose("board-1", *range(1, 6))  # more than the history keeps
        STATE.update(cards=["after 5 changes"])
        reply = await ask(client, subscribe(since={"epoch": epoch, "offset": 0}, request_id=2))
        assert reply["data"] == {
            "group": "board-1",
            "position": {"epoch": epoch, "offset": 5},
            "reset": True,
            "snapshot": {"cards": ["after 5 changes"]},
        }
        await asend_to_group("board-1", note(6))
        assert [p["position"]["offset"] for p in await frames(client, 1)] == [6]
        assert await client.receive_nothing(timeout=0.05)


async def test_a_client_already_subscribed_without_since_gets_its_position_and_no_replay(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as client:
        epoch = (await ask(client, subscribe("log")))["data"]["position"]["epoch"]
        await asend_to_group("log-1", note(1))
        await frames(client, 1)
        reply = await ask(client, subscribe("log", request_id=2))
        assert reply["data"] == {"group": "log-1", "position": {"epoch": epoch, "offset": 1}}
        assert await client.receive_nothing(timeout=0.05)


async def test_a_push_in_flight_is_not_lost_to_a_repeated_subscribe_without_since(
    consumer_class: type[Any],
) -> None:
    """Only a replay or a snapshot covers a push: a plain repeated subscribe (4.x) covers none."""
    from channels.layers import get_channel_layer

    async with connect(consumer_class) as client:
        epoch = (await ask(client, subscribe("log")))["data"]["position"]["epoch"]
        recorded, first = await history.arecord("log-1", [json.dumps(note(1))])
        assert first is not None
        assert first.offset == 1  # recorded, its delivery still on its way
        reply = await ask(client, subscribe("log", request_id=2))
        assert reply["data"] == {"group": "log-1", "position": {"epoch": epoch, "offset": 1}}
        event = {"type": "rohrpost.message", "message": recorded[0], "group": "log-1"}
        await get_channel_layer().group_send("log-1", {**event, "epoch": epoch, "offset": 1})
        assert [p["id"] for p in await frames(client, 1)] == [1]


@pytest.mark.parametrize("since", [{"epoch": 5}, "abc", {"epoch": "e", "offset": -1}])
async def test_a_malformed_since_is_invalid(consumer_class: type[Any], since: Any) -> None:
    async with connect(consumer_class) as client:
        reply = await ask(client, subscribe(since=since))
        assert reply["code"] == "invalid"
        assert "since must be a position" in reply["error"]


async def test_a_kind_without_history_ignores_since_and_pushes_carry_no_position(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as client:
        reply = await ask(client, subscribe("plain", {"epoch": "e", "offset": 1}))
        assert reply["data"] == {"group": "plain"}
        await asend_to_group("plain", note(1))
        assert "position" not in (await frames(client, 1))[0]


def test_a_snapshot_needs_history() -> None:
    with pytest.raises(ValueError, match="needs history=True"):
        Subscriptions().declare("x", group=lambda data: "x", snapshot=lambda u, s, d: None)


def test_a_kind_with_history_needs_history_on_in_the_settings(settings: Any) -> None:
    settings.ROHRPOST = {}
    with pytest.raises(
        ImproperlyConfigured, match=r"ROHRPOST = \{\"HISTORY\": \{\"ENABLED\": True\}\}"
    ):
        Subscriptions().declare("x", group=lambda data: "x", history=True)


async def test_a_push_the_snapshot_covers_is_dropped_even_when_it_arrives_late(
    consumer_class: type[Any],
) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    async with connect(consumer_class) as watcher, connect(consumer_class) as client:
        await ask(watcher, subscribe())  # tracked from here on
        for n in (1, 2):
            await asend_to_group("board-1", note(n))
        await frames(watcher, 2)
        reply = await ask(client, subscribe())
        epoch = reply["data"]["position"]["epoch"]
        assert reply["data"]["position"]["offset"] == 2
        # A push recorded at offset 2 whose delivery was slow: already applied.
        for where in ((epoch, 2), ("another-epoch", 1), (epoch, 3)):
            text = json.dumps({"id": 9, "type": "late", "data": list(where)})
            await layer.group_send(
                "board-1",
                {
                    "type": "rohrpost.message",
                    "message": text,
                    "group": "board-1",
                    "epoch": where[0],
                    "offset": where[1],
                },
            )
        late = await frames(client, 2)
        assert [p["data"] for p in late] == [["another-epoch", 1], [epoch, 3]]
        # Unsubscribed and subscribed again: the new position is the floor.
        await ask(client, {"id": 5, "type": "unsubscribe", "data": {"type": "board", "id": 1}})
        reply = await ask(client, subscribe(request_id=6))
        assert reply["data"]["position"]["offset"] == 2


async def test_the_4x_test_double_subscribes_and_resumes_too(settings: Any) -> None:
    from rohrpost.tests import Consumer

    registry = Racing.rohrpost_registry
    double = Consumer()
    reply = await registry["subscribe"](consumer=double, request=subscribe("log"))
    epoch = reply["position"]["epoch"]
    await asend_to_group("log-1", note(1))  # nobody listens: recorded all the same
    again = await registry["subscribe"](
        consumer=Consumer(), request=subscribe("log", {"epoch": epoch, "offset": 0})
    )
    assert again["resumed"] == 1


async def test_a_typed_snapshot_is_encoded_as_its_declared_type(consumer_class: type[Any]) -> None:
    async with connect(consumer_class) as client:
        reply = await ask(client, subscribe("cards"))
        assert reply["data"]["snapshot"] == [
            {"title": "a", "done": False},
            {"title": "b", "done": True},
        ]


def test_a_snapshot_whose_types_cannot_be_read_or_encoded_is_left_untyped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rohrpost import subscriptions

    def unresolvable(user: Any, scope: Any, data: Any) -> Missing:  # type: ignore[name-defined]  # noqa: F821
        return None

    assert subscriptions._snapshot_typing(unresolvable) == (None, None)

    def annotated(user: Any, scope: Any, data: Any) -> list[Card]:
        return []

    monkeypatch.setitem(sys.modules, "rohrpost.typed", None)  # as without pydantic
    assert subscriptions._snapshot_typing(annotated) == (list[Card], None)
