"""Tests for rohrpost.outbox: frames queued for the client, bounded, never blocking the sender."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rohrpost import outbox as outbox_module
from rohrpost.outbox import CLOSE_TOO_SLOW, Outbox


class Client:
    """An ASGI ``send`` whose client reads only while ``reading`` is set."""

    def __init__(self, *, reading: bool = True) -> None:
        self.sent: list[dict[str, Any]] = []
        self.reading = asyncio.Event()
        if reading:
            self.reading.set()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.accept":
            await self.reading.wait()
        self.sent.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


def frame(text: str) -> dict[str, Any]:
    return {"type": "websocket.send", "text": text}


async def accepted(client: Client, limit: int = 1000) -> tuple[Outbox, list[int]]:
    overflows: list[int] = []
    outbox = Outbox(client.send, limit, overflows.append)
    await outbox({"type": "websocket.accept"})
    return outbox, overflows


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_frames_go_out_in_order_and_the_handshake_straight_away() -> None:
    client = Client()
    outbox, _ = await accepted(client)
    assert client.sent == [{"type": "websocket.accept"}]
    for text in ("a", "b", "c"):
        await outbox(frame(text))
    await settle()
    assert client.texts() == ["a", "b", "c"]
    assert outbox.queued_bytes == 0


async def test_a_handshake_refusal_goes_straight_out_too() -> None:
    client = Client()
    outbox = Outbox(client.send, 1000, lambda code: None)
    await outbox({"type": "websocket.close"})  # before accept: HTTP 403
    assert client.sent == [{"type": "websocket.close"}]  # sent, not queued


async def test_a_client_that_does_not_read_never_blocks_the_sender() -> None:
    client = Client(reading=False)
    outbox, overflows = await accepted(client)
    for number in range(10):
        await asyncio.wait_for(outbox(frame(f"frame {number}")), 0.1)
    # The first frame is in the server's hands (its send is waiting); nine wait here.
    assert outbox.queued_bytes == 9 * len("frame 0")
    assert client.texts() == []
    client.reading.set()
    await settle()
    assert client.texts() == [f"frame {number}" for number in range(10)]
    assert overflows == []


async def test_a_client_that_falls_behind_past_the_limit_is_closed_too_slow() -> None:
    client = Client(reading=False)
    outbox, overflows = await accepted(client, limit=100)
    for _ in range(11):  # the first is in the server's hands, ten wait
        await outbox(frame("x" * 10))
    assert overflows == []
    await outbox(frame("y"))
    assert overflows == [CLOSE_TOO_SLOW]
    assert CLOSE_TOO_SLOW == 4008


async def test_abort_drops_what_is_queued_and_later_frames() -> None:
    client = Client(reading=False)
    outbox, _ = await accepted(client)
    for text in ("a", "b"):
        await outbox(frame(text))
    await settle()
    outbox.abort()
    assert outbox.closing
    assert outbox.queued_bytes == 0
    await outbox(frame("after"))
    client.reading.set()
    await settle()
    assert client.texts() == []


async def test_the_close_after_abort_goes_out_once_the_client_reads() -> None:
    client = Client(reading=False)
    outbox, _ = await accepted(client)
    await outbox(frame("queued"))
    outbox.abort()
    closing = asyncio.ensure_future(outbox.aclose(4003))
    await settle()
    assert not closing.done()
    client.reading.set()
    await asyncio.wait_for(closing, 1)
    assert client.sent[-1] == {"type": "websocket.close", "code": 4003}
    assert client.texts() == []


async def test_the_close_waits_a_bounded_time_for_a_client_that_never_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox_module, "CLOSE_WAIT_SECONDS", 0.05)
    client = Client(reading=False)
    outbox, _ = await accepted(client)
    outbox.abort()
    await asyncio.wait_for(outbox.aclose(4003), 1)
    assert client.sent == [{"type": "websocket.accept"}]


async def test_a_close_is_sent_after_the_frames_before_it_and_ends_sending() -> None:
    client = Client()
    outbox, _ = await accepted(client)
    await outbox(frame("last words"))
    await outbox({"type": "websocket.close", "code": 4029})
    await outbox(frame("too late"))
    await outbox({"type": "websocket.close", "code": 1000})
    await outbox.adrain()
    assert client.sent[1:] == [frame("last words"), {"type": "websocket.close", "code": 4029}]


async def test_drain_gives_up_on_a_client_that_does_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outbox_module, "CLOSE_WAIT_SECONDS", 0.05)
    client = Client(reading=False)
    outbox, _ = await accepted(client)
    await outbox(frame("stuck"))
    await asyncio.wait_for(outbox.adrain(), 1)
    assert outbox.closing
    assert outbox.queued_bytes == 0


async def test_a_client_gone_mid_send_ends_sending_quietly() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        if message.get("text") == "boom":
            raise OSError("the client went away")
        sent.append(message)

    outbox = Outbox(send, 1000, lambda code: None)
    await outbox({"type": "websocket.accept"})
    await outbox(frame("boom"))
    await outbox(frame("after"))
    await settle()
    assert outbox.closing
    await outbox(frame("later"))
    assert sent == [{"type": "websocket.accept"}]


async def test_binary_frames_count_their_bytes() -> None:
    client = Client(reading=False)
    outbox, overflows = await accepted(client, limit=10)
    await outbox({"type": "websocket.send", "bytes": b"1"})  # in the server's hands
    await outbox({"type": "websocket.send", "bytes": b"12345"})
    assert outbox.queued_bytes == 5
    await outbox({"type": "websocket.send", "bytes": b"123456"})
    assert overflows == [CLOSE_TOO_SLOW]


async def test_a_frame_the_server_takes_at_once_needs_no_writer_task() -> None:
    client = Client()
    outbox, _ = await accepted(client)
    await outbox(frame("at once"))
    assert client.texts() == ["at once"]  # sent before the call returned
    assert outbox._writer is None


async def test_a_send_that_waits_is_finished_by_a_task_in_order() -> None:
    client = Client(reading=False)
    outbox, _ = await accepted(client)
    await outbox(frame("first"))
    assert outbox._writer is not None
    await outbox(frame("second"))
    client.reading.set()
    await settle()
    assert client.texts() == ["first", "second"]
    assert outbox._writer is None


async def test_a_waiting_send_that_fails_ends_sending() -> None:
    release = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            await release.wait()
            raise OSError("the client went away")
        sent.append(message)

    outbox = Outbox(send, 1000, lambda code: None)
    await outbox({"type": "websocket.accept"})
    await outbox(frame("lost"))
    release.set()
    await settle()
    assert outbox.closing
    assert outbox._writer is None


async def test_an_abort_cancels_a_send_that_waits() -> None:
    client = Client(reading=False)
    outbox, _ = await accepted(client)
    await outbox(frame("stuck"))
    writer = outbox._writer
    assert writer is not None
    outbox.abort()
    await asyncio.wait({writer}, timeout=1)
    assert writer.cancelled()
    client.reading.set()
    await settle()
    assert client.texts() == []


async def test_any_awaitable_the_server_returns_is_awaited() -> None:
    done: list[str] = []

    def send(message: dict[str, Any]) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        done.append(message["type"])
        return future

    outbox = Outbox(send, 1000, lambda code: None)
    await outbox({"type": "websocket.accept"})
    await outbox(frame("via a future"))
    await settle()
    assert done == ["websocket.accept", "websocket.send"]
    assert outbox._writer is None


async def test_a_waiting_send_may_handle_its_cancellation_itself() -> None:
    """What the server's send does with the cancellation is passed through as it is."""
    release = asyncio.Event()
    finished: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            try:
                await release.wait()
            except asyncio.CancelledError:
                finished.append("cleaned up")

    outbox = Outbox(send, 1000, lambda code: None)
    await outbox({"type": "websocket.accept"})
    await outbox(frame("stuck"))
    writer = outbox._writer
    assert writer is not None
    await settle()  # the writer task has taken the send over
    outbox.abort()
    await asyncio.wait({writer}, timeout=1)
    assert finished == ["cleaned up"]


async def test_an_outbox_that_never_sent_a_frame_holds_no_queue_and_closes_cleanly() -> None:
    client = Client()
    outbox, _ = await accepted(client)
    assert outbox._queue is None
    outbox.abort()
    await outbox.aclose(1000)
    assert client.sent[1:] == [{"type": "websocket.close", "code": 1000}]
