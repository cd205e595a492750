"""Tests for rohrpost.control: expelling connections from groups, closing a user's."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer
from rohrpost.control import (
    CLOSE_EVENT_TYPE,
    CLOSE_REVOKED,
    LEAVE_EVENT_TYPE,
    aclose_user_connections,
    aexpel_from_group,
    close_user_connections,
    expel_from_group,
    user_group,
)
from rohrpost.message import asend_to_group
from rohrpost.registry import HandlerRegistry
from tests.communicators import connect, connection_groups

ALICE = SimpleNamespace(pk=1, is_authenticated=True)
BOB = SimpleNamespace(pk=2, is_authenticated=True)
ANONYMOUS = SimpleNamespace(pk=None, is_authenticated=False)

pytestmark = pytest.mark.usefixtures("fresh_channel_layers")


@pytest.fixture(params=[AsyncRohrpostConsumer, SyncRohrpostConsumer], ids=["async", "sync"])
def consumer_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def join_handler(registry: HandlerRegistry) -> None:
    @registry.handler("test.join")
    async def join_group(consumer: Any, request: dict[str, Any]) -> str:
        await consumer.aadd_to_group(request["data"])
        return "joined"


async def join(communicator: WebsocketCommunicator, group: str) -> None:
    """Join ``group`` through a handler, as an application does."""
    await communicator.send_to(text_data=json.dumps({"id": 0, "type": "test.join", "data": group}))
    assert json.loads(await communicator.receive_from(timeout=1))["data"] == "joined"


async def test_an_authenticated_connection_is_in_its_users_group(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=ALICE):
        assert len(get_channel_layer().groups[user_group(ALICE)]) == 1
    assert user_group(ALICE) not in get_channel_layer().groups


async def test_an_anonymous_connection_is_in_no_user_group(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=ANONYMOUS) as client:
        await client.send_to(text_data='{"id": 1, "type": "ping"}')
        await client.receive_from(timeout=1)
        assert connection_groups() == {}


def test_user_group_accepts_a_user_or_a_primary_key() -> None:
    assert user_group(ALICE) == user_group(1) == "rohrpost.user.1"


async def test_expel_takes_every_member_out_and_tells_each_client(
    consumer_class: type[Any],
) -> None:
    async with (
        connect(consumer_class, user=ALICE) as alice,
        connect(consumer_class, user=BOB) as bob,
    ):
        for client in (alice, bob):
            await join(client, "board-5")
        await aexpel_from_group("board-5", reason="board deleted")
        for client in (alice, bob):
            push = json.loads(await client.receive_from(timeout=1))
            assert push["type"] == "unsubscribed"
            assert push["data"] == {"group": "board-5", "reason": "board deleted"}
            assert isinstance(push["id"], int)
        await asend_to_group("board-5", '{"id":3,"type":"after"}')
        assert await alice.receive_nothing(timeout=0.1)
        assert await bob.receive_nothing(timeout=0.1)


async def test_expel_of_one_user_leaves_the_others_in_the_group(consumer_class: type[Any]) -> None:
    async with (
        connect(consumer_class, user=ALICE) as alice,
        connect(consumer_class, user=BOB) as bob,
    ):
        for client in (alice, bob):
            await join(client, "board-5")
        await aexpel_from_group("board-5", user=ALICE)
        assert json.loads(await alice.receive_from(timeout=1))["data"] == {
            "group": "board-5",
            "reason": None,
        }
        await asend_to_group("board-5", '{"id":3,"type":"after"}')
        assert await bob.receive_from(timeout=1) == '{"id":3,"type":"after"}'
        assert await alice.receive_nothing(timeout=0.1)


async def test_close_user_connections_closes_all_of_that_user_only(
    consumer_class: type[Any],
) -> None:
    async with (
        connect(consumer_class, user=ALICE) as first,
        connect(consumer_class, user=ALICE) as second,
        connect(consumer_class, user=BOB) as bob,
    ):
        await aclose_user_connections(ALICE)
        for client in (first, second):
            assert await client.receive_output(timeout=1) == {
                "type": "websocket.close",
                "code": CLOSE_REVOKED,
            }
        await bob.send_to(text_data='{"id": 4, "type": "ping"}')
        assert json.loads(await bob.receive_from(timeout=1)) == {"id": 4, "type": "pong"}


async def test_close_user_connections_uses_the_given_code(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=ALICE) as alice:
        await aclose_user_connections(1, code=4100)
        assert await alice.receive_output(timeout=1) == {"type": "websocket.close", "code": 4100}


async def test_the_sync_twins_work_from_sync_code(consumer_class: type[Any]) -> None:
    async with connect(consumer_class, user=ALICE) as alice:
        await join(alice, "room")
        await sync_to_async(expel_from_group)("room", reason="bye")
        assert json.loads(await alice.receive_from(timeout=1))["data"]["reason"] == "bye"
        await sync_to_async(close_user_connections)(ALICE)
        assert (await alice.receive_output(timeout=1))["code"] == CLOSE_REVOKED


async def test_malformed_control_events_do_not_end_the_connection(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rohrpost")
    async with connect(consumer_class, user=ALICE) as alice:
        layer = get_channel_layer()
        await layer.group_send(user_group(ALICE), {"type": LEAVE_EVENT_TYPE})
        assert await alice.receive_nothing(timeout=0.1)
        await alice.send_to(text_data='{"id": 5, "type": "ping"}')
        assert json.loads(await alice.receive_from(timeout=1)) == {"id": 5, "type": "pong"}
        await layer.group_send(user_group(ALICE), {"type": CLOSE_EVENT_TYPE, "code": "x"})
        assert (await alice.receive_output(timeout=1))["code"] == CLOSE_REVOKED
    assert any("without a group" in record.getMessage() for record in caplog.records)
