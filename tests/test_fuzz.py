"""Fuzzing the whole consumer pipeline: every frame gets exactly one answer, nothing escapes.

Each example sends 50 generated frames (valid requests, arbitrary JSON,
arbitrary text, mutated requests, deep nesting, long numbers, binary frames)
over one connection of each consumer and checks that every frame is
answered exactly once, in order, with its ``id`` echoed whenever it could be
read, and that the connection stays open. 200 examples: 10,000 frames per
consumer in CI. For a longer run::

    ROHRPOST_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_fuzz.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer
from rohrpost.registry import HandlerRegistry
from rohrpost.tests import Consumer

EXAMPLES = int(os.environ.get("ROHRPOST_FUZZ_EXAMPLES", "200"))
FRAMES_PER_EXAMPLE = 50

ids = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
types = st.sampled_from(["ping", "fuzz.echo", "fuzz.fail", "nope"]) | st.text(max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def requests(draw: st.DrawFn) -> str:
    request: dict[str, Any] = {"id": draw(ids), "type": draw(types)}
    if draw(st.booleans()):
        request["data"] = draw(json_values)
    if draw(st.booleans()):
        request[draw(st.text(max_size=6))] = draw(json_values)
    return json.dumps(request, allow_nan=False)


@st.composite
def mutated_requests(draw: st.DrawFn) -> str:
    text = draw(requests())
    position = draw(st.integers(min_value=0, max_value=len(text)))
    token = draw(
        st.sampled_from(['"', "{", "}", "[", "]", ",", ":", "\\", "NaN", "\\ud800", "1e999"])
    )
    return text[:position] + token + text[position + draw(st.integers(0, 2)) :]


specials = st.sampled_from(
    [
        "",
        "   ",
        "[" * 5000,
        '{"id": 1, "type": "ping", "data": ' + "[" * 40 + "]" * 40 + "}",
        '{"id": 1, "type": "ping", "data": ' + "9" * 5000 + "}",
        '{"id": 1, "type": "ping"} trailing',
        '{"id": true, "type": "ping"}',
        '{"id": null, "type": "ping"}',
        '{"id": 1, "type": "' + "t" * 101 + '"}',
        '{"id": 1, "type": "websocket.disconnect"}',
        '{"id": 1, "type": "__class__"}',
        '{"id": 1, "type": "rohrpost.message", "message": "x"}',
    ]
)
frames = st.one_of(
    requests(),
    mutated_requests(),
    st.text(max_size=60),
    json_values.map(lambda value: json.dumps(value, allow_nan=False)),
    specials,
    st.binary(max_size=20),
)


def fuzz_registry() -> HandlerRegistry:
    from rohrpost.handlers import handle_ping

    registry = HandlerRegistry()
    registry.register("ping", handle_ping, inline=True)

    @registry.handler("fuzz.echo")
    async def echo(consumer: Any, request: dict[str, Any]) -> Any:
        return {"echo": request.get("data")}

    @registry.handler("fuzz.fail")
    def fail(consumer: Any, request: dict[str, Any]) -> None:
        raise RuntimeError("fuzzed failure")

    return registry


REGISTRY = fuzz_registry()


class FuzzAsyncConsumer(AsyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


class FuzzSyncConsumer(SyncRohrpostConsumer):
    rohrpost_registry = REGISTRY


def readable_id(frame: str | bytes) -> tuple[bool, Any]:
    """The request id a correct server echoes, as (known, value)."""
    if isinstance(frame, bytes):
        return False, None
    try:
        request = json.loads(frame)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(request, dict):
        return False, None
    request_id = request.get("id")
    if type(request_id) not in (int, float, str):
        return False, None
    type_ = request.get("type")
    if not isinstance(type_, str) or not 0 < len(type_) <= 100:
        return False, None
    return True, request_id


async def exchange(consumer_class: type[Any], batch: list[str | bytes]) -> None:
    communicator = WebsocketCommunicator(consumer_class.as_asgi(), "/ws/fuzz/")
    connected, _ = await communicator.connect()
    assert connected
    try:
        for frame in batch:
            # send_input, not send_to: the communicator refuses an empty frame itself.
            key = "bytes" if isinstance(frame, bytes) else "text"
            await communicator.send_input({"type": "websocket.receive", key: frame})
            reply = json.loads(await communicator.receive_from(timeout=10))
            # The full phrase: a fuzzed type may be "Traceback", echoed in the reply.
            assert "Traceback (most recent call last)" not in json.dumps(reply)
            known, request_id = readable_id(frame)
            if known and "id" in reply:
                assert reply["id"] == request_id
                assert type(reply["id"]) is type(request_id)
            assert ("error" in reply) == ("code" in reply)
            # Exactly one answer: nothing else is waiting.
            assert await communicator.receive_nothing(timeout=0)
        assert not communicator.future.done(), "the connection ended"
    finally:
        await communicator.disconnect()


@pytest.fixture
def unlimited(settings: Any) -> None:
    """The fuzz checks the pipeline, not the rate limit."""
    settings.ROHRPOST = {"RATE_LIMIT": None}


# Channels closes stale database connections on disconnect: allow the database.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("consumer_class", [FuzzAsyncConsumer, FuzzSyncConsumer])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # No shrinking: a 50-frame batch shrinks for minutes; the failing batch is printed as is.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(frames, min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
def test_every_fuzzed_frame_gets_exactly_one_answer_and_the_connection_stays_open(
    unlimited: None, consumer_class: type[Any], batch: list[str | bytes]
) -> None:
    async_to_sync(exchange)(consumer_class, batch)


@settings(max_examples=EXAMPLES * 5, deadline=None, database=None)
@given(frame=frames)
def test_every_fuzzed_frame_gets_exactly_one_answer_from_the_sync_entry_point(
    frame: str | bytes,
) -> None:
    from rohrpost.main import handle_rohrpost_message

    consumer = Consumer()
    if isinstance(frame, bytes):
        handle_rohrpost_message(consumer, None, frame, registry=REGISTRY)
    else:
        handle_rohrpost_message(consumer, frame, registry=REGISTRY)
    assert len(consumer.data) == 1
    known, request_id = readable_id(frame)
    reply = consumer.messages[0]
    if known and "id" in reply:
        assert reply["id"] == request_id


def test_the_fuzz_registry_answers_every_type_it_serves() -> None:
    """Guard: each registered handler answers, so 'exactly one answer' is a real check."""
    for request_type in ("ping", "fuzz.echo", "fuzz.fail"):
        consumer = Consumer()
        from rohrpost.main import handle_rohrpost_message

        handle_rohrpost_message(
            consumer, json.dumps({"id": 1, "type": request_type}), registry=REGISTRY
        )
        assert len(consumer.data) == 1, request_type
