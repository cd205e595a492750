"""Tests for rohrpost.publisher: which loop sends, ordering, batching, flushing, failures."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from channels.layers import get_channel_layer

from rohrpost import publisher
from rohrpost.message import GROUP_EVENT_TYPE
from tests.feedapp import harness
from tests.feedapp.harness import (
    Listener,
    SyncListener,
    use_layers,
)

# Fixtures from the harness, used by name.
alisten = harness.alisten
fresh_layers = harness.fresh_layers
layer_kind = harness.layer_kind
listen = harness.listen

pytestmark = pytest.mark.usefixtures("fresh_layers")

Listen = Callable[..., SyncListener]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every (group, event) handed to the default layer's group_send, then sent on."""
    layer = get_channel_layer()
    calls: list[tuple[str, dict[str, Any]]] = []
    group_send = layer.group_send

    async def spy(group: str, event: dict[str, Any]) -> None:
        calls.append((group, event))
        await group_send(group, event)

    monkeypatch.setattr(layer, "group_send", spy)
    return calls


def texts(events: list[dict[str, Any]]) -> list[str]:
    return [t for e in events for t in (e["messages"] if "messages" in e else [e["message"]])]


# --- which loop sends -------------------------------------------------------------------------


async def test_submit_on_the_event_loop_thread_sends_on_that_loop(alisten: Any) -> None:
    listener: Listener = await alisten("g")
    publisher.submit("g", ["1", "2"])
    assert publisher._queues[asyncio.get_running_loop()].draining
    await publisher.aflush()
    assert not publisher._queues[asyncio.get_running_loop()].draining
    assert texts(await listener.aevents()) == ["1", "2"]


async def test_submit_from_a_sync_to_async_worker_sends_on_the_callers_loop(
    alisten: Any,
) -> None:
    listener: Listener = await alisten("g")
    loop = asyncio.get_running_loop()
    targets: list[Any] = []

    def in_worker() -> None:
        targets.append(publisher._target_loop())
        publisher.submit("g", ["from the worker"])

    await sync_to_async(in_worker)()
    await sync_to_async(in_worker, thread_sensitive=False)()
    assert targets == [loop, loop]
    assert texts(await listener.aevents()) == ["from the worker"] * 2


def test_submit_from_a_plain_thread_sends_on_the_background_loop(listen: Listen) -> None:
    listener = listen("g")
    targets: list[Any] = []

    def in_thread() -> None:
        targets.append(publisher._target_loop())
        publisher.submit("g", ["from a thread"])

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert publisher._background is not None
    assert targets == [publisher._background[1]]
    assert targets[0] is publisher._target_loop()  # the test thread runs no loop either
    assert texts(listener.events_now()) == ["from a thread"]


def test_a_worker_of_a_loop_that_stopped_or_of_another_process_uses_the_background_loop() -> None:
    stopped = asyncio.new_event_loop()
    targets: list[Any] = []

    def in_thread(loop: Any, pid: int) -> None:
        SyncToAsync.threadlocal.main_event_loop = loop
        SyncToAsync.threadlocal.main_event_loop_pid = pid
        targets.append(publisher._target_loop())

    for loop, pid in [(stopped, os.getpid()), (None, os.getpid()), (stopped, 1)]:
        thread = threading.Thread(target=in_thread, args=(loop, pid))
        thread.start()
        thread.join()
    stopped.close()
    assert publisher._background is not None
    assert targets == [publisher._background[1]] * 3


def test_after_a_fork_a_new_background_loop_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    inherited = publisher._background_loop()
    monkeypatch.setattr(publisher, "_background", (-1, inherited))  # started by a parent
    started = publisher._background_loop()
    try:
        assert started is not inherited
        assert publisher._background == (os.getpid(), started)
    finally:
        started.call_soon_threadsafe(started.stop)
        for _ in range(500):
            if not started.is_running():
                break
            threading.Event().wait(0.01)
        started.close()


def test_queues_of_closed_loops_are_dropped() -> None:
    loop = asyncio.new_event_loop()

    async def submit_and_wait() -> None:
        publisher.submit("g", ["x"])
        await publisher.aflush()

    loop.run_until_complete(submit_and_wait())
    assert loop in publisher._queues
    loop.close()
    other = asyncio.new_event_loop()
    try:
        other.run_until_complete(submit_and_wait())
        assert loop not in publisher._queues
        assert other in publisher._queues
    finally:
        other.close()


def test_a_queue_created_by_another_thread_meanwhile_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.new_event_loop()
    theirs = publisher._LoopQueue(loop)

    class RaceLostLock:
        """Another thread adds the loop's queue while this one waits for the lock."""

        def __enter__(self) -> None:
            publisher._queues[loop] = theirs

        def __exit__(self, *exc_info: object) -> None:
            pass

    monkeypatch.setattr(publisher, "_queues_lock", RaceLostLock())
    try:
        assert publisher._queue_for(loop) is theirs
    finally:
        del publisher._queues[loop]
        loop.close()


# --- order and batches ------------------------------------------------------------------------


def test_frames_reach_a_group_in_submit_order_across_many_submits(
    listen: Listen, settings: Any, layer_kind: str
) -> None:
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"].setdefault("CONFIG", {})["capacity"] = 1000  # room for every event
    use_layers(settings, layers)
    listener = listen("g", "h")
    for n in range(300):
        publisher.submit("g", [f"g{n}"])
        publisher.submit("h", [f"h{n}"])
    received = texts(listener.events_now())
    for group in "gh":
        assert [t for t in received if t[0] == group] == [f"{group}{n}" for n in range(300)]


async def test_by_default_every_frame_is_its_own_message_event_as_in_4x(
    sends: list[Any], alisten: Any
) -> None:
    listener: Listener = await alisten("g", "h")
    publisher.submit_many([("default", "g", "1"), ("default", "h", "x"), ("default", "g", "2")])
    await publisher.aflush()
    assert sorted(sends, key=lambda send: send[0]) == [
        ("g", {"type": GROUP_EVENT_TYPE, "message": "1", "group": "g"}),
        ("g", {"type": GROUP_EVENT_TYPE, "message": "2", "group": "g"}),
        ("h", {"type": GROUP_EVENT_TYPE, "message": "x", "group": "h"}),
    ]
    assert all("messages" not in event for _, event in sends)
    assert texts(await listener.aevents()) == ["1", "2", "x"]


async def test_batching_on_sends_many_frames_for_one_group_as_one_event(
    sends: list[Any], alisten: Any, settings: Any
) -> None:
    settings.ROHRPOST = {"BATCH_GROUP_MESSAGES": True}
    listener: Listener = await alisten("g", "h")
    publisher.submit_many([("default", "g", "1"), ("default", "h", "x"), ("default", "g", "2")])
    await publisher.aflush()
    assert sends == [
        ("g", {"type": GROUP_EVENT_TYPE, "messages": ["1", "2"], "group": "g"}),
        ("h", {"type": GROUP_EVENT_TYPE, "message": "x", "group": "h"}),
    ]
    assert texts(await listener.aevents()) == ["1", "2", "x"]


async def test_more_frames_than_max_frames_per_event_are_split(
    sends: list[Any], monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.ROHRPOST = {"BATCH_GROUP_MESSAGES": True}
    monkeypatch.setattr(publisher, "MAX_FRAMES_PER_EVENT", 3)
    publisher.submit("g", [str(n) for n in range(7)])
    await publisher.aflush()
    assert [event for _, event in sends] == [
        {"type": GROUP_EVENT_TYPE, "messages": ["0", "1", "2"], "group": "g"},
        {"type": GROUP_EVENT_TYPE, "messages": ["3", "4", "5"], "group": "g"},
        {"type": GROUP_EVENT_TYPE, "message": "6", "group": "g"},
    ]


async def test_batching_off_explicitly_sends_one_message_event_per_frame(
    sends: list[Any], settings: Any
) -> None:
    settings.ROHRPOST = {"BATCH_GROUP_MESSAGES": False}
    publisher.submit("g", ["1", "2", "3"])
    await publisher.aflush()
    assert [event for _, event in sends] == [
        {"type": GROUP_EVENT_TYPE, "message": text, "group": "g"} for text in ("1", "2", "3")
    ]


async def test_each_layer_alias_gets_its_own_frames(settings: Any) -> None:
    memory = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    use_layers(settings, {"default": memory, "other": memory})
    listeners = {}
    for alias in ("default", "other"):
        listener = Listener()
        listener.layer = get_channel_layer(alias)
        await listener.ajoin("g")
        listeners[alias] = listener
    publisher.submit("g", ["to default"])
    publisher.submit("g", ["to other"], layer="other")
    assert texts(await listeners["default"].aevents()) == ["to default"]
    assert texts(await listeners["other"].aevents()) == ["to other"]


async def test_nothing_to_submit_queues_nothing() -> None:
    loop = asyncio.get_running_loop()
    publisher.submit("g", [])
    publisher.submit_many([])
    assert loop not in publisher._queues


# --- failures ---------------------------------------------------------------------------------


async def test_a_layer_alias_that_is_not_configured_is_logged_and_others_still_go_out(
    caplog: pytest.LogCaptureFixture, alisten: Any
) -> None:
    listener: Listener = await alisten("g")
    publisher.submit_many([("nowhere", "g", "lost"), ("default", "g", "kept")])
    assert texts(await listener.aevents()) == ["kept"]
    (record,) = [r for r in caplog.records if r.name == "rohrpost"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "No channel layer 'nowhere' (set CHANNEL_LAYERS in the settings): 1 frames to 'g' dropped"
    )


async def test_a_failing_group_send_is_logged_and_the_next_group_still_gets_its_frames(
    caplog: pytest.LogCaptureFixture, alisten: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener: Listener = await alisten("good")
    layer = get_channel_layer()
    group_send = layer.group_send

    async def failing(group: str, event: dict[str, Any]) -> None:
        if group == "bad":
            raise ConnectionError("down")
        await group_send(group, event)

    monkeypatch.setattr(layer, "group_send", failing)
    publisher.submit_many([("default", "bad", "1"), ("default", "good", "2")])
    assert texts(await listener.aevents()) == ["2"]
    (record,) = [r for r in caplog.records if r.name == "rohrpost"]
    assert record.getMessage() == "Publishing 1 frames to group 'bad' failed"


async def test_a_broken_layer_config_does_not_stop_later_frames(
    settings: Any, alisten: Any
) -> None:
    # On this test's own loop: on the background loop it would wedge the whole run.
    settings.CHANNEL_LAYERS = {**settings.CHANNEL_LAYERS, "broken": {"BACKEND": "no.such.Layer"}}
    listener: Listener = await alisten("g")
    publisher.submit("g", ["lost"], layer="broken")
    await asyncio.sleep(0.01)
    publisher.submit("g", ["kept"])
    try:
        await asyncio.wait_for(publisher.aflush(), 1)
    finally:
        publisher._queues.pop(asyncio.get_running_loop(), None)
    assert texts(await listener.aevents()) == ["kept"]


# --- flush and aflush -------------------------------------------------------------------------


def test_flush_waits_until_the_background_loop_sent_everything(
    listen: Listen, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = listen("g")
    layer = get_channel_layer()
    group_send = layer.group_send

    async def slow(group: str, event: dict[str, Any]) -> None:
        await asyncio.sleep(0.2)
        await group_send(group, event)

    monkeypatch.setattr(layer, "group_send", slow)
    publisher.submit("g", ["slow"])
    assert publisher.flush(timeout=5) is True
    assert not publisher._queues[publisher._background_loop()].draining
    assert texts(listener.events_now()) == ["slow"]


def test_flush_returns_false_and_warns_when_the_timeout_passes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    layer = get_channel_layer()
    release = threading.Event()

    async def stuck(group: str, event: dict[str, Any]) -> None:
        await asyncio.to_thread(release.wait, 10)

    monkeypatch.setattr(layer, "group_send", stuck)
    publisher.submit("g", ["stuck"])
    try:
        assert publisher.flush(timeout=0.05) is False
    finally:
        release.set()
    assert publisher.flush() is True
    (record,) = [r for r in caplog.records if r.name == "rohrpost"]
    assert record.getMessage() == "rohrpost: pushes still pending after 0.1 s"


def test_flush_with_no_usable_background_loop_returns_true_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = asyncio.new_event_loop()
    closed.close()
    idle = asyncio.new_event_loop()  # never given a queue
    try:
        for background in [None, (-1, publisher._background_loop()), (os.getpid(), closed)]:
            monkeypatch.setattr(publisher, "_background", background)
            assert publisher.flush(timeout=0) is True
        monkeypatch.setattr(publisher, "_background", (os.getpid(), idle))
        assert publisher.flush(timeout=0) is True
    finally:
        idle.close()


def test_flush_in_a_process_that_never_submitted_returns_true() -> None:
    code = "from rohrpost import publisher; print(publisher.flush(), publisher._background)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.split() == ["True", "None"]


async def test_aflush_on_a_loop_that_never_submitted_returns_at_once() -> None:
    await asyncio.wait_for(publisher.aflush(), 1)


async def test_aflush_waits_for_a_drain_scheduled_from_another_thread(alisten: Any) -> None:
    listener: Listener = await alisten("g")
    queue = publisher._queue_for(asyncio.get_running_loop())
    # put() from a thread schedules the drain on this loop; it has not started yet.
    thread = threading.Thread(target=queue.put, args=([("default", "g", "late")],))
    thread.start()
    thread.join()
    assert queue.draining
    await publisher.aflush()
    assert not queue.draining
    assert texts(await listener.aevents()) == ["late"]


async def test_an_unexpected_error_in_a_batch_is_logged_and_the_drain_goes_on(
    alisten: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    listener: Listener = await alisten("g")
    real_send_batch = publisher._send_batch
    calls: list[int] = []

    async def fail_once(batch: list[Any]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("unexpected")
        await real_send_batch(batch)

    monkeypatch.setattr(publisher, "_send_batch", fail_once)
    publisher.submit("g", ["lost"])
    await asyncio.wait_for(publisher.aflush(), 1)
    publisher.submit("g", ["kept"])
    try:
        await asyncio.wait_for(publisher.aflush(), 1)
    finally:
        publisher._queues.pop(asyncio.get_running_loop(), None)
    assert texts(await listener.aevents()) == ["kept"]
    assert any("Publishing 1 frames failed" in r.getMessage() for r in caplog.records)


async def test_with_history_on_a_tracked_groups_frames_carry_their_positions(
    sends: list[Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from rohrpost import history

    settings.ROHRPOST = {"BATCH_GROUP_MESSAGES": True, "HISTORY": {"ENABLED": True}}
    store = history.MemoryHistory()
    monkeypatch.setattr(history, "_store", store)
    monkeypatch.setattr(publisher, "MAX_FRAMES_PER_EVENT", 2)
    start = await store.aopen("g")
    publisher.submit("g", ['{"id":1}', '{"id":2}', '{"id":3}'])
    publisher.submit("h", ['{"id":4}'])  # not tracked: as before
    await publisher.aflush()
    events = {group: [] for group in ("g", "h")}  # type: dict[str, list[dict[str, Any]]]
    for group, event in sends:
        events[group].append(event)
    assert [(e["epoch"], e["offset"]) for e in events["g"]] == [(start.epoch, 1), (start.epoch, 3)]
    assert [json.loads(t)["position"]["offset"] for t in texts(events["g"])] == [1, 2, 3]
    assert events["h"] == [{"type": GROUP_EVENT_TYPE, "message": '{"id":4}', "group": "h"}]
