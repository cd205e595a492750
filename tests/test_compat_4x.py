"""The rohrpost 4.x documentation, example by example: code written for 4.x keeps working.

Each test quotes what it checks from ``reference/rohrpost-4-docs.txt``. The mixins
section is left to the tests of the change feed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.generic.websocket import WebsocketConsumer
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from rohrpost.registry import HandlerRegistry

#: "A typical message would look like this"
TYPICAL_MESSAGE = {"id": 1234, "type": "ping", "data": [1, 2, 3, 4]}


@pytest.fixture(autouse=True)
def fresh_channel_layers() -> Iterator[None]:
    """Each test gets new channel-layer instances (they hold per-loop state)."""
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


async def connected(application: Any, path: str = "/ws/rohrpost/") -> Any:
    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect(timeout=1)
    assert connected
    return communicator


async def ask(communicator: Any, frame: dict[str, Any]) -> Any:
    await communicator.send_to(text_data=json.dumps(frame))
    return json.loads(await communicator.receive_from(timeout=1))


# --- Routing -----------------------------------------------------------------------------


async def test_routing_snippet_import_works_and_the_as_asgi_form_routes() -> None:
    """``from rohrpost.sync_consumer import SyncRohrpostConsumer`` in ``routing.py``.

    Channels 3+ needs ``.as_asgi()`` on the consumer in ``path(...)``.
    """
    from channels.routing import URLRouter
    from django.urls import path

    from rohrpost.sync_consumer import SyncRohrpostConsumer

    websocket_urlpatterns = [
        path("ws/rohrpost/", SyncRohrpostConsumer.as_asgi()),
    ]
    communicator = await connected(URLRouter(websocket_urlpatterns), "/ws/rohrpost/")
    reply = await ask(communicator, TYPICAL_MESSAGE)
    await communicator.disconnect(timeout=1)
    assert reply == {"id": 1234, "type": "pong", "data": {"data": [1, 2, 3, 4]}}


# --- Protocol ----------------------------------------------------------------------------


async def test_typical_message_is_answered_with_the_same_id_and_a_type() -> None:
    """'Both server and client messages look like this': id, type, optional data."""
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    communicator = await connected(SyncRohrpostConsumer.as_asgi())
    reply = await ask(communicator, TYPICAL_MESSAGE)
    await communicator.disconnect(timeout=1)
    assert reply["id"] == 1234
    assert reply["type"] == "pong"
    assert reply["data"] == {"data": [1, 2, 3, 4]}


async def test_missing_handler_error_has_the_documented_shape(registry: HandlerRegistry) -> None:
    """``{"id": 1234, "error": "No registered handler called 'ping'."}`` (plus type and code)."""
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    del registry["ping"]
    communicator = await connected(SyncRohrpostConsumer.as_asgi())
    reply = await ask(communicator, TYPICAL_MESSAGE)
    await communicator.disconnect(timeout=1)
    assert reply["id"] == 1234
    assert reply["error"] == "No registered handler called 'ping'."
    assert reply == {
        "id": 1234,
        "error": "No registered handler called 'ping'.",
        "type": "ping",
        "code": "unknown_type",
    }


async def test_failing_handler_answers_with_at_least_an_error_field(
    registry: HandlerRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """'If there is no such handler or the handler fails, ... at least an error field'."""
    from rohrpost.registry import rohrpost_handler
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    @rohrpost_handler("docs-fails")
    def fails(consumer: Any, request: dict[str, Any]) -> None:
        raise ZeroDivisionError

    communicator = await connected(SyncRohrpostConsumer.as_asgi())
    reply = await ask(communicator, {"id": 1234, "type": "docs-fails"})
    await communicator.disconnect(timeout=1)
    assert reply["id"] == 1234
    assert reply["error"] == "The handler for 'docs-fails' failed."


async def test_all_request_data_reaches_the_handler(registry: HandlerRegistry) -> None:
    """'rohrpost will pass all request data to the handler': data is a convention."""
    from rohrpost.registry import rohrpost_handler
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    seen: list[dict[str, Any]] = []

    @rohrpost_handler("docs-record")
    def record(consumer: Any, request: dict[str, Any]) -> None:
        seen.append(request)

    frame = {"id": 1, "type": "docs-record", "payload": {"x": 1}, "auth_jwt": "token"}
    communicator = await connected(SyncRohrpostConsumer.as_asgi())
    await communicator.send_to(text_data=json.dumps(frame))
    assert await communicator.receive_nothing()
    await communicator.disconnect(timeout=1)
    assert seen == [frame]


# --- Adding Handlers ----------------------------------------------------------------------


def _register_documented_ping_example(name: str) -> Any:
    """The documented ``handle_ping`` example, verbatim, registered as ``name``."""
    from rohrpost.message import send_message
    from rohrpost.registry import rohrpost_handler

    @rohrpost_handler(name)
    def handle_ping(consumer, request):  # type: ignore[no-untyped-def]
        send_message(
            consumer=consumer,
            message_id=request["id"],
            handler="pong",
            data=request.get("data"),
        )

    return handle_ping


def test_documented_handler_example_with_the_test_double(registry: HandlerRegistry) -> None:
    from rohrpost.main import handle_rohrpost_message
    from rohrpost.tests import Consumer

    handler = _register_documented_ping_example("docs-ping")
    assert registry["docs-ping"] is handler
    consumer = Consumer()
    handle_rohrpost_message(consumer, json.dumps({**TYPICAL_MESSAGE, "type": "docs-ping"}))
    handle_rohrpost_message(consumer, '{"id": 5, "type": "docs-ping"}')
    assert consumer.messages == [
        {"id": 1234, "type": "pong", "data": [1, 2, 3, 4]},
        {"id": 5, "type": "pong"},
    ]
    assert consumer.closed is False


@pytest.mark.parametrize("consumer_path", ["sync_consumer", "async_consumer"])
async def test_documented_handler_example_through_a_consumer(
    registry: HandlerRegistry, consumer_path: str
) -> None:
    import importlib

    module = importlib.import_module(f"rohrpost.{consumer_path}")
    consumer_class = getattr(
        module,
        "SyncRohrpostConsumer" if consumer_path == "sync_consumer" else "AsyncRohrpostConsumer",
    )
    _register_documented_ping_example("docs-ping")
    communicator = await connected(consumer_class.as_asgi())
    reply = await ask(communicator, {**TYPICAL_MESSAGE, "type": "docs-ping"})
    assert await communicator.receive_nothing()
    await communicator.disconnect(timeout=1)
    assert reply == {"id": 1234, "type": "pong", "data": [1, 2, 3, 4]}


def test_rohrpost_handler_accepts_a_list_of_names(registry: HandlerRegistry) -> None:
    """'rohrpost_handler ... accepts both a string and a list'."""
    from rohrpost.main import handle_rohrpost_message
    from rohrpost.registry import rohrpost_handler
    from rohrpost.tests import Consumer

    @rohrpost_handler(["docs-a", "docs-b"])
    def both(consumer: Any, request: dict[str, Any]) -> str:
        return request["type"]

    assert registry["docs-a"] is both
    assert registry["docs-b"] is both
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 1, "type": "docs-a"}')
    handle_rohrpost_message(consumer, '{"id": 2, "type": "docs-b"}')
    assert consumer.messages == [
        {"id": 1, "type": "docs-a", "data": "docs-a"},
        {"id": 2, "type": "docs-b", "data": "docs-b"},
    ]


def test_handlers_are_called_with_consumer_and_request_keywords(registry: HandlerRegistry) -> None:
    from rohrpost.main import handle_rohrpost_message
    from rohrpost.registry import rohrpost_handler
    from rohrpost.tests import Consumer

    @rohrpost_handler("docs-keywords")
    def keywords_only(*, consumer: Any, request: dict[str, Any]) -> str:
        return "ok"

    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 1, "type": "docs-keywords"}')
    assert consumer.messages == [{"id": 1, "type": "docs-keywords", "data": "ok"}]


def test_registering_a_taken_name_raises_value_error(registry: HandlerRegistry) -> None:
    from rohrpost.registry import rohrpost_handler

    def another_ping(consumer: Any, request: dict[str, Any]) -> None:
        pass

    with pytest.raises(ValueError, match=r'^Handler for "ping" is already defined'):
        rohrpost_handler("ping")(another_ping)
    with pytest.raises(ValueError, match=r'^Handler for "ping" is already defined'):
        rohrpost_handler(["docs-fresh", "ping"])(another_ping)
    assert "docs-fresh" not in registry
    assert registry["ping"] is not another_ping


def test_handlers_mapping_is_a_dict_4x_code_can_read_and_patch(registry: HandlerRegistry) -> None:
    from rohrpost.handlers import handle_ping
    from rohrpost.main import handle_rohrpost_message
    from rohrpost.registry import HANDLERS
    from rohrpost.tests import Consumer

    assert isinstance(HANDLERS, dict)
    assert HANDLERS["ping"] is handle_ping

    def patched(consumer: Any, request: dict[str, Any]) -> str:
        return "patched"

    HANDLERS["ping"] = patched
    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 1, "type": "ping"}')
    assert consumer.messages == [{"id": 1, "type": "ping", "data": "patched"}]


# --- Utility functions --------------------------------------------------------------------


def test_send_message_documented_arguments() -> None:
    """consumer, handler (required); message_id (random int if absent); error; data."""
    from rohrpost.message import send_message
    from rohrpost.tests import Consumer

    consumer = Consumer()
    send_message(consumer=consumer, handler="h", message_id="abc", error="bad", data={"k": [1]})
    send_message(consumer=consumer, handler="h")
    first, second = consumer.messages
    assert first == {"id": "abc", "type": "h", "error": "bad", "data": {"k": [1]}}
    assert second["type"] == "h"
    assert type(second["id"]) is int
    assert set(second) == {"id", "type"}


def test_send_error_takes_the_arguments_of_send_message() -> None:
    from rohrpost.message import send_error
    from rohrpost.tests import Consumer

    consumer = Consumer()
    send_error(consumer=consumer, handler="h", message_id=1, error="bad", data={"k": 1})
    assert consumer.messages == [
        {"id": 1, "type": "h", "error": "bad", "code": "error", "data": {"k": 1}}
    ]


def test_send_error_without_message_id_generates_one_like_send_message() -> None:
    from rohrpost.message import send_error
    from rohrpost.tests import Consumer

    consumer = Consumer()
    send_error(consumer=consumer, handler="h", error="bad")
    (sent,) = consumer.messages
    assert type(sent["id"]) is int
    assert (sent["type"], sent["error"]) == ("h", "bad")


def test_messages_module_spelling_offers_the_same_helpers() -> None:
    """The docs say both ``rohrpost.message`` and ``rohrpost.messages``."""
    from rohrpost import message, messages

    for name in ("send_message", "send_error", "send_success", "send_to_group", "build_message"):
        assert getattr(messages, name) is getattr(message, name)


async def test_add_to_group_and_messages_send_to_group_reach_the_member(
    registry: HandlerRegistry,
) -> None:
    """'consumer.add_to_group(group_name)' and 'rohrpost.messages.send_to_group'."""
    from rohrpost.messages import send_to_group
    from rohrpost.registry import rohrpost_handler
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    @rohrpost_handler("docs-join")
    def join(consumer: Any, request: dict[str, Any]) -> None:
        consumer.add_to_group(request["data"]["group"])
        consumer.send(text_data=json.dumps({"id": request["id"], "type": "joined"}))

    @rohrpost_handler("docs-leave")
    def leave(consumer: Any, request: dict[str, Any]) -> None:
        consumer.remove_from_group(request["data"]["group"])
        consumer.send(text_data=json.dumps({"id": request["id"], "type": "left"}))

    member = await connected(SyncRohrpostConsumer.as_asgi())
    outsider = await connected(SyncRohrpostConsumer.as_asgi())
    assert await ask(member, {"id": 1, "type": "docs-join", "data": {"group": "news"}}) == {
        "id": 1,
        "type": "joined",
    }
    # From sync code such as a view or a task:
    await sync_to_async(send_to_group)("news", {"id": 2, "type": "headline", "data": {"n": 1}})
    assert json.loads(await member.receive_from(timeout=1)) == {
        "id": 2,
        "type": "headline",
        "data": {"n": 1},
    }
    assert await outsider.receive_nothing()

    await ask(member, {"id": 3, "type": "docs-leave", "data": {"group": "news"}})
    await sync_to_async(send_to_group)("news", {"id": 4, "type": "headline"})
    assert await member.receive_nothing()
    await member.disconnect(timeout=1)
    await outsider.disconnect(timeout=1)


async def test_consumer_close_after_a_message_closes_the_connection(
    registry: HandlerRegistry,
) -> None:
    """'call consumer.close() after sending a message to close the connection'."""
    from rohrpost.message import send_message
    from rohrpost.registry import rohrpost_handler
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    @rohrpost_handler("docs-goodbye")
    def goodbye(consumer: Any, request: dict[str, Any]) -> None:
        send_message(consumer=consumer, handler="goodbye", message_id=request["id"])
        consumer.close()

    communicator = await connected(SyncRohrpostConsumer.as_asgi())
    reply = await ask(communicator, {"id": 1, "type": "docs-goodbye"})
    closing = await communicator.receive_output(timeout=1)
    await communicator.disconnect(timeout=1)
    assert reply == {"id": 1, "type": "goodbye"}
    assert closing == {"type": "websocket.close"}


def test_handle_rohrpost_message_with_the_test_double_records_frames_and_close(
    registry: HandlerRegistry,
) -> None:
    """``handle_rohrpost_message(consumer, text_data)`` with ``rohrpost.tests.Consumer``."""
    from rohrpost.main import handle_rohrpost_message
    from rohrpost.message import send_message
    from rohrpost.registry import rohrpost_handler
    from rohrpost.tests import Consumer

    @rohrpost_handler("docs-close")
    def close_after(consumer: Any, request: dict[str, Any]) -> None:
        send_message(consumer=consumer, handler="bye", message_id=request["id"])
        consumer.close()

    consumer = Consumer()
    handle_rohrpost_message(consumer, '{"id": 1, "type": "ping"}')
    assert consumer.frames == ['{"id":1,"type":"pong"}']
    assert consumer.closed is False
    handle_rohrpost_message(consumer=consumer, text_data='{"id": 2, "type": "docs-close"}')
    assert consumer.frames == ['{"id":1,"type":"pong"}', '{"id":2,"type":"bye"}']
    assert consumer.closed is True


async def test_own_consumer_with_rohrpost_message_receives_group_messages() -> None:
    """'If you use your own consumer implementation, make sure to [add] ... rohrpost_message'."""
    from rohrpost.main import handle_rohrpost_message
    from rohrpost.messages import send_to_group

    class OwnConsumer(WebsocketConsumer):
        def connect(self) -> None:
            self.accept()
            async_to_sync(self.channel_layer.group_add)("own", self.channel_name)

        def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            assert isinstance(self, WebsocketConsumer)
            handle_rohrpost_message(self, text_data)

        def rohrpost_message(self, event: dict[str, Any]) -> None:
            message = event["message"]
            if not isinstance(message, str):
                message = json.dumps(message)
            self.send(text_data=message)

    communicator = await connected(OwnConsumer.as_asgi())
    assert await ask(communicator, {"id": 1, "type": "ping", "data": {"a": 1}}) == {
        "id": 1,
        "type": "pong",
        "data": {"a": 1},
    }
    await sync_to_async(send_to_group)("own", {"id": 2, "type": "news"})
    assert await communicator.receive_from(timeout=1) == '{"id":2,"type":"news"}'
    await communicator.disconnect(timeout=1)


async def test_handlers_receive_a_websocket_consumer_instance(registry: HandlerRegistry) -> None:
    """'Your handlers [receive] an instance of channels.generic.websocket.WebsocketConsumer'."""
    from rohrpost.registry import rohrpost_handler
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    @rohrpost_handler("docs-what")
    def what(consumer: Any, request: dict[str, Any]) -> bool:
        return isinstance(consumer, WebsocketConsumer)

    communicator = await connected(SyncRohrpostConsumer.as_asgi())
    reply = await ask(communicator, {"id": 1, "type": "docs-what"})
    await communicator.disconnect(timeout=1)
    assert reply == {"id": 1, "type": "docs-what", "data": True}


async def test_groups_are_left_on_disconnect(registry: HandlerRegistry) -> None:
    from channels.layers import get_channel_layer

    from rohrpost.registry import rohrpost_handler
    from rohrpost.sync_consumer import SyncRohrpostConsumer

    @rohrpost_handler("docs-join")
    def join(consumer: Any, request: dict[str, Any]) -> str:
        consumer.add_to_group("docs-group")
        return consumer.channel_name  # type: ignore[no-any-return]

    communicator = await connected(SyncRohrpostConsumer.as_asgi())
    channel_name = (await ask(communicator, {"id": 1, "type": "docs-join"}))["data"]
    layer = get_channel_layer()
    assert channel_name.startswith("specific.")
    assert len(layer.groups["docs-group"]) == 1  # the process's hub holds the membership
    await communicator.disconnect(timeout=1)
    for _ in range(100):
        if "docs-group" not in layer.groups:
            break
        await asyncio.sleep(0.01)
    assert "docs-group" not in layer.groups
