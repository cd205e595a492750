"""The client: one connection after another to a rohrpost server, with calls over it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from rohrpost.client._errors import ClosedByServer, ConnectionLost, RohrpostCallError
from rohrpost.client._push import Push, PushIterator, PushQueue
from rohrpost.client._requests import OnAnswer, PendingRequests
from rohrpost.client._subscriptions import (
    GAP_FILL_DELAY,
    Advance,
    Position,
    Subscriptions,
    group_of,
)
from rohrpost.client._websocket import http_origin, lost_error, open_websocket

__all__ = ["Client", "OnConnect"]

logger = logging.getLogger("rohrpost.client")  # the whole client logs under one name

#: A connection that lived this long resets the backoff to its first step.
_STABLE_SECONDS: Final = 10.0

OnConnect: TypeAlias = "Callable[[Client], Awaitable[None] | None]"


class Client:
    """A connection to a rohrpost server that keeps itself alive.

    Use it as ``async with Client(url) as client:`` (or call :meth:`connect`
    and :meth:`close`). The first connection must succeed, or :meth:`connect`
    raises; later losses are repaired in the background while ``reconnect`` is
    on. Calls made while the client reconnects wait for the new connection
    (within their timeout); calls that were waiting for an answer when a
    connection went fail with :class:`ConnectionLost`, since the server may or
    may not have handled them.

    Args:
        url: The endpoint, ``ws://`` or ``wss://``.
        token: Sent as ``auth_jwt`` with every call, subscribe and unsubscribe
            (not with keepalive pings). Assign ``client.token`` to change it.
        origin: The ``Origin`` header; by default the URL's ``http(s)://host:port``.
        headers: More handshake headers (a session ``Cookie``, ...).
        call_timeout: Default seconds a call waits for its answer.
        open_timeout: Seconds an opening handshake may take.
        close_timeout: Seconds a closing handshake may take.
        ping_interval: Seconds between keepalive pings; ``None`` turns them off.
        ping_timeout: Seconds a ping waits for its pong; without one the
            connection counts as dead and is replaced.
        reconnect: Repair lost connections; when off, a loss stops the client.
        backoff_base: The first reconnect delay, doubled after every failed
            attempt (and every connection that lasted less than 10 s).
        backoff_max: The longest reconnect delay. Each delay is drawn from the
            upper half of its step (jitter), so clients do not return in step.
        max_pushes: How many unread pushes are kept; beyond that the oldest is
            dropped (see :meth:`pushes`).
        gap_fill_delay: Seconds a gap in a group's offsets (groups with
            history) may stay open before the client asks the server for the
            pushes missing from it (see :meth:`pushes`).
        on_connect: Called (awaited when it is a coroutine function) with the
            client after every connection is ready, the first included, once
            subscriptions are restored: the place to fetch state that pushes
            may have missed while the client was away.

    Raises:
        ValueError: ``url`` is not a ``ws://`` or ``wss://`` URL, or a number is out of range.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        call_timeout: float = 10.0,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        ping_interval: float | None = 5.0,
        ping_timeout: float = 10.0,
        reconnect: bool = True,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_pushes: int = 1000,
        gap_fill_delay: float = GAP_FILL_DELAY,
        on_connect: OnConnect | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ValueError(f"Not a WebSocket URL (ws:// or wss://): {url!r}")
        delays = (
            call_timeout,
            open_timeout,
            close_timeout,
            ping_timeout,
            backoff_base,
            backoff_max,
            gap_fill_delay,
        )
        if min(delays) <= 0 or (ping_interval is not None and ping_interval <= 0):
            raise ValueError("Timeouts, intervals and backoff delays must be positive.")
        if max_pushes < 1:
            raise ValueError("max_pushes must be at least 1.")
        self.url = url
        self.origin = origin if origin is not None else http_origin(url)
        self.token = token
        self.call_timeout = call_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect = reconnect
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.gap_fill_delay = gap_fill_delay
        self._headers = dict(headers or {})
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._on_connect = on_connect
        self._connection: ClientConnection | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # set while a connection takes calls
        self._pending = PendingRequests()
        self._subscriptions = Subscriptions(on_reset=self._on_reset)
        self._resets: set[asyncio.Task[None]] = set()  # subscribes for a fresh snapshot
        self._resetting: set[str] = set()  # the groups they are for
        # group -> the task that fills a gap in its offsets, and what wakes it early
        self._gap_fills: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._pushes = PushQueue(max_pushes)
        self._stopped = False
        self._stop_error: Callable[[], ConnectionLost] | None = None

    # --- life cycle -------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the first connection; the client keeps it (or its successors) open.

        Raises:
            OSError: The server cannot be reached (``ConnectionRefusedError``, ...),
                did not answer in time (``TimeoutError``) or refused the
                handshake (:class:`HandshakeFailed`).
            RuntimeError: The client was connected or closed before.
        """
        if self._run_task is not None or self._stopped:
            raise RuntimeError("A Client connects once; make a new one.")
        self._connection = await self._open()
        self._run_task = asyncio.create_task(
            self._run(self._connection), name=f"rohrpost client {self.url}"
        )

    async def close(self) -> None:
        """Close the connection and stop for good; pending calls fail with ConnectionLost."""
        task = self._run_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])  # unlike `await task`, keeps the caller's own cancellation
        # A task cancelled before its first step never ran its own clean-up.
        if self._connection is not None:
            await self._connection.close()
        self._finish()

    @property
    def connected(self) -> bool:
        """Whether a connection is open and takes calls right now."""
        return self._ready.is_set() and not self._stopped

    @property
    def closed(self) -> bool:
        """Whether the client has stopped: ``close()``, a final close code, or a loss for good."""
        return self._stopped

    @property
    def subscriptions(self) -> dict[str, Any]:
        """The groups the client is subscribed to (and will resubscribe): name -> group object."""
        return self._subscriptions.by_group()

    @property
    def max_pushes(self) -> int:
        """How many unread pushes are kept; beyond that the oldest is dropped."""
        return self._pushes.max_pushes

    @max_pushes.setter
    def max_pushes(self, value: int) -> None:
        self._pushes.max_pushes = value

    @property
    def dropped_pushes(self) -> int:
        """How many pushes were dropped because nobody read them in time."""
        return self._pushes.dropped

    @dropped_pushes.setter
    def dropped_pushes(self, value: int) -> None:
        self._pushes.dropped = value

    # --- requests ---------------------------------------------------------------------

    async def call(self, type: str, data: Any = None, *, timeout: float | None = None) -> Any:
        """Send a request and return the ``data`` of its answer.

        Args:
            type: The handler's name.
            data: The request's ``data``; ``None`` sends no ``data`` field.
            timeout: Seconds to wait for the answer (and for a connection while
                the client reconnects); ``call_timeout`` by default.

        Returns:
            The answer's ``data`` (``None`` when it has none).

        Raises:
            RohrpostCallError: The server answered with an error.
            TimeoutError: No answer within ``timeout``.
            ConnectionLost: The connection went before the answer came, or the
                client is closed.
        """
        return await self._request(type, data, timeout=timeout)

    async def subscribe(self, group_object: Any, *, timeout: float | None = None) -> str:
        """Join the group that ``group_object`` names; it is joined again after reconnects.

        For a kind with history, the client keeps the last position it
        applied and resubscribes ``since`` it, so the server replays what was
        missed (see :meth:`subscribe_data` for the snapshot).

        Returns:
            The group's name (the answer's ``data.group``).

        Raises:
            RohrpostCallError: The server refused (``forbidden``, ``limit``, ``invalid``).
            ValueError: The answer carries no group name.
            TimeoutError, ConnectionLost: As for :meth:`call`.
        """
        return group_of(await self.subscribe_data(group_object, timeout=timeout))

    async def subscribe_data(self, group_object: Any, *, timeout: float | None = None) -> Any:
        """Like :meth:`subscribe`, but return the answer's whole ``data``.

        That is ``{"group"}``, and for a kind with history its ``position``
        and, for a kind with a snapshot, the ``snapshot`` to start from: the
        pushes that follow are those after it.
        """
        remember = self._subscriptions.remembering(group_object, again=False)
        answer = await self._request("subscribe", group_object, timeout=timeout, on_answer=remember)
        group_of(answer)
        return answer

    def position(self, group: str) -> dict[str, Any] | None:
        """The last position applied in a group with history, ``{"epoch", "offset"}``."""
        position = self._subscriptions.position(group)
        return None if position is None else position.wire()

    async def unsubscribe(self, group_object: Any, *, timeout: float | None = None) -> str:
        """Leave the group; it is dropped from the resubscribe set even when the call fails.

        Returns:
            The group's name.
        """
        self._subscriptions.forget(group_object)
        return group_of(await self._request("unsubscribe", group_object, timeout=timeout))

    async def ping(self, *, timeout: float | None = None) -> float:
        """Send a ``ping`` and return the seconds until its ``pong`` came."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._request("ping", None, timeout=timeout, authenticate=False)
        return loop.time() - started

    # --- pushes -----------------------------------------------------------------------

    def pushes(self) -> AsyncIterator[Push]:
        """Iterate over the pushes, as they come: ``async for push in client.pushes():``.

        Pushes are queued from the moment the client connects, whether or not
        anybody iterates. The queue keeps ``max_pushes``; when it is full the
        oldest push is dropped (counted in :attr:`dropped_pushes`, with a
        warning in the log) rather than slowing down reading, which would delay
        answers and pongs too. Pushes sent while the client was reconnecting
        are lost, except in groups with history: the client resubscribes
        ``since`` the last position it read and the server replays them (a
        push seen twice is dropped). A push lost on a live connection (the
        server's channel layer dropped it) shows as a gap in the offsets: one
        still open after ``gap_fill_delay`` (1 s), or ``MAX_AHEAD`` (100)
        pushes past it, is asked for the same way, and comes late, after the
        pushes that overtook it. When they are gone, a ``reset`` push
        (``data``: ``{"group", "snapshot", "position"}``) says so: start that
        group's state again from its snapshot. For groups without history,
        fetch state again in ``on_connect``.

        Iteration ends after :meth:`close`; when the client stopped on its own
        (a final close code, or a loss with ``reconnect=False``) it raises that
        :class:`ConnectionLost` instead. Each push goes to one iterator.
        """
        return PushIterator(self._next_push)

    def __aiter__(self) -> AsyncIterator[Push]:
        return self.pushes()

    async def _next_push(self) -> Push:
        push = await self._pushes.get()
        if push is None:
            if self._stop_error is not None:
                raise self._stop_error()
            raise StopAsyncIteration
        return push

    # --- the connection's life --------------------------------------------------------

    async def _open(self) -> ClientConnection:
        return await open_websocket(
            self.url,
            origin=self.origin,
            headers=self._headers,
            open_timeout=self._open_timeout,
            close_timeout=self._close_timeout,
        )

    async def _run(self, connection: ClientConnection) -> None:
        """Serve connection after connection until the client stops."""
        loop = asyncio.get_running_loop()
        failures = 0
        restore = False
        try:
            while True:
                opened_at = loop.time()
                await self._serve(connection, restore=restore)
                loss_error = functools.partial(lost_error, connection, self.url)
                self._pending.fail_all(loss_error)
                lost = loss_error()
                if isinstance(lost, ClosedByServer) or not self.reconnect:
                    logger.warning("%s", lost)
                    self._stop_error = loss_error
                    return
                failures = 0 if loop.time() - opened_at >= _STABLE_SECONDS else failures + 1
                logger.warning("%s; reconnecting", lost)
                connection = await self._reopen(failures)
                restore = True
        except Exception:  # a bug must not leave callers waiting forever
            logger.exception("The rohrpost client stopped on an unexpected error.")
            self._stop_error = functools.partial(ConnectionLost, "The client failed; see the log.")
        finally:
            self._ready.clear()
            if self._connection is not None:
                await self._connection.close()
            self._finish()

    async def _reopen(self, failures: int) -> ClientConnection:
        while True:
            ceiling = min(self.backoff_max, self.backoff_base * 2 ** min(failures, 32))
            await asyncio.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))
            try:
                return await self._open()
            except OSError as exc:  # refused, timed out, handshake failed: try again
                failures += 1
                logger.info("Reconnecting to %s failed: %s", self.url, exc)

    async def _serve(self, connection: ClientConnection, *, restore: bool) -> None:
        """Read ``connection`` until it closes, its session running beside."""
        self._connection = connection
        session = asyncio.create_task(self._session(connection, restore=restore))
        try:
            try:
                async for frame in connection:
                    if isinstance(frame, str):
                        self._dispatch(frame)
                    else:
                        logger.warning("Ignored a binary frame of %d bytes.", len(frame))
            except ConnectionClosed:
                pass
        finally:
            session.cancel()
            await asyncio.wait([session])
            self._ready.clear()

    async def _session(self, connection: ClientConnection, *, restore: bool) -> None:
        """Restore subscriptions, open for calls, run on_connect and the keepalive beside it."""
        try:
            if restore and not await self._restore(connection):
                return
            self._ready.set()
            notify = asyncio.create_task(self._notify_connected())
            try:
                if self.ping_interval is not None:
                    await self._keepalive(connection, self.ping_interval)
                await notify
            finally:  # on_connect belongs to this connection: it ends with it
                notify.cancel()
                await asyncio.wait([notify])
        except Exception:
            logger.exception("The rohrpost client's session failed; replacing the connection.")
            connection.transport.abort()

    async def _notify_connected(self) -> None:
        if self._on_connect is None:
            return
        try:
            result = self._on_connect(self)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("The on_connect callback failed.")

    async def _restore(self, connection: ClientConnection) -> bool:
        """Subscribe again to every group; ``False`` when the connection is no good.

        Groups with history are asked for what they missed: ``since`` the last
        position applied.
        """
        entries = self._subscriptions.entries()
        results = await asyncio.gather(
            *(
                self._resubscribe(connection, group_object, group)
                for _, group_object, group in entries
            ),
            return_exceptions=True,
        )
        for (key, _, group), result in zip(entries, results, strict=True):
            if isinstance(result, RohrpostCallError):
                logger.warning("Subscribing again to %s was refused: %s", group, result)
                self._subscriptions.discard(key)
                reason = f"subscribing again after a reconnect was refused: {result}"
                self._pushes.put(Push("unsubscribed", {"group": group, "reason": reason}))
            elif isinstance(result, BaseException):
                logger.warning("Subscribing again failed (%s); replacing the connection.", result)
                connection.transport.abort()
                return False
        return True

    async def _resubscribe(
        self, connection: ClientConnection, group_object: Any, group: str
    ) -> Any:
        """Subscribe again to a group held, ``since`` its position when it has history."""
        return await self._request(
            "subscribe",
            group_object,
            timeout=None,
            connection=connection,
            on_answer=self._subscriptions.remembering(group_object, again=True),
            extra=self._since(group),
        )

    def _since(self, group: str) -> dict[str, Any] | None:
        position = self._subscriptions.position(group)
        return None if position is None else {"since": position.wire()}

    def _on_reset(self, group: str, snapshot: Any, position: Position) -> None:
        data = {"group": group, "snapshot": snapshot, "position": position.wire()}
        self._pushes.put(Push("reset", data))

    def _reset_live(self, group: str) -> None:
        """A push of a new epoch, or unrecorded, came for ``group``: get a fresh snapshot."""
        group_object = self._subscriptions.by_group().get(group)
        if group_object is None or group in self._resetting:
            return
        self._resetting.add(group)
        task = asyncio.create_task(self._areset(group, group_object))
        self._resets.add(task)
        task.add_done_callback(self._resets.discard)

    async def _areset(self, group: str, group_object: Any) -> None:
        remember = self._subscriptions.remembering(group_object, again=True, reset=True)
        try:
            await self._request("subscribe", group_object, timeout=None, on_answer=remember)
        except RohrpostCallError as exc:  # refused now: the server took us out of the group
            self._refused(group, "for a reset", exc)
        except (ConnectionLost, TimeoutError):
            # The next connection's resubscribe finishes the reset.
            self._subscriptions.reset_interrupted(group)
        finally:
            self._resetting.discard(group)

    def _refused(self, group: str, purpose: str, exc: RohrpostCallError) -> None:
        """A subscribe for a group held live was refused: the server took us out of it."""
        logger.warning("Subscribing again to %s %s was refused: %s", group, purpose, exc)
        self._subscriptions.forget_group(group)
        reason = f"subscribing again {purpose} was refused: {exc}"
        self._pushes.put(Push("unsubscribed", {"group": group, "reason": reason}))

    def _fill_gap(self, group: str, *, now: bool) -> None:
        """A push of ``group`` came beyond a gap in its offsets: see that the gap closes."""
        found = self._gap_fills.get(group)
        if found is None:
            wake = asyncio.Event()
            task = asyncio.create_task(self._afill_gap(group, wake))
            self._gap_fills[group] = (task, wake)
        else:
            wake = found[1]
        if now:
            wake.set()

    async def _afill_gap(self, group: str, wake: asyncio.Event) -> None:
        """While ``group`` has a gap, ask the server for what is missing, now and then.

        A gap that closes within ``gap_fill_delay`` was pushes that crossed;
        one still open is a push lost on its way. A ``subscribe`` ``since``
        the group's position gets it replayed (repeats of what came beyond
        the gap are dropped as duplicates), or a ``reset`` answer when the
        history no longer has it.
        """
        try:
            while self._subscriptions.gap_open(group):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.gap_fill_delay)
                wake.clear()
                try:
                    # After a reconnect, its resubscribe has asked for what is missing.
                    connection = await self._wait_ready()
                except ConnectionLost:
                    return  # the client is closed
                group_object = self._subscriptions.by_group().get(group)
                if group_object is None:
                    return  # unsubscribed meanwhile
                if not self._subscriptions.gap_open(group) or group in self._resetting:
                    continue  # closed by itself, or a fresh snapshot is on its way
                try:
                    await self._resubscribe(connection, group_object, group)
                except RohrpostCallError as exc:
                    self._refused(group, "for missing pushes", exc)
                    return
                except ConnectionLost:
                    return  # the next connection's resubscribe asks since the position
                except TimeoutError:
                    logger.warning("No answer to the subscribe for missing pushes of %s", group)
        finally:
            if self._gap_fills.get(group, (None,))[0] is asyncio.current_task():
                del self._gap_fills[group]

    async def _keepalive(self, connection: ClientConnection, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._request(
                    "ping",
                    None,
                    timeout=self.ping_timeout,
                    connection=connection,
                    authenticate=False,
                )
            except TimeoutError:
                logger.warning(
                    "No pong from %s within %g s; replacing the connection.",
                    self.url,
                    self.ping_timeout,
                )
                connection.transport.abort()
                return
            except RohrpostCallError:
                pass  # an answer all the same: the connection is alive
            except ConnectionLost:
                return  # the reader has seen it too and ends the session

    def _finish(self) -> None:
        """Mark the client stopped and wake everybody who waits on it."""
        if self._stopped:
            return
        self._stopped = True
        for task, _ in self._gap_fills.values():
            task.cancel()
        self._pending.fail_all(self._closed_error)
        self._pushes.end()
        self._ready.set()  # callers waiting for a connection wake up and see the end

    def _closed_error(self) -> ConnectionLost:
        if self._stop_error is not None:
            return self._stop_error()
        return ConnectionLost("The client is closed.")

    # --- frames -----------------------------------------------------------------------

    async def _request(
        self,
        type_: str,
        data: Any,
        *,
        timeout: float | None,
        connection: ClientConnection | None = None,
        authenticate: bool = True,
        on_answer: OnAnswer | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request and return its answer's data (on ``connection`` or the current one).

        ``extra`` holds more top-level fields (a subscribe's ``since``).
        """
        request_id = self._pending.new_id()
        message: dict[str, Any] = {"id": request_id, "type": type_}
        if data is not None:
            message["data"] = data
        if extra:
            message.update(extra)
        if authenticate and self.token is not None:
            message["auth_jwt"] = self.token
        text = json.dumps(message, ensure_ascii=False)
        timeout = self.call_timeout if timeout is None else timeout
        try:
            reply = await asyncio.wait_for(
                self._exchange(request_id, text, connection, on_answer), timeout
            )
        except asyncio.TimeoutError:
            raise TimeoutError(f"No answer to {type_!r} within {timeout:g} s") from None
        if "error" in reply:
            raise RohrpostCallError.from_reply(reply)
        return reply.get("data")

    async def _exchange(
        self,
        request_id: str,
        text: str,
        connection: ClientConnection | None,
        on_answer: OnAnswer | None,
    ) -> dict[str, Any]:
        if connection is None:
            connection = await self._wait_ready()
        with self._pending.expect(request_id, on_answer) as answer:
            try:
                await connection.send(text)
            except ConnectionClosed as exc:
                raise lost_error(connection, self.url) from exc
            return await answer

    async def _wait_ready(self) -> ClientConnection:
        while True:
            if self._stopped:
                raise self._closed_error()
            if self._run_task is None:
                raise RuntimeError("Connect the client first (`async with Client(...)`).")
            if self._ready.is_set() and self._connection is not None:
                return self._connection
            await self._ready.wait()

    def _dispatch(self, text: str) -> None:
        """Route one frame: the answer to a pending request, or a push."""
        try:
            message = json.loads(text)
        except ValueError:
            logger.warning("Ignored a frame that is not JSON: %.200r", text)
            return
        if not isinstance(message, dict):
            logger.warning("Ignored a frame that is not a JSON object: %.200r", text)
            return
        if self._pending.settle(message):
            return
        if "error" in message:
            logger.warning(
                "The server sent an error that answers no waiting request: %s (%s)",
                message.get("error"),
                message.get("code"),
            )
            return
        push_type = message.get("type")
        if not isinstance(push_type, str):
            logger.warning("Ignored a frame without a type: %.200r", text)
            return
        push = Push(push_type, message.get("data"), message.get("id"), message.get("position"))
        if push_type == "unsubscribed":
            self._subscriptions.forget_group(push.group)
        group = push.group
        if push_type != "subscription-update" or group is None:
            self._pushes.put(push)
            return
        position = Position.from_wire(push.position)
        advance = self._subscriptions.advance(group, position)
        if advance is Advance.DUPLICATE:
            logger.debug("Dropped a push seen before in %s (%s).", group, position)
            return
        self._pushes.put(push)
        if advance in (Advance.NEW_EPOCH, Advance.UNRECORDED):
            self._reset_live(group)
        elif advance in (Advance.AHEAD, Advance.GAP):
            self._fill_gap(group, now=advance is Advance.GAP)
