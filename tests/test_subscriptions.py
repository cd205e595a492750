"""Tests for rohrpost.subscriptions: who may join which group, and the wire format."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer
from rohrpost.handlers import handle_ping
from rohrpost.hub import CONTROL_GROUP
from rohrpost.message import asend_to_group
from rohrpost.registry import HandlerRegistry
from rohrpost.subscriptions import Subscriptions
from tests.communicators import ask, connect, connection_groups

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layers"),
]

seen_by_permission: list[tuple[Any, Any, dict[str, Any]]] = []


def make_subscriptions(max_per_connection: int = 100) -> Subscriptions:
    subscriptions = Subscriptions(max_per_connection=max_per_connection)

    @subscriptions.declare("board", group=lambda data: f"board-{int(data['id'])}")
    def may_see_board(user: Any, scope: dict[str, Any], data: dict[str, Any]) -> bool:
        seen_by_permission.append((user, scope.get("path"), data))
        return bool(user is not None and data["id"] != 13)

    @subscriptions.declare("room", group=lambda data: str(data["name"]))
    async def may_enter_room(user: Any, scope: dict[str, Any], data: dict[str, Any]) -> bool:
        return True

    return subscriptions


def registry_with(subscriptions: Subscriptions) -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("ping", handle_ping, inline=True)
    subscriptions.install(registry)
    return registry


REGISTRY = registry_with(make_subscriptions())
CAPPED = registry_with(make_subscriptions(max_per_connection=2))


class AsyncSubscriber(AsyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


class SyncSubscriber(SyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


class CappedSubscriber(AsyncRohrpostConsumer):
    rohrpost_registry = CAPPED


@pytest.fixture(autouse=True)
def clear_seen() -> None:
    seen_by_permission.clear()


@pytest.fixture(params=[AsyncSubscriber, SyncSubscriber], ids=["async", "sync"])
def consumer_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


def connect_as(consumer_class: type[Any], user: Any = "alice") -> Any:
    return connect(consumer_class, user=user)


async def subscribe(client: WebsocketCommunicator, data: Any, request_id: int = 1) -> Any:
    return await ask(client, {"id": request_id, "type": "subscribe", "data": data})


def members(group: str) -> set[str]:
    return set(get_channel_layer().groups.get(group, {}))


async def test_allowed_subscription_joins_the_group_and_answers_its_name(
    consumer_class: type[Any],
) -> None:
    async with connect_as(consumer_class) as client:
        reply = await ask(
            client, {"id": 1, "type": "subscribe", "data": {"type": "board", "id": 5}}
        )
        assert reply == {"id": 1, "type": "subscribe", "data": {"group": "board-5"}}
        assert len(members("board-5")) == 1
        await asend_to_group("board-5", {"id": 9, "type": "x"})
        assert json.loads(await client.receive_from(timeout=1)) == {"id": 9, "type": "x"}


async def test_the_permission_sees_the_user_the_scope_and_the_group_object(
    consumer_class: type[Any],
) -> None:
    async with connect_as(consumer_class, user="bob") as client:
        await ask(client, {"id": 1, "type": "subscribe", "data": {"type": "board", "id": 5}})
    assert seen_by_permission == [("bob", "/ws/rohrpost/", {"type": "board", "id": 5})]


@pytest.mark.parametrize(
    ("data", "user", "code"),
    [
        ({"type": "board", "id": 13}, "alice", "forbidden"),  # the permission says no
        ({"type": "board", "id": 5}, None, "forbidden"),  # no user
        ({"type": "secret", "id": 1}, "alice", "forbidden"),  # undeclared
        ({"type": "board"}, "alice", "invalid"),  # the group callable fails
        ({"type": "board", "id": "x"}, "alice", "invalid"),
        ({"type": "room", "name": "ü-nicode"}, "alice", "invalid"),  # a name layers reject
        ({"type": "room", "name": "n" * 100}, "alice", "invalid"),
        ("board-5", "alice", "invalid"),  # not a group object
        ({"id": 5}, "alice", "invalid"),
    ],
)
async def test_refused_subscriptions_answer_an_error_and_join_nothing(
    consumer_class: type[Any], data: Any, user: Any, code: str
) -> None:
    async with connect_as(consumer_class, user=user) as client:
        reply = await ask(client, {"id": 2, "type": "subscribe", "data": data})
        assert reply["code"] == code
        assert reply["id"] == 2
        assert "data" not in reply or reply["data"] is None
        assert connection_groups() == {}
        await ask(client, {"id": 3, "type": "ping"})  # still open


async def test_subscribing_twice_joins_once_and_delivers_once(consumer_class: type[Any]) -> None:
    async with connect_as(consumer_class) as client:
        frame = {"id": 1, "type": "subscribe", "data": {"type": "room", "name": "lobby"}}
        first, second = await ask(client, frame), await ask(client, frame)
        assert first == second == {"id": 1, "type": "subscribe", "data": {"group": "lobby"}}
        await asend_to_group("lobby", '{"id":7,"type":"once"}')
        assert await client.receive_from(timeout=1) == '{"id":7,"type":"once"}'
        assert await client.receive_nothing(timeout=0.1)


async def test_unsubscribe_leaves_the_group_and_unjoined_is_harmless(
    consumer_class: type[Any],
) -> None:
    async with connect_as(consumer_class) as client:
        data = {"type": "room", "name": "lobby"}
        await ask(client, {"id": 1, "type": "subscribe", "data": data})
        reply = await ask(client, {"id": 2, "type": "unsubscribe", "data": data})
        assert reply == {"id": 2, "type": "unsubscribe", "data": {"group": "lobby"}}
        assert members("lobby") == set()
        await asend_to_group("lobby", '{"id":7,"type":"gone"}')
        assert await client.receive_nothing(timeout=0.1)
        again = await ask(client, {"id": 3, "type": "unsubscribe", "data": data})
        assert again == {"id": 3, "type": "unsubscribe", "data": {"group": "lobby"}}


async def test_the_subscription_cap_answers_limit_but_resubscribing_still_works() -> None:
    async with connect_as(CappedSubscriber) as client:
        for number, name in enumerate(["a", "b"]):
            data = {"type": "room", "name": name}
            reply = await ask(client, {"id": number, "type": "subscribe", "data": data})
            assert reply["data"] == {"group": name}
        third = await ask(
            client, {"id": 9, "type": "subscribe", "data": {"type": "room", "name": "c"}}
        )
        assert third["code"] == "limit"
        assert members("c") == set()
        again = await ask(
            client, {"id": 10, "type": "subscribe", "data": {"type": "room", "name": "a"}}
        )
        assert again["data"] == {"group": "a"}


async def test_disconnect_removes_every_membership(consumer_class: type[Any]) -> None:
    async with connect_as(consumer_class) as client:
        for name in ("one", "two", "three"):
            await ask(
                client, {"id": 1, "type": "subscribe", "data": {"type": "room", "name": name}}
            )
        assert all(len(members(name)) == 1 for name in ("one", "two", "three"))
    assert connection_groups() == {}


async def test_no_member_is_left_behind_in_redis_after_many_connections(
    redis_url: str, settings: Any
) -> None:
    prefix = f"rohrpost-subs-{uuid.uuid4().hex[:10]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": prefix},
        }
    }
    channel_layers.backends = {}
    layer = get_channel_layer()
    try:
        for cycle in range(1000):
            async with connect_as(AsyncSubscriber) as client:
                data = {"type": "room", "name": f"cycle-{cycle % 5}"}
                await ask(client, {"id": cycle, "type": "subscribe", "data": data})
        connection = layer.connection(0)
        for name in range(5):
            assert await connection.zcard(layer._group_key(f"cycle-{name}")) == 0
        # One membership stays: the process's hub, in its control group.
        assert await connection.zcard(layer._group_key(CONTROL_GROUP)) == 1
    finally:
        await layer.flush()
        await layer.close_pools()


def test_declaring_a_kind_twice_is_refused() -> None:
    subscriptions = Subscriptions()
    subscriptions.declare("x", group=str)(lambda user, scope, data: True)
    with pytest.raises(ValueError, match='Group object "x" is already declared'):
        subscriptions.declare("x", group=str)(lambda user, scope, data: True)


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Subscriptions(max_per_connection=0)


def test_install_registers_on_the_default_registry_when_none_is_given(
    registry: HandlerRegistry,
) -> None:
    subscriptions = Subscriptions()
    subscriptions.install()
    assert registry["subscribe"] == subscriptions.subscribe
    assert registry["unsubscribe"] == subscriptions.unsubscribe


def test_installing_beside_an_own_subscribe_handler_is_refused(registry: HandlerRegistry) -> None:
    registry.register("subscribe", lambda consumer, request: None)
    with pytest.raises(ValueError, match='Handler for "subscribe" is already defined'):
        Subscriptions().install()
