"""Deliver group messages from any thread without blocking it, in order, in batches.

The change feed publishes from wherever a model is saved: a view, a
management command, a Celery task, a handler in a worker thread, an async
view. Waiting there for the channel layer (and, from plain sync code, starting
a new event loop and a new Redis connection for every save, which is what
``async_to_sync`` does) would make every save pay for the broadcast.

Instead, :func:`submit` hands the frames to an event loop and returns:

- the loop of the current thread, when one runs here;
- the loop a ``sync_to_async`` worker thread belongs to (a sync handler,
  ``asave`` in an async view), so the in-memory channel layer keeps working;
- else one background loop in a daemon thread, started on first use and
  kept for the life of the process, with its channel-layer connections.

Each loop drains its queue with one task at a time, so frames reach each
group in the order they were submitted, and everything queued while a send
was in flight goes out together. By default each frame is its own
channel-layer event, ``{"type": "rohrpost.message", "message": <text>}``, as
in 4.x: a custom consumer whose ``rohrpost_message`` reads
``event["message"]`` (what the 4.x docs tell applications to write) gets
every push. The events queued for one group still leave together: on
channels_redis, in two or three Redis round trips for the whole batch
instead of four per event (:mod:`rohrpost.layersend`). Where every consumer
of the groups is one of rohrpost's, ``ROHRPOST = {"BATCH_GROUP_MESSAGES":
True}`` puts all of a group's queued frames into one event instead
(``"messages": [...]``; a single frame still travels as ``"message"``),
which is cheaper still under load. Pending frames are flushed when the
process exits (see :func:`flush`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from asgiref.sync import SyncToAsync
from channels.layers import get_channel_layer

from rohrpost import conf, history, layersend
from rohrpost.message import DEFAULT_CHANNEL_LAYER, GROUP_EVENT_TYPE

__all__ = [
    "DEFAULT_PUBLISH_WINDOW",
    "MAX_FRAMES_PER_EVENT",
    "aflush",
    "flush",
    "submit",
    "submit_many",
]

logger = logging.getLogger("rohrpost")

#: Most frames one channel-layer event carries; more are split over several events.
MAX_FRAMES_PER_EVENT = 500

#: Under a stream of frames, the least time in seconds between two sends of one loop;
#: what arrives meanwhile is sent together (``ROHRPOST = {"PUBLISH_WINDOW": ...}``;
#: 0 sends every batch at once). A frame after a quiet spell is sent at once.
DEFAULT_PUBLISH_WINDOW: float = conf.DEFAULTS["PUBLISH_WINDOW"]

# (layer alias, group name, frame text)
Item = tuple[str, str, str]


class _LoopQueue:
    """Frames waiting to be sent on one event loop, drained by one task at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.pending: list[Item] = []
        self.draining = False
        self.idle: asyncio.Event | None = None
        self.last_send = float("-inf")

    def put(self, items: list[Item]) -> None:
        with self.lock:
            self.pending.extend(items)
            if self.draining:
                return
            self.draining = True
        if _running_loop() is self.loop:
            self._start()
        else:
            self.loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self.idle is None:
            self.idle = asyncio.Event()
        self.idle.clear()
        # A frame after a quiet spell goes out at once. Under a stream of saves the
        # next batch waits until a window has passed since the last send began:
        # everything submitted meanwhile goes out together, one wake-up and one
        # group_send per group for many saves.
        delay = self.last_send + _batch_window() - self.loop.time()
        if delay > 0:
            self.loop.call_later(delay, self._spawn_drain)
        else:
            self._spawn_drain()

    def _spawn_drain(self) -> None:
        task = self.loop.create_task(self._drain())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)

    async def _drain(self) -> None:
        while True:
            self.last_send = self.loop.time()
            with self.lock:
                batch, self.pending = self.pending, []
                if not batch:
                    self.draining = False
                    assert self.idle is not None
                    self.idle.set()
                    return
            try:
                await _send_batch(batch)
            except Exception:  # the drain must go on, or this loop never sends again
                logger.exception("Publishing %d frames failed", len(batch))
            # Let the next batch gather for the rest of the window.
            delay = self.last_send + _batch_window() - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def wait_idle(self) -> None:
        while self.draining:
            if self.idle is not None and not self.idle.is_set():
                await self.idle.wait()
            else:
                await asyncio.sleep(0)  # the drain task is scheduled but not started yet


def _frames_per_event() -> int:
    return MAX_FRAMES_PER_EVENT if conf.get("BATCH_GROUP_MESSAGES") else 1


def _batch_window() -> float:
    return float(conf.get("PUBLISH_WINDOW"))


async def _send_batch(batch: list[Item]) -> None:
    by_layer: dict[str, dict[str, list[str]]] = {}
    for layer_alias, group, text in batch:
        by_layer.setdefault(layer_alias, {}).setdefault(group, []).append(text)
    for layer_alias, texts in by_layer.items():
        try:
            layer = get_channel_layer(layer_alias)
        except Exception:
            logger.exception("The channel layer %r cannot be built", layer_alias)
            layer = None
        if layer is None:
            for group, group_texts in texts.items():
                logger.error(
                    "No channel layer %r (set CHANNEL_LAYERS in the settings): "
                    "%d frames to %r dropped",
                    layer_alias,
                    len(group_texts),
                    group,
                )
            continue
        recorded = await history.arecord_many(texts)
        events = {group: _events(group, *found) for group, found in recorded.items()}
        await layersend.agroups_send(layer, events)  # logs what fails


def _events(group: str, texts: list[str], first: history.Position | None) -> list[dict[str, Any]]:
    """The channel-layer events that carry ``texts`` to ``group``."""
    per_event = _frames_per_event()
    events: list[dict[str, Any]] = []
    for start in range(0, len(texts), per_event):
        chunk = texts[start : start + per_event]
        # "group" lets a connection drop what was queued for it before it
        # was taken out of the group (rohrpost.access).
        event: dict[str, Any] = (
            {"type": GROUP_EVENT_TYPE, "message": chunk[0], "group": group}
            if len(chunk) == 1
            else {"type": GROUP_EVENT_TYPE, "messages": chunk, "group": group}
        )
        if first is not None:  # the first frame's position (rohrpost.history)
            event["epoch"], event["offset"] = first.epoch, first.offset + start
        events.append(event)
    return events


_tasks: set[asyncio.Task[None]] = set()
_queues: dict[asyncio.AbstractEventLoop, _LoopQueue] = {}
_queues_lock = threading.Lock()
_background: tuple[int, asyncio.AbstractEventLoop] | None = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    # The non-raising form: called for every save that publishes.
    return asyncio._get_running_loop()


def _queue_for(loop: asyncio.AbstractEventLoop) -> _LoopQueue:
    queue = _queues.get(loop)
    if queue is None:
        with _queues_lock:
            queue = _queues.get(loop)
            if queue is None:
                for stale in [known for known in _queues if known.is_closed()]:
                    del _queues[stale]
                queue = _queues[loop] = _LoopQueue(loop)
    return queue


def _target_loop() -> asyncio.AbstractEventLoop:
    loop = _running_loop()
    if loop is not None:
        return loop
    # A sync_to_async worker thread knows its event loop (asgiref records it).
    threadlocal = SyncToAsync.threadlocal
    if getattr(threadlocal, "main_event_loop_pid", None) == os.getpid():
        main_loop: asyncio.AbstractEventLoop | None = getattr(threadlocal, "main_event_loop", None)
        if main_loop is not None and main_loop.is_running():
            return main_loop
    return _background_loop()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _background
    with _queues_lock:
        # After a fork the thread is gone: the child starts its own.
        if _background is None or _background[0] != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="rohrpost-publisher", daemon=True
            )
            thread.start()
            _background = (os.getpid(), loop)
        return _background[1]


def submit(group: str, texts: Iterable[str], *, layer: str = DEFAULT_CHANNEL_LAYER) -> None:
    """Queue encoded frames for every connection in ``group``; returns at once.

    Safe from any thread and from async code. Frames submitted from one
    thread reach each group in order.
    """
    items = [(layer, group, text) for text in texts]
    if items:
        _queue_for(_target_loop()).put(items)


def submit_many(items: list[Item]) -> None:
    """Queue ``(layer alias, group, frame)`` items together (see :func:`submit`)."""
    if items:
        _queue_for(_target_loop()).put(items)


async def aflush() -> None:
    """Wait until every frame queued on the running loop has been handed to the layer."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is not None:
        await queue.wait_idle()


def flush(timeout: float = 5.0) -> bool:
    """Wait until the background loop has sent every frame queued on it.

    For plain sync code (management commands, scripts, tasks) that wants its
    pushes out before it goes on; also run at interpreter exit.

    Returns:
        ``True`` when everything was sent within ``timeout`` seconds.
    """
    background = _background
    if background is None or background[0] != os.getpid() or background[1].is_closed():
        return True
    loop = background[1]
    queue = _queues.get(loop)
    if queue is None:
        return True
    done: Future[None] = asyncio.run_coroutine_threadsafe(queue.wait_idle(), loop)
    try:
        done.result(timeout)
    except FutureTimeoutError:
        logger.warning("rohrpost: pushes still pending after %.1f s", timeout)
        return False
    return True


atexit.register(flush)
