"""Tests for rohrpost.typed: typed handlers validate data, answer `invalid`, encode replies."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from pydantic import BaseModel, Field

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer
from rohrpost.exceptions import InvalidData
from rohrpost.registry import HandlerRegistry, handler_mode, rohrpost_handler
from rohrpost.subscriptions import Subscriptions
from rohrpost.testing import CallError, TestClient
from rohrpost.typed import HandlerTypes, handler_types

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layers"),
]


class Item(BaseModel):
    title: str = Field(min_length=1)
    amount: int = 1


class Order(BaseModel):
    customer: str
    items: list[Item]


class Line(BaseModel):
    title: str
    total: int


@dataclasses.dataclass
class Receipt:
    lines: int
    customer: str


class Room(BaseModel):
    type: str
    name: str = Field(pattern=r"^[a-z]+$")


calls: list[Any] = []
REGISTRY = HandlerRegistry()
subscriptions = Subscriptions()


@REGISTRY.handler("order.lines")
def order_lines(consumer: Any, request: dict[str, Any], data: Order) -> list[Line]:
    calls.append(data)
    return [Line(title=item.title, total=item.amount) for item in data.items]


@REGISTRY.handler("order.receipt", data=Order)
async def order_receipt(consumer: Any, request: dict[str, Any], data: Any) -> Receipt:
    calls.append(data)
    return Receipt(lines=len(data.items), customer=data.customer)


@REGISTRY.handler("order.count", inline=True, data=Order)
def order_count(consumer: Any, request: dict[str, Any], data: Any) -> Any:
    calls.append(data)
    return {"items": len(data.items)}


@REGISTRY.handler("order.check", data=Order)
def order_check(consumer: Any, request: dict[str, Any]) -> Any:
    """Validated without taking the value: reads the raw request as in 4.x."""
    return request["data"]["customer"]


@REGISTRY.handler("order.first", reply=Line)
def order_first(consumer: Any, request: dict[str, Any], data: Order) -> Any:
    first = Line(title=data.items[0].title, total=0)
    return {"title": first.title} if request.get("wrong") else first


@REGISTRY.handler("numbers.sum")
def numbers_sum(consumer: Any, request: dict[str, Any], data: list[int]) -> int:
    return sum(data)


@REGISTRY.handler("nothing")
async def nothing(consumer: Any, request: dict[str, Any], data: Order | None = None) -> None:
    return None


@REGISTRY.handler("items.untyped_reply")
def items_untyped_reply(consumer: Any, request: dict[str, Any], data):  # type: ignore[no-untyped-def]
    """Takes anything; returns models without declaring them."""
    return [Item(title=str(data))] if data != "plain" else {"plain": True}


@REGISTRY.handler("order.async_check", data=Order)
async def order_async_check(consumer: Any, request: dict[str, Any]) -> Any:
    return request["data"]["customer"]


class Counter:
    """A callable object as a typed handler: its ``__call__`` is annotated."""

    def __call__(self, consumer: Any, request: dict[str, Any], data: list[int]) -> int:
        return len(data)


REGISTRY.register("count", Counter())


@subscriptions.declare("room", group=lambda room: f"room-{room.name}", data=Room, push=Line)
def may_enter(user: Any, scope: dict[str, Any], room: Room) -> bool:
    calls.append(room)
    return room.name != "secret"


subscriptions.install(REGISTRY)


class AsyncShop(AsyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


class SyncShop(SyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


ORDER = {"customer": "ada", "items": [{"title": "tea", "amount": 2}, {"title": "cake"}]}


@pytest.fixture(params=[AsyncShop, SyncShop], ids=["async", "sync"])
def consumer_class(request: pytest.FixtureRequest) -> type[Any]:
    calls.clear()
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("request_type", "reply"),
    [
        ("order.lines", [{"title": "tea", "total": 2}, {"title": "cake", "total": 1}]),
        ("order.receipt", {"lines": 2, "customer": "ada"}),
        ("order.count", {"items": 2}),
    ],
)
async def test_each_kind_of_handler_gets_the_validated_model_and_its_reply_is_encoded(
    consumer_class: type[Any], request_type: str, reply: Any
) -> None:
    async with TestClient(consumer_class.as_asgi()) as client:
        assert await client.call(request_type, ORDER) == reply
    assert calls == [Order.model_validate(ORDER)]


@pytest.mark.parametrize("request_type", ["order.lines", "order.receipt", "order.count"])
async def test_bad_data_is_answered_invalid_with_every_field_path_and_the_handler_not_called(
    consumer_class: type[Any], request_type: str
) -> None:
    bad = {"items": [{"title": "tea"}, {"title": "", "amount": "many"}]}
    async with TestClient(consumer_class.as_asgi()) as client:
        with pytest.raises(CallError) as caught:
            await client.call(request_type, bad)
    assert caught.value.code == "invalid"
    assert caught.value.message == "Invalid data: customer: Field required (and 2 more)"
    assert caught.value.data == {
        "errors": [
            {"path": ["customer"], "message": "Field required", "type": "missing"},
            {
                "path": ["items", 1, "title"],
                "message": "String should have at least 1 character",
                "type": "string_too_short",
            },
            {
                "path": ["items", 1, "amount"],
                "message": "Input should be a valid integer, unable to parse string as an integer",
                "type": "int_parsing",
            },
        ]
    }
    assert caught.value.frame["type"] == request_type
    assert calls == []


async def test_data_that_is_not_an_object_has_the_empty_path() -> None:
    async with TestClient(AsyncShop.as_asgi()) as client:
        with pytest.raises(CallError) as missing:
            await client.call("order.lines")
        with pytest.raises(CallError) as listed:
            await client.call("numbers.sum", {"a": 1})
        assert await client.call("numbers.sum", [1, 2, "3"]) == 6
    assert missing.value.data["errors"][0]["path"] == []
    assert missing.value.message.startswith("Invalid data: Input should be")
    assert listed.value.data["errors"] == [
        {"path": [], "message": "Input should be a valid list", "type": "list_type"}
    ]


async def test_a_handler_typed_in_the_decorator_alone_is_validated_and_called_as_in_4x() -> None:
    async with TestClient(AsyncShop.as_asgi()) as client:
        assert await client.call("order.check", ORDER) == "ada"
        with pytest.raises(CallError, match="invalid"):
            await client.call("order.check", {"customer": 5})


async def test_a_reply_of_another_type_than_declared_is_a_handler_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, "rohrpost")
    async with TestClient(AsyncShop.as_asgi()) as client:
        assert await client.call("order.first", ORDER) == {"title": "tea", "total": 0}
        with pytest.raises(CallError) as caught:
            await client.call("order.first", ORDER, wrong=True)
    assert caught.value.code == "handler_error"


async def test_a_typed_handler_that_returns_none_sends_no_reply() -> None:
    async with TestClient(AsyncShop.as_asgi()) as client:
        await client.send({"id": 1, "type": "nothing"})
        assert await client.call("order.count", ORDER) == {"items": 2}


async def test_untyped_replies_callable_objects_and_async_handlers_without_data() -> None:
    async with TestClient(AsyncShop.as_asgi()) as client:
        assert await client.call("items.untyped_reply", 5) == [{"title": "5", "amount": 1}]
        assert await client.call("items.untyped_reply", "plain") == {"plain": True}
        assert await client.call("order.async_check", ORDER) == "ada"
        with pytest.raises(CallError, match="invalid"):
            await client.call("order.async_check", {})
        assert await client.call("count", [4, 5]) == 2
        with pytest.raises(CallError, match="invalid"):
            await client.call("count", ["x"])


def test_typed_handlers_keep_their_kind_and_carry_their_types() -> None:
    assert handler_mode(REGISTRY["order.lines"]) == "sync"
    assert handler_mode(REGISTRY["order.receipt"]) == "async"
    assert handler_mode(REGISTRY["order.count"]) == "inline"
    assert handler_types(REGISTRY["order.lines"]) == HandlerTypes(Order, list[Line])
    assert handler_types(REGISTRY["order.receipt"]) == HandlerTypes(Order, Receipt)
    assert handler_types(REGISTRY["order.check"]) == HandlerTypes(Order, Any)
    assert handler_types(REGISTRY["order.first"]) == HandlerTypes(Order, Line)
    assert REGISTRY["order.lines"].__name__ == "order_lines"


def test_the_decorator_returns_the_function_itself_for_direct_calls() -> None:
    order = Order.model_validate(ORDER)
    assert order_lines(consumer=None, request={}, data=order)[0] == Line(title="tea", total=2)


def test_untyped_handlers_are_registered_as_they_are(registry: HandlerRegistry) -> None:
    @rohrpost_handler("test-typed-plain")
    def plain(consumer: Any, request: dict[str, Any]) -> dict[str, Any]:
        return {}

    assert registry["test-typed-plain"] is plain
    assert handler_types(plain) is None


def test_a_handler_typed_by_a_local_class_needs_the_decorator_argument() -> None:
    registry = HandlerRegistry()

    class Local(BaseModel):
        n: int

    def local(consumer: Any, request: dict[str, Any], data: Local) -> Local:
        return data

    # Annotations naming a class local to a function cannot be resolved.
    with pytest.raises(TypeError, match=r"cannot be resolved .*data=\.\.\., reply=\.\.\."):
        registry.register("local", local)
    assert "local" not in registry
    registry.register("named", local, data=Local, reply=Local)
    assert handler_types(registry["named"]) == HandlerTypes(Local, Local)


async def test_a_typed_subscription_kind_validates_the_group_object(
    consumer_class: type[Any],
) -> None:
    async with TestClient(consumer_class.as_asgi(), user="alice") as client:
        assert await client.subscribe({"type": "room", "name": "lobby"}) == "room-lobby"
        with pytest.raises(CallError) as caught:
            await client.subscribe({"type": "room", "name": "Lobby 2"})
        with pytest.raises(CallError, match="forbidden"):
            await client.subscribe({"type": "room", "name": "secret"})
        assert await client.unsubscribe({"type": "room", "name": "lobby"}) == "room-lobby"
    assert caught.value.code == "invalid"
    assert [error["path"] for error in caught.value.data["errors"]] == [["name"]]
    assert calls == [Room(type="room", name="lobby"), Room(type="room", name="secret")]
    assert subscriptions.kinds == {"room": (Room, Line)}


def test_invalid_data_is_a_rohrpost_error_with_code_invalid() -> None:
    assert InvalidData().code == "invalid"


def test_only_the_data_and_return_annotations_need_to_resolve() -> None:
    registry = HandlerRegistry()

    def handler(consumer: NotImportedHere, request: dict[str, Any], data: Item) -> Line:  # type: ignore[name-defined]  # noqa: F821
        return Line(title=data.title, total=data.amount)

    registry.register("handler", handler)
    assert handler_types(registry["handler"]) == HandlerTypes(Item, Line)


def test_a_callable_without_a_signature_is_registered_untyped() -> None:
    class Opaque:
        __signature__ = "not a signature"  # inspect.signature raises TypeError for it

        def __call__(self, consumer: Any, request: dict[str, Any]) -> Any:
            return None

    registry = HandlerRegistry()
    opaque = Opaque()
    registry.register("opaque", opaque)
    assert registry["opaque"] is opaque
