"""Tests for rohrpost.access: access taken away stays away, whatever the client does.

Through the consumers, with Channels' communicator, and with a client that
reads nothing (an ASGI ``send`` that blocks, as uvicorn's does when its write
buffer is full).
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer
from rohrpost import outbox as outbox_module
from rohrpost.control import (
    aclose_user_connections,
    aexpel_from_group,
    arecheck_group,
    arecheck_subscriptions,
    recheck_group,
    recheck_subscriptions,
    user_group,
)
from rohrpost.handlers import handle_ping
from rohrpost.message import GROUP_EVENT_TYPE, asend_to_group
from rohrpost.outbox import CLOSE_TOO_SLOW
from rohrpost.registry import HandlerRegistry
from rohrpost.subscriptions import Subscriptions
from tests.communicators import ask, connect, connection_groups

ALICE = SimpleNamespace(pk=1, username="alice", is_authenticated=True)
BOB = SimpleNamespace(pk=2, username="bob", is_authenticated=True)
TOKENS = {"alice-token": ALICE, "bob-token": BOB}

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layers"),
]

#: Who may see which board: the permission reads it at every check.
ACCESS: dict[int, set[str]] = {}
#: Boards whose permission raises.
BROKEN: set[int] = set()


async def user_for_token(token: str, scope: Any) -> Any:
    return TOKENS.get(token)


def make_registry() -> HandlerRegistry:
    subscriptions = Subscriptions()

    @subscriptions.declare("board", group=lambda data: f"board-{int(data['id'])}")
    def may_see_board(user: Any, scope: Any, data: dict[str, Any]) -> bool:
        if data["id"] in BROKEN:
            raise RuntimeError("the permission store is down")
        return getattr(user, "username", None) in ACCESS.get(data["id"], set())

    @subscriptions.declare("room", group=lambda data: f"room-{data['name']}")
    async def may_enter(user: Any, scope: Any, data: dict[str, Any]) -> bool:
        return getattr(user, "username", None) in ACCESS.get(0, set())

    registry = HandlerRegistry()
    registry.register("ping", handle_ping, inline=True)
    subscriptions.install(registry)

    @registry.handler("whoami")
    def whoami(consumer: Any, request: dict[str, Any]) -> Any:
        return getattr(consumer.scope.get("user"), "username", None)

    @registry.handler("join-sync")
    def join_sync(consumer: Any, request: dict[str, Any]) -> str:
        consumer.add_to_group(str(request["data"]))
        return "joined"

    @registry.handler("join-later")
    async def join_later(consumer: Any, request: dict[str, Any]) -> str:
        # Work of the application's own, beside the connection's task.
        LATER.append(
            asyncio.get_running_loop().create_task(consumer.aadd_to_group(request["data"]))
        )
        return "started"

    @registry.handler("channel")
    def channel(consumer: Any, request: dict[str, Any]) -> str:
        return str(consumer.channel_name)  # starts the connection's own receive

    @registry.handler("note")
    async def note(consumer: Any, request: dict[str, Any]) -> str:
        NOTES.append(request.get("data"))
        return "noted"

    return registry


NOTES: list[Any] = []
LATER: list[asyncio.Task[None]] = []
REGISTRY = make_registry()


class AsyncAccess(AsyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


class SyncAccess(SyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


@pytest.fixture(params=[AsyncAccess, SyncAccess], ids=["async", "sync"])
def consumer_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


class AsyncOwnChannel(AsyncAccess):
    """Overrides rohrpost_message: its pushes come through its own channel, as in 4.x."""

    async def rohrpost_message(self, event: dict[str, Any]) -> None:
        await super().rohrpost_message(event)


class SyncOwnChannel(SyncAccess):
    def rohrpost_message(self, event: dict[str, Any]) -> None:
        super().rohrpost_message(event)


@pytest.fixture(params=[AsyncOwnChannel, SyncOwnChannel], ids=["async", "sync"])
def own_channel_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def access(settings: Any) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": user_for_token}
    ACCESS.clear()
    ACCESS.update({1: {"alice"}, 2: {"alice", "bob"}, 0: {"alice", "bob"}})
    BROKEN.clear()
    NOTES.clear()


def board(board_id: int, request_id: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "id": request_id,
        "type": "subscribe",
        "data": {"type": "board", "id": board_id},
        **fields,
    }


def note(text: str) -> dict[str, Any]:
    return {"id": 0, "type": "note", "data": text}


async def next_frame(client: WebsocketCommunicator) -> Any:
    return json.loads(await client.receive_from(timeout=2))


async def expect_unsubscribed(client: WebsocketCommunicator, group: str, reason: str) -> None:
    frame = await next_frame(client)
    assert frame["type"] == "unsubscribed"
    assert frame["data"] == {"group": group, "reason": reason}


# --- a client that reads nothing --------------------------------------------------------


class StalledClient:
    """Drives a consumer directly; its ``send`` blocks after the handshake until ``reading``."""

    def __init__(self, consumer_class: type[Any], user: Any = None) -> None:
        self.app = consumer_class.as_asgi()
        self.scope = {"type": "websocket", "path": "/ws/", "headers": [], "subprotocols": []}
        if user is not None:
            self.scope["user"] = user
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.reading = asyncio.Event()
        self.accepted = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            self.accepted.set()
        else:
            await self.reading.wait()
        self.sent.append(message)

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self.app(self.scope, self.incoming.get, self.send))
        await self.incoming.put({"type": "websocket.connect"})
        await asyncio.wait_for(self.accepted.wait(), 2)

    async def frame(self, request: dict[str, Any]) -> None:
        await self.incoming.put({"type": "websocket.receive", "text": json.dumps(request)})

    async def stop(self) -> None:
        assert self.task is not None
        if not self.task.done():
            await self.incoming.put({"type": "websocket.disconnect", "code": 1000})
            self.reading.set()
        await asyncio.wait_for(self.task, 5)

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]


async def until(condition: Any, seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not hold in time")


async def test_logout_closes_a_connection_whose_client_reads_nothing(
    consumer_class: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "CLOSE_WAIT_SECONDS", 0.2)
    disconnected: list[int] = []

    class Recording(consumer_class):  # type: ignore[valid-type, misc]
        def disconnect(self, code: int) -> Any:
            disconnected.append(code)
            return super().disconnect(code)

    client = StalledClient(Recording, user=ALICE)
    await client.start()
    await client.frame(board(1))
    await until(lambda: "board-1" in connection_groups())
    for number in range(200):  # the board streams pushes the client never reads
        await asend_to_group("board-1", {"type": "subscription-update", "data": number})
    await aclose_user_connections(ALICE)
    # At once: no group left, the consumer has ended, its disconnect() ran.
    await asyncio.wait_for(client.task, 2)  # type: ignore[arg-type]
    assert connection_groups() == {}
    assert disconnected == [4003]
    # What it sends now is never handled.
    await client.frame({"id": 9, "type": "note", "data": "after logout"})
    await asyncio.sleep(0.05)
    assert NOTES == []
    # The close frame waited for the client as long as CLOSE_WAIT_SECONDS allowed.
    assert [message["type"] for message in client.sent] == ["websocket.accept"]


async def test_the_close_frame_goes_out_when_the_client_reads_again(
    consumer_class: type[Any],
) -> None:
    client = StalledClient(consumer_class, user=ALICE)
    await client.start()
    await client.frame(board(1))
    await until(lambda: "board-1" in connection_groups())
    for number in range(5):
        await asend_to_group("board-1", {"type": "subscription-update", "data": number})
    await aclose_user_connections(ALICE)
    await asyncio.sleep(0.05)
    client.reading.set()
    await asyncio.wait_for(client.task, 2)  # type: ignore[arg-type]
    # Nothing queued before the logout is sent after it: only the close.
    assert client.sent[1:] == [{"type": "websocket.close", "code": 4003}]


async def test_a_client_that_falls_behind_is_closed_too_slow(
    consumer_class: type[Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "CLOSE_WAIT_SECONDS", 0.2)
    settings.ROHRPOST = {"SEND_QUEUE_LIMIT": 65536}
    client = StalledClient(consumer_class, user=ALICE)
    await client.start()
    await client.frame(board(1))
    await until(lambda: "board-1" in connection_groups())
    push = {"type": "subscription-update", "data": "x" * 1000}
    for _ in range(100):
        await asend_to_group("board-1", push)
        await asyncio.sleep(0)
        if client.task.done():  # type: ignore[union-attr]
            break
    await asyncio.wait_for(client.task, 2)  # type: ignore[arg-type]
    assert connection_groups() == {}
    client.reading.set()
    assert client.texts() == []
    assert client.sent[1:] in ([], [{"type": "websocket.close", "code": CLOSE_TOO_SLOW}])


# --- removal from a group ---------------------------------------------------------------


async def test_pushes_already_queued_for_an_expelled_group_are_dropped(
    own_channel_class: type[Any],
) -> None:
    async with connect(own_channel_class, user=ALICE) as client:
        assert (await ask(client, board(1)))["data"] == {"group": "board-1"}
        assert (await ask(client, board(2, 2)))["data"] == {"group": "board-2"}
        channel = next(iter(get_channel_layer().groups["board-1"]))
        await aexpel_from_group("board-1", reason="gone")
        await expect_unsubscribed(client, "board-1", "gone")
        # Events that were in the connection's own queue for the group: dropped.
        layer = get_channel_layer()
        for group in ("board-1", "board-2"):
            await layer.send(
                channel,
                {"type": GROUP_EVENT_TYPE, "message": json.dumps(note(group)), "group": group},
            )
        assert (await next_frame(client))["data"] == "board-2"
        assert await client.receive_nothing(timeout=0.1)
        assert set(connection_groups()) == {"board-2", user_group(ALICE)}
        # Subscribing again (still allowed) takes its pushes again.
        assert (await ask(client, board(1, 3)))["data"] == {"group": "board-1"}
        await asend_to_group("board-1", note("back"))
        assert (await next_frame(client))["data"] == "back"


async def test_an_expelled_connection_gets_no_more_pushes_of_the_group(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class, user=ALICE) as client:
        assert (await ask(client, board(1)))["data"] == {"group": "board-1"}
        assert (await ask(client, board(2, 2)))["data"] == {"group": "board-2"}
        await aexpel_from_group("board-1", reason="gone")
        await expect_unsubscribed(client, "board-1", "gone")
        for group in ("board-1", "board-2"):
            await asend_to_group(group, note(group))
        assert (await next_frame(client))["data"] == "board-2"
        assert await client.receive_nothing(timeout=0.1)
        assert set(connection_groups()) == {"board-2", user_group(ALICE)}
        assert (await ask(client, board(1, 3)))["data"] == {"group": "board-1"}
        await asend_to_group("board-1", note("back"))
        assert (await next_frame(client))["data"] == "back"


async def test_expelling_from_a_group_not_joined_says_nothing(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=ALICE) as client:
        await ask(client, board(1))
        await aexpel_from_group("board-9")
        assert await client.receive_nothing(timeout=0.1)


# --- permissions checked again ----------------------------------------------------------


async def test_subscribing_again_checks_the_permission_again(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=BOB) as client:
        assert (await ask(client, board(2)))["data"] == {"group": "board-2"}
        ACCESS[2] = {"alice"}  # bob lost access
        reply = await ask(client, board(2, 2))
        assert reply["code"] == "forbidden"
        assert "board-2" not in connection_groups()
        await asend_to_group("board-2", note("private"))
        assert await client.receive_nothing(timeout=0.1)


async def test_a_group_recheck_expels_only_who_lost_the_permission(
    consumer_class: type[Any],
) -> None:
    async with (
        connect(consumer_class, user=ALICE) as alice,
        connect(consumer_class, user=BOB) as bob,
    ):
        for client in (alice, bob):
            assert (await ask(client, board(2)))["data"] == {"group": "board-2"}
        ACCESS[2] = {"alice"}  # the board became alice's alone
        await arecheck_group("board-2")
        await expect_unsubscribed(bob, "board-2", "permission")
        await asend_to_group("board-2", note("after"))
        assert (await next_frame(alice))["data"] == "after"
        assert await bob.receive_nothing(timeout=0.1)


async def test_a_kind_recheck_covers_every_group_of_that_kind(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=BOB) as client:
        await ask(client, board(2))
        await ask(client, {"id": 2, "type": "subscribe", "data": {"type": "room", "name": "a"}})
        ACCESS[2] = set()
        ACCESS[0] = set()
        await arecheck_subscriptions("board")
        await expect_unsubscribed(client, "board-2", "permission")
        assert await client.receive_nothing(timeout=0.1)
        assert "room-a" in connection_groups()  # another kind: not checked


async def test_a_permission_that_raises_on_recheck_counts_as_refused(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with connect(consumer_class, user=BOB) as client:
        await ask(client, board(2))
        BROKEN.add(2)
        with caplog.at_level(logging.ERROR, "rohrpost"):
            await arecheck_group("board-2")
            await expect_unsubscribed(client, "board-2", "permission")
    assert "A permission failed while re-checking the group 'board-2'" in caplog.text


# --- one identity per connection --------------------------------------------------------


async def test_a_token_for_another_user_rechecks_every_subscription(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as client:
        assert (await ask(client, board(1, auth_jwt="alice-token")))["data"] == {"group": "board-1"}
        await ask(client, board(2, 2))
        # Switching to bob: alice's private board goes (said before the reply), the
        # shared one stays.
        await client.send_to(
            text_data=json.dumps({"id": 3, "type": "whoami", "auth_jwt": "bob-token"})
        )
        await expect_unsubscribed(client, "board-1", "The connection's user changed.")
        assert (await next_frame(client))["data"] == "bob"
        await asend_to_group("board-1", note("alice only"))
        await asend_to_group("board-2", note("shared"))
        assert (await next_frame(client))["data"] == "shared"
        # Subscribing to alice's board as bob is refused, even "again".
        assert (await ask(client, board(1, 4)))["code"] == "forbidden"
        # Alice's logout no longer reaches the connection; bob's does.
        await aclose_user_connections(ALICE)
        assert (await ask(client, {"id": 5, "type": "ping"}))["type"] == "pong"
        await aclose_user_connections(BOB)
        assert await client.receive_output(timeout=1) == {"type": "websocket.close", "code": 4003}


async def test_a_refused_token_ends_the_identity_it_had_given(consumer_class: type[Any]) -> None:
    async with connect(consumer_class) as client:
        await ask(client, board(1, auth_jwt="alice-token"))
        await client.send_to(
            text_data=json.dumps({"id": 2, "type": "whoami", "auth_jwt": "expired"})
        )
        await expect_unsubscribed(client, "board-1", "The connection's user changed.")
        assert (await next_frame(client))["code"] == "unauthenticated"
        assert (await ask(client, {"id": 3, "type": "whoami"}))["data"] == ""  # anonymous
        assert user_group(ALICE) not in connection_groups()


async def test_a_refused_token_leaves_a_session_user_alone(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=ALICE) as client:
        await ask(client, board(1))
        reply = await ask(client, {"id": 2, "type": "whoami", "auth_jwt": "expired"})
        assert reply["code"] == "unauthenticated"
        assert (await ask(client, {"id": 3, "type": "whoami"}))["data"] == "alice"
        assert "board-1" in connection_groups()


async def test_the_same_user_by_token_again_keeps_the_subscriptions(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class, user=ALICE) as client:
        await ask(client, board(1))
        await ask(client, {"id": 2, "type": "whoami", "auth_jwt": "alice-token"})
        await asend_to_group("board-1", note("still here"))
        assert (await next_frame(client))["data"] == "still here"


# --- the edges, on a consumer that is not running ----------------------------------------


def bare(consumer_class: type[Any], layer: Any = None) -> Any:
    consumer = consumer_class()
    consumer.channel_layer = layer
    consumer.channel_name = "inmemory.test!bare"
    consumer.scope = {"type": "websocket"}
    return consumer


async def test_without_a_channel_layer_the_hub_is_not_used(consumer_class: type[Any]) -> None:
    consumer = bare(consumer_class)
    consumer._rohrpost_hub_discard("room")
    consumer._rohrpost_hub_forget()
    await consumer._rohrpost_aswitch_user_group("rohrpost.user.1")
    await consumer._rohrpost_aswitch_user_group("rohrpost.user.1")  # the same: nothing to do
    await consumer._rohrpost_aswitch_user_group(None)
    assert consumer._rohrpost_hub is None


async def test_a_failing_chore_is_logged(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def fail() -> None:
        raise RuntimeError("chore failed")

    consumer = bare(consumer_class)
    with caplog.at_level(logging.ERROR, "rohrpost"):
        consumer._rohrpost_chore(fail())
        await asyncio.sleep(0.01)
    assert "A connection's control work failed" in caplog.text
    assert consumer._rohrpost_chores == set()


async def test_control_events_a_connection_cannot_use_are_logged_or_ignored(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    consumer = bare(consumer_class)
    with caplog.at_level(logging.WARNING, "rohrpost"):
        consumer.rohrpost_control({"action": "explode"})
        consumer.rohrpost_control({"action": "leave", "leave": 5})
    assert caplog.text.count("Ignoring a control event of unknown action") == 2
    consumer._rohrpost_revoke(4003)
    caplog.clear()
    consumer.rohrpost_control({"action": "explode"})  # revoked: nothing more is done
    assert caplog.text == ""


async def test_revoking_twice_or_before_the_connection_runs_is_harmless(
    consumer_class: type[Any],
) -> None:
    consumer = bare(consumer_class)
    consumer._rohrpost_revoke(4003)
    consumer._rohrpost_revoke(4008)
    assert consumer._rohrpost_revoked == 4003
    assert consumer._rohrpost_forwards({"type": "rohrpost.message"}) is False


async def test_expelling_from_a_group_not_joined_sends_nothing(consumer_class: type[Any]) -> None:
    consumer = bare(consumer_class)
    await consumer._rohrpost_aexpel("room", "gone")
    consumer._rohrpost_expel("room", "gone")
    assert not consumer._rohrpost_chores


async def test_a_revoked_connection_takes_no_frame_and_joins_nothing(
    consumer_class: type[Any],
) -> None:
    consumer = bare(consumer_class, get_channel_layer())
    consumer._rohrpost_revoke(4003)
    assert await consumer._rohrpost_atake('{"id": 1, "type": "ping"}', None) == []
    await consumer.aadd_to_group("room")
    assert consumer.rohrpost_groups == set()
    assert connection_groups() == {}


def test_a_revoked_sync_connection_ignores_frames_on_the_threaded_path() -> None:
    consumer = bare(SyncAccess)
    consumer._rohrpost_revoke(4003)
    consumer.receive(text_data='{"id": 1, "type": "note"}')
    assert NOTES == []


async def test_a_cancelled_connection_that_was_not_revoked_is_cancelled(
    consumer_class: type[Any],
) -> None:
    client = StalledClient(consumer_class)
    await client.start()
    assert client.task is not None
    client.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await client.task


async def test_control_events_on_the_connections_own_channel_are_obeyed(
    consumer_class: type[Any],
) -> None:
    layer = get_channel_layer()
    async with connect(consumer_class, user=ALICE) as client:
        await ask(client, board(1))
        channel = (await ask(client, {"id": 2, "type": "channel"}))["data"]
        await layer.send(channel, {"type": "rohrpost.leave", "group": "board-1", "reason": "old"})
        await expect_unsubscribed(client, "board-1", "old")
        await layer.send(channel, {"type": "rohrpost.control", "action": "close", "code": 4003})
        assert await client.receive_output(timeout=1) == {"type": "websocket.close", "code": 4003}


async def test_a_malformed_token_keeps_the_identity_a_token_gave(
    consumer_class: type[Any],
) -> None:
    async with connect(consumer_class) as client:
        await ask(client, board(1, auth_jwt="alice-token"))
        reply = await ask(client, {"id": 2, "type": "whoami", "auth_jwt": 42})
        assert reply["code"] == "unauthenticated"
        assert (await ask(client, {"id": 3, "type": "whoami"}))["data"] == "alice"
        assert "board-1" in connection_groups()


async def test_the_sync_recheck_twins_work_from_sync_code(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=BOB) as client:
        await ask(client, board(2))
        await ask(client, {"id": 2, "type": "subscribe", "data": {"type": "room", "name": "a"}})
        ACCESS[2] = set()
        ACCESS[0] = set()
        await sync_to_async(recheck_group)("board-2")
        await expect_unsubscribed(client, "board-2", "permission")
        await sync_to_async(recheck_subscriptions)("room")
        await expect_unsubscribed(client, "room-a", "permission")


async def test_a_hub_first_used_from_a_sync_handler_still_rechecks(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A hub first used from a sync handler (through async_to_sync) re-checks as usual."""
    async with connect(consumer_class, user=BOB) as client:
        assert (await ask(client, {"id": 1, "type": "join-sync", "data": "lobby"}))["data"] == (
            "joined"
        )
        await ask(client, board(2, 2))
        with caplog.at_level(logging.ERROR, "rohrpost"):
            await arecheck_group("board-2")  # bob may still see it: nothing happens
            assert await client.receive_nothing(timeout=0.2)
        assert "board-2" in connection_groups()
        assert "failed" not in caplog.text


async def test_a_user_group_the_layer_cannot_join_still_takes_control_events(
    consumer_class: type[Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    group_add = layer.group_add

    async def failing_for_users(group: str, channel: str) -> None:
        if group.startswith("rohrpost.user."):
            raise ConnectionError("Redis is down")
        await group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", failing_for_users)
    with caplog.at_level(logging.WARNING, "rohrpost"):
        async with connect(consumer_class, user=ALICE) as client:
            assert "Joining the group 'rohrpost.user.1' failed" in caplog.text
            assert (await ask(client, {"id": 1, "type": "ping"}))["type"] == "pong"
            await aclose_user_connections(ALICE)  # through the hub all the same
            assert await client.receive_output(timeout=2) == {
                "type": "websocket.close",
                "code": 4003,
            }


@pytest.mark.parametrize("how", ["subscribe", "join-sync", "join-later"])
async def test_a_connection_revoked_while_it_joins_a_group_leaves_it_again(
    consumer_class: type[Any], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Cancelled in the middle (an async handler), or finding itself revoked after (a sync one)."""
    from rohrpost.hub import hub_for

    layer = get_channel_layer()
    group_add = layer.group_add
    joining, release = asyncio.Event(), asyncio.Event()

    async def slow_for_boards(group: str, channel: str) -> None:
        if group.startswith("board-"):
            joining.set()
            await release.wait()
        await group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", slow_for_boards)
    request = board(1) if how == "subscribe" else {"id": 1, "type": how, "data": "board-1"}
    async with connect(consumer_class, user=ALICE) as client:
        await client.send_to(text_data=json.dumps(request))
        if how == "join-later":  # answered before the join is under way
            assert (await next_frame(client))["data"] == "started"
        await asyncio.wait_for(joining.wait(), 2)
        await aclose_user_connections(ALICE)
        await until(lambda: not client.output_queue.empty())
        assert await client.receive_output() == {"type": "websocket.close", "code": 4003}
        release.set()
        if how == "join-later":  # not cancelled: it finds the connection revoked
            await asyncio.wait_for(LATER.pop(), 2)
        hub = hub_for(layer)
        await until(lambda: "board-1" not in hub.served and "board-1" not in hub.groups)
        await until(lambda: "board-1" not in connection_groups())
