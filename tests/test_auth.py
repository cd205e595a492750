"""Tests for rohrpost.auth: the token hook for ``auth_jwt`` and refusing anonymous clients."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from rohrpost import AsyncRohrpostConsumer, Forbidden, SyncRohrpostConsumer
from rohrpost.auth import CLOSE_UNAUTHENTICATED, Authenticator, resolve_hook
from rohrpost.control import aclose_user_connections, user_group
from rohrpost.registry import HandlerRegistry
from tests.communicators import ask, connect, connection_groups

ALICE = SimpleNamespace(pk=1, username="alice", is_authenticated=True)
BOB = SimpleNamespace(pk=2, username="bob", is_authenticated=True)
ANONYMOUS = SimpleNamespace(pk=None, username="", is_authenticated=False)

#: The tokens the test hooks know.
TOKENS: dict[str, Any] = {"alice-token": ALICE, "bob-token": BOB, "anon-token": ANONYMOUS}

pytestmark = [
    # Handlers outside the event loop check the database connections first.
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layers"),
]


def user_for_token(token: str, scope: Any) -> Any:
    """A sync token hook (named by a dotted path in the settings)."""
    if token == "forbidden-token":
        raise Forbidden("This token was revoked.", data={"revoked": True})
    if token == "unencodable-token":
        raise Forbidden("Revoked.", data={"when": object()})
    if token == "broken-token":
        raise RuntimeError("the token store is down")
    return TOKENS.get(token)


async def auser_for_token(token: str, scope: Any) -> Any:
    """An async token hook."""
    return TOKENS.get(token)


class AsyncHookObject:
    """A callable object whose ``__call__`` is async counts as an async hook."""

    async def __call__(self, token: str, scope: Any) -> Any:
        return TOKENS.get(token)


@pytest.fixture(params=[AsyncRohrpostConsumer, SyncRohrpostConsumer], ids=["async", "sync"])
def consumer_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def whoami_handler(registry: HandlerRegistry) -> list[dict[str, Any]]:
    """``whoami`` answers the connection's user name; the list records the requests seen."""
    seen: list[dict[str, Any]] = []

    @registry.handler("whoami")
    def whoami(consumer: Any, request: dict[str, Any]) -> str:
        seen.append(request)
        return getattr(consumer.scope.get("user"), "username", "nobody")

    return seen


def whoami(request_id: int = 1, **fields: Any) -> dict[str, Any]:
    return {"id": request_id, "type": "whoami", **fields}


def unauthenticated(request_id: int, message: str) -> dict[str, Any]:
    return {"id": request_id, "type": "whoami", "error": message, "code": "unauthenticated"}


# --- off by default: 4.x behaviour ------------------------------------------------------


async def test_without_settings_the_token_reaches_the_handler_untouched(
    consumer_class: type[Any], whoami_handler: list[dict[str, Any]]
) -> None:
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, whoami(auth_jwt="alice-token"))
    assert reply == {"id": 1, "type": "whoami", "data": "nobody"}
    assert whoami_handler == [whoami(auth_jwt="alice-token")]


def test_from_settings_is_none_when_nothing_is_asked_for(settings: Any) -> None:
    settings.ROHRPOST = {}
    assert Authenticator.from_settings() is None


# --- the token hook ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "hook",
    ["tests.test_auth.user_for_token", auser_for_token, AsyncHookObject()],
    ids=["sync-dotted-path", "async-function", "async-callable-object"],
)
async def test_a_valid_token_makes_its_user_the_connections_user(
    settings: Any, consumer_class: type[Any], hook: Any, whoami_handler: list[dict[str, Any]]
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": hook}
    async with connect(consumer_class) as communicator:
        assert (await ask(communicator, whoami(auth_jwt="alice-token")))["data"] == "alice"
        # The connection stays authenticated for the requests that follow.
        assert (await ask(communicator, whoami(2)))["data"] == "alice"
        assert len(get_channel_layer().groups[user_group(ALICE)]) == 1
    # The handler saw the request as sent, token included.
    assert whoami_handler[0]["auth_jwt"] == "alice-token"
    assert user_group(ALICE) not in get_channel_layer().groups


async def test_a_token_authenticated_connection_can_be_closed_by_user(
    settings: Any, consumer_class: type[Any]
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": auser_for_token}
    async with connect(consumer_class) as communicator:
        await ask(communicator, whoami(auth_jwt="alice-token"))
        await aclose_user_connections(ALICE)
        assert await communicator.receive_output(timeout=1) == {
            "type": "websocket.close",
            "code": 4003,
        }


async def test_a_token_of_another_user_moves_the_connection_to_that_users_group(
    settings: Any, consumer_class: type[Any]
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": auser_for_token}
    async with connect(consumer_class, user=ALICE) as communicator:
        assert (await ask(communicator, whoami(auth_jwt="alice-token")))["data"] == "alice"
        assert (await ask(communicator, whoami(2, auth_jwt="bob-token")))["data"] == "bob"
        groups = get_channel_layer().groups
        assert user_group(ALICE) not in groups
        assert len(groups[user_group(BOB)]) == 1


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("wrong-token", "The token is not valid."),
        ("anon-token", "The token is not valid."),  # a user that is not authenticated
        (42, "'auth_jwt' must be a string."),
        (["alice-token"], "'auth_jwt' must be a string."),
    ],
)
async def test_a_bad_token_is_refused_and_the_handler_not_called(
    settings: Any,
    consumer_class: type[Any],
    whoami_handler: list[dict[str, Any]],
    token: Any,
    message: str,
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": "tests.test_auth.user_for_token"}
    async with connect(consumer_class, user=ALICE) as communicator:
        assert await ask(communicator, whoami(7, auth_jwt=token)) == unauthenticated(7, message)
        # The connection keeps its user: a bad token does not log it out.
        assert (await ask(communicator, whoami(8)))["data"] == "alice"
    assert len(whoami_handler) == 1


async def test_a_null_token_counts_as_no_token(settings: Any, consumer_class: type[Any]) -> None:
    # rohrpost.js sends `auth_jwt: null` when it has no token.
    settings.ROHRPOST = {"AUTHENTICATE": auser_for_token}
    async with connect(consumer_class, user=ALICE) as communicator:
        assert (await ask(communicator, whoami(auth_jwt=None)))["data"] == "alice"


@pytest.mark.parametrize("token", [None, ""])
async def test_an_empty_token_counts_as_no_token_and_reaches_the_handler(
    settings: Any,
    consumer_class: type[Any],
    whoami_handler: list[dict[str, Any]],
    token: str | None,
) -> None:
    """rohrpost.js 0.6 sends `auth_jwt: ""` on every call when its `token` option is unset."""
    settings.ROHRPOST = {"AUTHENTICATE": "tests.test_auth.user_for_token"}
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, whoami(1, auth_jwt=token))
        assert reply == {"id": 1, "type": "whoami", "data": "nobody"}
    async with connect(consumer_class, user=ALICE) as communicator:
        assert (await ask(communicator, whoami(2, auth_jwt=token)))["data"] == "alice"
    # The handler sees the request as sent, the empty field included.
    assert [request.get("auth_jwt", "missing") for request in whoami_handler] == [token, token]


async def test_an_empty_token_does_not_authenticate_where_authentication_is_required(
    settings: Any, consumer_class: type[Any], whoami_handler: list[dict[str, Any]]
) -> None:
    settings.ROHRPOST = {"REQUIRE_AUTHENTICATION": True, "AUTHENTICATE": auser_for_token}
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, whoami(1, auth_jwt=""))
        assert reply == unauthenticated(1, "Authentication required.")
        assert await ask(communicator, {"id": 2, "type": "ping", "auth_jwt": ""}) == {
            "id": 2,
            "type": "pong",
        }
    assert whoami_handler == []


async def test_a_hook_may_refuse_with_its_own_error(
    settings: Any, consumer_class: type[Any]
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": user_for_token}
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, whoami(3, auth_jwt="forbidden-token"))
    assert reply == {
        "id": 3,
        "type": "whoami",
        "error": "This token was revoked.",
        "code": "forbidden",
        "data": {"revoked": True},
    }


async def test_a_hook_error_that_cannot_be_encoded_is_a_plain_refusal(
    settings: Any, consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": user_for_token}
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, whoami(3, auth_jwt="unencodable-token"))
    assert reply == unauthenticated(3, "The token is not valid.")
    assert "token hook's error" in caplog.text


async def test_a_failing_hook_is_logged_and_refuses(
    settings: Any, consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": user_for_token}
    with caplog.at_level(logging.ERROR, logger="rohrpost"):
        async with connect(consumer_class) as communicator:
            reply = await ask(communicator, whoami(4, auth_jwt="broken-token"))
    assert reply == unauthenticated(4, "The token could not be checked.")
    assert "the token store is down" in caplog.text
    assert "the token store is down" not in json.dumps(reply)


async def test_an_unusable_hook_setting_refuses_every_token(
    settings: Any, consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": "tests.test_auth.no_such_hook"}
    with caplog.at_level(logging.ERROR, logger="rohrpost"):
        async with connect(consumer_class) as communicator:
            reply = await ask(communicator, whoami(5, auth_jwt="alice-token"))
            assert (await ask(communicator, whoami(6)))["data"] == "nobody"
    assert reply == unauthenticated(5, "The token is not valid.")
    assert "ROHRPOST['AUTHENTICATE'] is unusable" in caplog.text


async def test_inline_handlers_are_authenticated_too(
    settings: Any, consumer_class: type[Any]
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": auser_for_token}
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 1, "type": "ping", "auth_jwt": "wrong-token"})
        assert reply["code"] == "unauthenticated"
        reply = await ask(communicator, {"id": 2, "type": "ping", "auth_jwt": "alice-token"})
        assert reply == {"id": 2, "type": "pong"}


async def test_a_hook_that_reads_the_database(settings: Any, consumer_class: type[Any]) -> None:
    # The sync hook runs in a worker thread, where the ORM may be used.
    user = await sync_to_async(get_user_model().objects.create_user)("carol", password="x")
    settings.ROHRPOST = {"AUTHENTICATE": "tests.test_auth.user_by_name"}
    async with connect(consumer_class) as communicator:
        assert (await ask(communicator, whoami(auth_jwt="carol")))["data"] == "carol"
        assert (await ask(communicator, whoami(2, auth_jwt="dave")))["code"] == "unauthenticated"
    assert user.username == "carol"


def user_by_name(token: str, scope: Any) -> Any:
    """A token hook backed by the database: the token is a user name."""
    return get_user_model().objects.filter(username=token).first()


# --- REQUIRE_AUTHENTICATION -------------------------------------------------------------


async def test_required_authentication_closes_an_anonymous_connection_with_4001(
    settings: Any, consumer_class: type[Any]
) -> None:
    settings.ROHRPOST = {"REQUIRE_AUTHENTICATION": True}
    for user in (None, ANONYMOUS):
        communicator = WebsocketCommunicator(consumer_class.as_asgi(), "/ws/rohrpost/")
        if user is not None:
            communicator.scope["user"] = user
        connected, _ = await communicator.connect(timeout=1)
        assert connected  # accepted, so that the client sees the code
        assert await communicator.receive_output(timeout=1) == {
            "type": "websocket.close",
            "code": CLOSE_UNAUTHENTICATED,
        }
        await communicator.disconnect(timeout=1)


async def test_an_invalid_require_setting_fails_closed(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ROHRPOST = {"REQUIRE_AUTHENTICATION": "no"}
    with caplog.at_level(logging.ERROR, logger="rohrpost"):
        authenticator = Authenticator.from_settings()
    assert authenticator is not None
    assert authenticator.refuses_connection({"user": ANONYMOUS})
    assert "taken as True" in caplog.text


async def test_required_authentication_lets_a_logged_in_user_in(
    settings: Any, consumer_class: type[Any]
) -> None:
    settings.ROHRPOST = {"REQUIRE_AUTHENTICATION": True}
    async with connect(consumer_class, user=ALICE) as communicator:
        assert (await ask(communicator, whoami()))["data"] == "alice"


async def test_with_a_hook_anonymous_clients_must_send_a_token_except_for_ping(
    settings: Any, consumer_class: type[Any], whoami_handler: list[dict[str, Any]]
) -> None:
    settings.ROHRPOST = {"REQUIRE_AUTHENTICATION": True, "AUTHENTICATE": auser_for_token}
    async with connect(consumer_class) as communicator:
        assert await ask(communicator, whoami(1)) == unauthenticated(1, "Authentication required.")
        assert await ask(communicator, {"id": 2, "type": "ping"}) == {"id": 2, "type": "pong"}
        wrong = await ask(communicator, whoami(3, auth_jwt="wrong-token"))
        assert wrong == unauthenticated(3, "The token is not valid.")
        assert (await ask(communicator, whoami(4, auth_jwt="bob-token")))["data"] == "bob"
        assert (await ask(communicator, whoami(5)))["data"] == "bob"
    assert [request["id"] for request in whoami_handler] == [4, 5]


async def test_a_refused_connection_joins_no_group(settings: Any) -> None:
    settings.ROHRPOST = {"REQUIRE_AUTHENTICATION": True}
    communicator = WebsocketCommunicator(AsyncRohrpostConsumer.as_asgi(), "/ws/rohrpost/")
    await communicator.connect(timeout=1)
    await communicator.receive_output(timeout=1)
    assert connection_groups() == {}
    await communicator.disconnect(timeout=1)


# --- the sync consumer's threaded path ----------------------------------------------------


class OverridingReceive(SyncRohrpostConsumer):
    """A 4.x-style subclass: its own ``receive`` puts every frame on the threaded path."""

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        super().receive(text_data, bytes_data)


async def test_the_threaded_path_authenticates_too(settings: Any) -> None:
    settings.ROHRPOST = {"REQUIRE_AUTHENTICATION": True, "AUTHENTICATE": user_for_token}
    async with connect(OverridingReceive) as communicator:
        assert await ask(communicator, whoami(1)) == unauthenticated(1, "Authentication required.")
        assert (await ask(communicator, {"id": 2, "type": "nope"}))["code"] == "unknown_type"
        assert (await ask(communicator, whoami(3, auth_jwt="alice-token")))["data"] == "alice"
        assert (await ask(communicator, whoami(4)))["data"] == "alice"


# --- resolve_hook -----------------------------------------------------------------------


def test_resolve_hook() -> None:
    assert resolve_hook(None) is None
    assert resolve_hook("tests.test_auth.user_for_token") is user_for_token
    assert resolve_hook(auser_for_token) is auser_for_token
    with pytest.raises(ImportError):
        resolve_hook("tests.test_auth.missing")
    with pytest.raises(TypeError):
        resolve_hook("tests.test_auth.TOKENS")
