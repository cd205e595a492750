"""A rohrpost 4.x application's own tests, run unchanged against rohrpost 5.

Everything here is written the way a project on rohrpost 4.x writes it, with
4.x names only: handlers registered with ``@rohrpost_handler()`` and
``name=``, the helpers called with keyword arguments, the test double
``rohrpost.tests.Consumer`` read as ``consumer.data[-1]["type"]``, a
hand-written double with ``send(self, message)``, models with the mixins and
hooks taking ``**kwargs`` (tests/feedapp/models.py: ``Invoice``, ``Product``),
``TolerantJSONEncoder``, and a custom ``JsonWebsocketConsumer`` whose own
``rohrpost_message`` reads ``event["message"]``. If a test here needs a
change, a 4.x application would need the same change: that is a break.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import JsonWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from rohrpost import VERSION
from rohrpost.handlers import handle_ping
from rohrpost.main import handle_rohrpost_message
from rohrpost.message import (
    MessageID,
    TolerantJSONEncoder,
    build_message,
    send_error,
    send_message,
    send_success,
    send_to_group,
)
from rohrpost.registry import HANDLERS, HandlerRegistry, rohrpost_handler
from rohrpost.sync_consumer import SyncRohrpostConsumer
from rohrpost.tests import Consumer
from tests.feedapp.models import Invoice, Product

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layers", "shop_handlers"),
]


# --- the application: handlers.py --------------------------------------------------------


@pytest.fixture
def shop_handlers(registry: HandlerRegistry) -> None:
    """The shop's handlers, registered as its handlers.py does on import."""

    @rohrpost_handler()
    def product_price(consumer: Any, request: dict[str, Any]) -> None:
        product = Product.objects.get(pk=request["data"]["id"])
        send_success(
            consumer=consumer,
            handler="product_price",
            message_id=request["id"],
            data={"id": product.pk, "price": product.price},
        )

    @rohrpost_handler(name="subscribe-products")
    def subscribe_products(consumer: Any, request: dict[str, Any]) -> None:
        consumer.add_to_group("products")
        send_success(
            consumer=consumer,
            handler="subscribe-products",
            message_id=request["id"],
            data={"group": "products"},
        )

    @rohrpost_handler(name=["goodbye", "bye"])
    def goodbye(consumer: Any, request: dict[str, Any]) -> None:
        send_message(consumer=consumer, handler="goodbye", message_id=request["id"])
        consumer.close()
        send_message(consumer=consumer, handler="too-late", message_id=request["id"])

    @rohrpost_handler("refuse")
    def refuse(consumer: Any, request: dict[str, Any]) -> None:
        send_error(
            consumer=consumer,
            handler=None,
            message_id=request["id"],
            error="You may not.",
            data={"reason": "closed"},
        )


# --- the application's tests of its handlers ---------------------------------------------


def test_a_handler_registered_without_a_name_answers_under_its_function_name() -> None:
    product = Product.objects.create(name="tea", price=Decimal("9.99"))
    consumer = Consumer()
    request = {"id": 1, "type": "product_price", "data": {"id": product.pk}}
    handle_rohrpost_message(consumer=consumer, text_data=json.dumps(request))
    assert len(consumer.data) == 1
    assert consumer.data[-1]["type"] == "product_price"
    assert consumer.data[-1]["id"] == 1
    # TolerantJSONEncoder: a Decimal is a JSON number.
    assert consumer.data[-1]["data"] == {"id": product.pk, "price": 9.99}
    assert "product_price" in HANDLERS


def test_a_handler_registered_by_keyword_name_joins_its_group() -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer=consumer, text_data='{"id": 2, "type": "subscribe-products"}')
    assert consumer.data[-1] == {
        "id": 2,
        "type": "subscribe-products",
        "data": {"group": "products"},
    }
    assert consumer.groups == {"products"}


@pytest.mark.parametrize("name", ["goodbye", "bye"])
def test_after_close_the_double_records_nothing(name: str) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer=consumer, text_data=json.dumps({"id": 3, "type": name}))
    assert consumer.closed is True
    assert [message["type"] for message in consumer.data] == ["goodbye"]


def test_an_error_without_handler_has_no_type() -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer=consumer, text_data='{"id": 4, "type": "refuse"}')
    [error] = consumer.data
    assert "type" not in error
    assert error["id"] == 4
    assert error["error"] == "You may not."
    assert error["data"] == {"reason": "closed"}


def test_ping() -> None:
    consumer = Consumer()
    handle_ping(consumer=consumer, request={"id": 123})
    assert consumer.closed is False
    assert consumer.data[-1]["id"] == 123
    assert consumer.data[-1]["type"] == "pong"
    assert "data" not in consumer.data[-1]


@pytest.mark.parametrize(
    ("text_data", "error"),
    [
        (None, "Received empty message"),
        ("", "Received empty message"),
        ("[1, 2", "Could not decode JSON message"),
        ("[1, 2, 3]", "Expected a JSON object as message."),
        ("{}", "Missing required field 'type'."),
        ('{"id": 1}', "Missing required field 'type'."),
        ('{"type": "ping"}', "Missing required field 'id'."),
        ('{"id": 123, "type": "handler_not_known"}', "No registered handler called"),
    ],
)
def test_bad_messages_get_4x_error_texts(text_data: str | None, error: str) -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer=consumer, text_data=text_data)
    assert len(consumer.data) == 1
    assert consumer.data[-1]["error"].startswith(error)


def test_a_frame_received_as_bytes_is_handled() -> None:
    consumer = Consumer()
    handle_rohrpost_message(consumer=consumer, text_data=b'{"id": 5, "type": "ping"}')
    assert consumer.data == [{"id": 5, "type": "pong"}]


class ReplyChannel:
    """The application's own double, from its conftest.py (4.x helpers call send(text))."""

    def __init__(self) -> None:
        self.data: list[Any] = []
        self.closed = False

    def send(self, message: str) -> None:
        if not self.closed:
            self.data.append(json.loads(message))

    def close(self) -> None:
        self.closed = True


def test_the_applications_own_double_works_with_the_helpers() -> None:
    consumer = ReplyChannel()
    send_error(consumer=consumer, message_id=1, handler="some_handler", error="error_message")
    send_success(consumer=consumer, message_id=2, handler="some_handler", data={"a": 1})
    send_message(consumer=consumer, message_id=3, handler="other")
    handle_ping(consumer=consumer, request={"id": 4, "type": "ping", "data": 1})
    handle_rohrpost_message(consumer=consumer, text_data='{"id": 5, "type": "ping"}')
    assert [(m["id"], m["type"]) for m in consumer.data] == [
        (1, "some_handler"),
        (2, "some_handler"),
        (3, "other"),
        (4, "pong"),
        (5, "pong"),
    ]
    assert consumer.data[0]["error"] == "error_message"
    assert consumer.data[3]["data"] == {"data": 1}


def test_send_message_without_an_id_gets_a_random_integer_id() -> None:
    """The 4.x docs: 'If you do not provide any, an integer will be randomly chosen.'"""
    consumer = Consumer()
    send_message(consumer=consumer, handler="note", data={"x": 1})
    assert isinstance(consumer.data[-1]["id"], int)


def test_build_message_as_4x_mixins_called_it() -> None:
    message_id: MessageID = 7
    built = build_message(generate_id=True, handler="subscription-update", data={"a": 1})
    assert isinstance(built["id"], int)
    assert built["type"] == "subscription-update"
    assert built["data"] == {"a": 1}
    assert build_message(handler="x", message_id=message_id) == {"id": 7, "type": "x"}


def test_version_is_a_string() -> None:
    assert isinstance(VERSION, str)
    assert VERSION


def test_tolerant_json_encoder() -> None:
    uid = uuid.uuid4()
    payload = {"price": Decimal("9.99"), "qty": Decimal(3), "id": uid, "tags": {"a"}}
    text = json.dumps(payload, cls=TolerantJSONEncoder)
    assert json.loads(text) == {"price": 9.99, "qty": 3, "id": str(uid), "tags": ["a"]}
    assert isinstance(TolerantJSONEncoder(), json.JSONEncoder)


# --- the application: consumers.py (its own consumer, as the 4.x docs describe) ------------


class ShopConsumer(JsonWebsocketConsumer):  # type: ignore[misc]
    """The shop's own consumer: rohrpost frames in, and every push to its groups out."""

    shop_groups = ("products", "invoices")

    def connect(self) -> None:
        for group in self.shop_groups:
            async_to_sync(self.channel_layer.group_add)(group, self.channel_name)
        self.accept()

    def disconnect(self, code: Any) -> None:
        for group in self.shop_groups:
            async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)

    def receive(self, text_data: Any = None, bytes_data: Any = None, **kwargs: Any) -> None:
        handle_rohrpost_message(consumer=self, text_data=text_data or bytes_data)

    def rohrpost_message(self, event: dict[str, Any]) -> None:
        message = event["message"]
        if not isinstance(message, str):
            message = json.dumps(message, cls=TolerantJSONEncoder)
        self.send(text_data=message)


async def open_shop(consumer: Any = ShopConsumer) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/ws/rohrpost/")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def pushes(communicator: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    return [json.loads(await communicator.receive_from(timeout=5)) for _ in range(count)]


def in_thread(work: Any) -> Any:
    """Run ORM work as a view would: in a worker thread, its connection closed after.

    Closed for real, SQLite's in-memory one included (Django keeps that open on
    ``close()``): a connection left in the worker thread would meet the next test,
    which may not use the database.
    """

    def run() -> Any:
        try:
            return work()
        finally:
            for connection in connections.all(initialized_only=True):
                BaseDatabaseWrapper.close(connection)

    return database_sync_to_async(run)()


async def test_the_custom_consumer_receives_every_change_feed_push() -> None:
    shop = await open_shop()
    created = [await in_thread(lambda n=n: Product.objects.create(name=f"p{n}")) for n in range(3)]
    bulk = await in_thread(
        lambda: Product.objects.bulk_create([Product(name=f"b{n}") for n in range(30)])
    )
    first = created[0]
    first_pk = first.pk

    def rename() -> None:
        first.name = "renamed"
        first.save(update_fields=["name"])
        first.delete()

    await in_thread(rename)
    received = await pushes(shop, 3 + 30 + 2)
    assert [(p["type"], p["data"]["type"], p["data"]["group"]) for p in received] == (
        [("subscription-update", "create", "products")] * 33
        + [
            ("subscription-update", "update", "products"),
            ("subscription-update", "delete", "products"),
        ]
    )
    assert [p["data"]["object"]["name"] for p in received[:33]] == [
        *(f"p{n}" for n in range(3)),
        *(product.name for product in bulk),
    ]
    assert received[33]["data"]["object"] == {
        "id": first_pk,
        "name": "renamed",
        "price": 0,
        "updated_fields": ["name"],
    }
    # The socket is still open: rohrpost frames still get answers.
    await shop.send_to(text_data='{"id": 9, "type": "ping"}')
    assert json.loads(await shop.receive_from(timeout=5)) == {"id": 9, "type": "pong"}
    assert await shop.receive_nothing(timeout=0.1)
    await shop.disconnect()


async def test_a_model_with_its_own_encoder_hooks_and_message_types() -> None:
    shop = await open_shop()
    invoice = await in_thread(
        lambda: Invoice.objects.create(
            number="2024-1", total=Decimal("120.50"), due_in=timedelta(days=30)
        )
    )

    def amend_and_void() -> None:
        invoice.total = Decimal("99")
        invoice.save(update_fields=["total"])
        invoice.delete()

    invoice_pk = invoice.pk
    await in_thread(amend_and_void)
    issued, amended, voided = await pushes(shop, 3)
    assert issued["data"]["type"] == "issued"
    assert issued["data"]["group"] == "invoices"
    # DjangoJSONEncoder, the model's `encoder`: Decimal as text, timedelta as ISO 8601.
    assert issued["data"]["object"] == {
        "id": invoice_pk,
        "number": "2024-1",
        "total": "120.50",
        "due_in": "P30DT00H00M00S",
        "saved": None,
        "kind": "create",
    }
    assert amended["data"]["type"] == "amended"
    assert amended["data"]["object"]["total"] == "99"
    assert amended["data"]["object"]["saved"] == ["total"]
    assert amended["data"]["object"]["updated_fields"] == ["total"]
    assert amended["data"]["object"]["kind"] == "update"
    assert voided["data"]["type"] == "voided"
    assert voided["data"]["object"]["kind"] == "delete"
    await shop.disconnect()


class DjangoEncodedConsumer(SyncRohrpostConsumer):
    """The 4.x consumer with the application's encoder for group messages."""

    json_encoder = DjangoJSONEncoder

    def connect(self) -> None:
        self.add_to_group("reminders")  # before accepting: joined once the test is connected
        super().connect()


async def test_send_to_group_with_an_object_uses_the_consumers_json_encoder() -> None:
    reminders = await open_shop(DjangoEncodedConsumer)
    message = {"id": 1, "type": "reminder", "data": {"in": timedelta(hours=2)}}
    await sync_to_async(send_to_group, thread_sensitive=False)(
        group_name="reminders", message=message
    )
    assert json.loads(await reminders.receive_from(timeout=5)) == {
        "id": 1,
        "type": "reminder",
        "data": {"in": "P0DT02H00M00S"},
    }
    await reminders.disconnect()
