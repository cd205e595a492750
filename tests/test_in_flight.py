"""Tests for ``ROHRPOST["MAX_IN_FLIGHT"]``: handlers of one connection running at once."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from rohrpost import AsyncRohrpostConsumer
from rohrpost.registry import HandlerRegistry
from tests.communicators import ask, connect

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layers"),
]


class Gate:
    """What the ``hold`` handlers share: how many run, the most that ran, and a release."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.finished: list[Any] = []
        self.release = asyncio.Event()


@pytest.fixture
def gate(registry: HandlerRegistry) -> Gate:
    """``hold`` waits for ``gate.release``; ``quick`` answers at once (both ``async def``)."""
    shared = Gate()

    @registry.handler("hold")
    async def hold(consumer: Any, request: dict[str, Any]) -> Any:
        shared.running += 1
        shared.most = max(shared.most, shared.running)
        try:
            await asyncio.wait_for(shared.release.wait(), timeout=5)
        finally:
            shared.running -= 1
        shared.finished.append(request["id"])
        return request["id"]

    @registry.handler("quick")
    async def quick(consumer: Any, request: dict[str, Any]) -> Any:
        return request["id"]

    return shared


async def send(communicator: Any, request_id: int, request_type: str) -> None:
    await communicator.send_to(text_data=json.dumps({"id": request_id, "type": request_type}))


async def settle() -> None:
    """Let the consumer take every frame sent so far."""
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_by_default_requests_are_handled_one_after_the_other(gate: Gate) -> None:
    async with connect(AsyncRohrpostConsumer) as communicator:
        await send(communicator, 1, "hold")
        await send(communicator, 2, "quick")
        await settle()
        assert communicator.output_queue.empty()  # `quick` waits behind `hold`
        gate.release.set()
        replies = [json.loads(await communicator.receive_from(timeout=2)) for _ in range(2)]
    assert [reply["id"] for reply in replies] == [1, 2]
    assert gate.most == 1


async def test_up_to_the_maximum_handlers_run_at_once(settings: Any, gate: Gate) -> None:
    settings.ROHRPOST = {"MAX_IN_FLIGHT": 3}
    async with connect(AsyncRohrpostConsumer) as communicator:
        await send(communicator, 1, "hold")
        await send(communicator, 2, "hold")
        await send(communicator, 3, "quick")
        # Two `hold`s run; `quick` takes the third slot and does not wait for them.
        reply = json.loads(await communicator.receive_from(timeout=2))
        assert reply == {"id": 3, "type": "quick", "data": 3}
        assert gate.running == 2
        # A third `hold` fills every slot: what comes next waits for a free one.
        await send(communicator, 4, "hold")
        await send(communicator, 5, "quick")
        await send(communicator, 6, "hold")
        await settle()
        assert gate.running == 3
        assert communicator.output_queue.empty()
        gate.release.set()
        replies = [json.loads(await communicator.receive_from(timeout=2)) for _ in range(5)]
    assert sorted(reply["id"] for reply in replies) == [1, 2, 4, 5, 6]
    assert gate.most == 3


async def test_inline_handlers_answer_while_handlers_run(settings: Any, gate: Gate) -> None:
    settings.ROHRPOST = {"MAX_IN_FLIGHT": 2}
    async with connect(AsyncRohrpostConsumer) as communicator:
        await send(communicator, 1, "hold")
        assert await ask(communicator, {"id": 2, "type": "ping"}) == {"id": 2, "type": "pong"}
        gate.release.set()
        assert json.loads(await communicator.receive_from(timeout=2))["id"] == 1


async def test_sync_handlers_run_beside_async_ones(
    settings: Any, registry: HandlerRegistry
) -> None:
    settings.ROHRPOST = {"MAX_IN_FLIGHT": 4}

    @registry.handler("sync-add")
    def add(consumer: Any, request: dict[str, Any]) -> int:
        return int(request["data"]) + 1

    async with connect(AsyncRohrpostConsumer) as communicator:
        for request_id in range(10):
            await communicator.send_to(
                text_data=json.dumps({"id": request_id, "type": "sync-add", "data": request_id})
            )
        replies = [json.loads(await communicator.receive_from(timeout=2)) for _ in range(10)]
    assert sorted((reply["id"], reply["data"]) for reply in replies) == [
        (n, n + 1) for n in range(10)
    ]


async def test_handlers_running_at_disconnect_run_to_their_end(settings: Any, gate: Gate) -> None:
    settings.ROHRPOST = {"MAX_IN_FLIGHT": 2}
    async with connect(AsyncRohrpostConsumer) as communicator:
        await send(communicator, 1, "hold")
        await send(communicator, 2, "hold")
        await settle()
        assert gate.running == 2
        asyncio.get_running_loop().call_later(0.05, gate.release.set)
    assert sorted(gate.finished) == [1, 2]


class FailingSend(AsyncRohrpostConsumer):
    """A consumer whose client is gone: every send fails."""

    async def send(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        raise ConnectionResetError("the client went away")


async def test_a_reply_that_cannot_be_sent_is_dropped_and_logged(
    settings: Any, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ROHRPOST = {"MAX_IN_FLIGHT": 2}
    gate.release.set()
    with caplog.at_level(logging.INFO, logger="rohrpost"):
        async with connect(FailingSend) as communicator:
            await send(communicator, 9, "hold")
            await settle()
    assert gate.finished == [9]
    assert "Dropped the reply to request id 9" in caplog.text


async def test_a_handler_that_returns_none_answers_nothing(
    settings: Any, registry: HandlerRegistry
) -> None:
    settings.ROHRPOST = {"MAX_IN_FLIGHT": 2}

    @registry.handler("silent")
    async def silent(consumer: Any, request: dict[str, Any]) -> None:
        return None

    async with connect(AsyncRohrpostConsumer) as communicator:
        await send(communicator, 1, "silent")
        assert await ask(communicator, {"id": 2, "type": "ping"}) == {"id": 2, "type": "pong"}
        await settle()
        assert communicator.output_queue.empty()
