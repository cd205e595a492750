"""An asyncio client for rohrpost servers, and a one-call helper for sync code.

Needs the ``client`` extra (``pip install 'rohrpost[client]'``, which brings
``websockets``)::

    async with Client("ws://127.0.0.1:8000/ws/rohrpost/") as client:
        print(await client.call("add", [1, 2, 3]))           # 6
        await client.subscribe({"type": "board", "id": 1})   # "board-1"
        async for push in client:
            print(push.action, push.group, push.object)

The client matches answers to requests by ``id``, pings the server every
``ping_interval`` seconds, replaces a connection that stops answering,
reconnects with exponential backoff and jitter, and subscribes again to every
group it was in. ``docs/python-client.md`` describes it in full.

Exceptions::

    RohrpostError              (rohrpost.exceptions)
     └── RohrpostCallError     the server answered a call with an error
    ConnectionError            (built in, an OSError)
     ├── ConnectionLost        the connection went before the answer came, or the client is closed
     │    └── ClosedByServer   the server closed with 4001 or 4003: the client stops for good
     └── HandshakeFailed       no WebSocket connection: HTTP 403 for a foreign Origin, ...
    TimeoutError               no answer within the timeout
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import json
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeAlias
from urllib.parse import urlsplit

from rohrpost.exceptions import RohrpostError

try:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
    from websockets.typing import Origin
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "rohrpost.client needs the websockets package (13.0 or later): "
        "pip install 'rohrpost[client]'"
    ) from exc

__all__ = [
    "FINAL_CLOSE_CODES",
    "MAX_FRAME_BYTES",
    "Client",
    "ClosedByServer",
    "ConnectionLost",
    "HandshakeFailed",
    "Push",
    "RohrpostCallError",
    "acall_once",
    "call_once",
]

logger = logging.getLogger("rohrpost.client")

#: Close codes after which reconnecting would only repeat the refusal: the
#: client stops for good (4001 not authenticated, 4003 ended by the server).
FINAL_CLOSE_CODES: Final = frozenset({4001, 4003})
_CLOSE_MEANINGS: Final = {
    4001: "not authenticated",
    4003: "the server ended this user's connections",
}
#: Largest frame the client accepts (uvicorn's own default maximum).
MAX_FRAME_BYTES: Final = 16 * 2**20
#: A connection that lived this long resets the backoff to its first step.
_STABLE_SECONDS: Final = 10.0
#: How many ids of given-up requests are remembered, so late answers are dropped.
_ABANDONED_KEPT: Final = 256

OnConnect: TypeAlias = "Callable[[Client], Awaitable[None] | None]"
OnAnswer: TypeAlias = Callable[[Any], None]


class _Waiting(NamedTuple):
    """A request waiting for its answer."""

    future: asyncio.Future[dict[str, Any]]
    #: Called with the answer's data the moment it is read, before any later frame.
    on_answer: OnAnswer | None


class RohrpostCallError(RohrpostError):
    """The server answered a call with an error frame.

    Attributes:
        code: The error's stable machine code (``forbidden``, ``invalid``, ...).
        message: The error's human-readable text.
        data: The error's ``data`` detail, ``None`` when it has none.
        type: The ``type`` of the error frame (the request's type).
        id: The ``id`` of the error frame (the request's id).
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        data: Any = None,
        type: str | None = None,
        id: Any = None,
    ) -> None:
        super().__init__(message, code=code, data=data)
        self.type = type
        self.id = id

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> RohrpostCallError:
        """Build the exception from an error frame (``{"id", "type", "error", "code"}``)."""
        code, message, type_ = reply.get("code"), reply.get("error"), reply.get("type")
        return cls(
            message if isinstance(message, str) else str(message),
            code=code if isinstance(code, str) else None,
            data=reply.get("data"),
            type=type_ if isinstance(type_, str) else None,
            id=reply.get("id"),
        )

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ConnectionLost(ConnectionError):
    """The connection ended before the answer came, or the client is closed.

    Attributes:
        code: The WebSocket close code when the connection closed (1006: no
            close frame, e.g. the network failed), else ``None``.
        reason: The close reason the server gave, if any.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason


class ClosedByServer(ConnectionLost):
    """The server closed with a code in :data:`FINAL_CLOSE_CODES`; the client stopped."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        meaning = _CLOSE_MEANINGS.get(code, "refused")
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"the server closed the connection with code {code} ({meaning}){detail}; "
            "the client does not reconnect",
            code=code,
            reason=reason,
        )


class HandshakeFailed(ConnectionError):
    """The server did not accept the WebSocket handshake.

    Attributes:
        status: The HTTP status of the refusal (403 for an ``Origin`` the server
            does not allow), ``None`` when the answer was not HTTP at all.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Push:
    """A message the server sent on its own, not as the answer to a request.

    Attributes:
        type: The message type: ``subscription-update`` for the change feed,
            ``unsubscribed`` when the server took the connection out of a group,
            or whatever the application sends.
        data: The message's ``data`` (``None`` when it has none).
        id: The message's ``id`` (generated by the server).
    """

    type: str
    data: Any = None
    id: Any = None

    @property
    def group(self) -> str | None:
        """The group a ``subscription-update`` or ``unsubscribed`` push concerns."""
        group = self.data.get("group") if isinstance(self.data, dict) else None
        return group if isinstance(group, str) else None

    @property
    def action(self) -> str | None:
        """``create``, ``update`` or ``delete`` for a change-feed push, else ``None``."""
        action = self._update_field("type")
        return action if isinstance(action, str) else None

    @property
    def object(self) -> Any:
        """The changed object's payload for a change-feed push, else ``None``."""
        return self._update_field("object")

    @property
    def reason(self) -> str | None:
        """Why the server took the connection out of the group (``unsubscribed`` pushes)."""
        if self.type != "unsubscribed" or not isinstance(self.data, dict):
            return None
        reason = self.data.get("reason")
        return reason if isinstance(reason, str) else None

    def as_message(self) -> dict[str, Any]:
        """The push as a frame: ``{"id", "type", "data"}``."""
        return {"id": self.id, "type": self.type, "data": self.data}

    def _update_field(self, key: str) -> Any:
        if self.type != "subscription-update" or not isinstance(self.data, dict):
            return None
        return self.data.get(key)


def _http_origin(url: str) -> str:
    """``ws://host:port/path`` -> ``http://host:port`` (``wss`` -> ``https``)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # never send credentials in the Origin
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{host}"


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
        )
        if min(delays) <= 0 or (ping_interval is not None and ping_interval <= 0):
            raise ValueError("Timeouts, intervals and backoff delays must be positive.")
        if max_pushes < 1:
            raise ValueError("max_pushes must be at least 1.")
        self.url = url
        self.origin = origin if origin is not None else _http_origin(url)
        self.token = token
        self.call_timeout = call_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect = reconnect
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_pushes = max_pushes
        #: How many pushes were dropped because nobody read them in time.
        self.dropped_pushes = 0
        self._headers = dict(headers or {})
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._on_connect = on_connect
        self._ids = itertools.count(1)
        self._connection: ClientConnection | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()  # set while a connection takes calls
        self._pending: dict[str, _Waiting] = {}
        self._abandoned: deque[str] = deque(maxlen=_ABANDONED_KEPT)
        self._subscriptions: dict[str, tuple[Any, str]] = {}  # key -> (object, group)
        self._pushes: asyncio.Queue[Push | None] = asyncio.Queue()  # None: the end
        self._overflowing = False
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
        return {group: group_object for group_object, group in self._subscriptions.values()}

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

        Returns:
            The group's name (the answer's ``data.group``).

        Raises:
            RohrpostCallError: The server refused (``forbidden``, ``limit``, ``invalid``).
            ValueError: The answer carries no group name.
            TimeoutError, ConnectionLost: As for :meth:`call`.
        """
        remember = self._remember_subscription(group_object, again=False)
        answer = await self._request("subscribe", group_object, timeout=timeout, on_answer=remember)
        return _group_of(answer)

    async def unsubscribe(self, group_object: Any, *, timeout: float | None = None) -> str:
        """Leave the group; it is dropped from the resubscribe set even when the call fails.

        Returns:
            The group's name.
        """
        self._subscriptions.pop(_canonical(group_object), None)
        return _group_of(await self._request("unsubscribe", group_object, timeout=timeout))

    def _remember_subscription(self, group_object: Any, *, again: bool) -> OnAnswer:
        """What records a subscription once its answer is read.

        It runs as the answer is read, not when the caller resumes: an
        ``unsubscribed`` push right behind the answer must find it recorded.
        """
        key = _canonical(group_object)  # fails early for objects JSON cannot encode

        def remember(data: Any) -> None:
            group = data.get("group") if isinstance(data, dict) else None
            if isinstance(group, str) and (not again or key in self._subscriptions):
                self._subscriptions[key] = (group_object, group)

        return remember

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
        are lost: fetch state again in ``on_connect``.

        Iteration ends after :meth:`close`; when the client stopped on its own
        (a final close code, or a loss with ``reconnect=False``) it raises that
        :class:`ConnectionLost` instead. Each push goes to one iterator.
        """
        return _PushIterator(self)

    def __aiter__(self) -> AsyncIterator[Push]:
        return self.pushes()

    async def _next_push(self) -> Push:
        push = await self._pushes.get()
        if push is None:
            self._pushes.put_nowait(None)  # leave the end mark for the next reader
            if self._stop_error is not None:
                raise self._stop_error()
            raise StopAsyncIteration
        return push

    def _queue_push(self, push: Push) -> None:
        if self._pushes.qsize() < self.max_pushes:
            self._overflowing = False
        else:
            self._pushes.get_nowait()
            self.dropped_pushes += 1
            if not self._overflowing:
                logger.warning(
                    "%d pushes are waiting to be read: dropping the oldest ones "
                    "(read client.pushes() faster, or raise max_pushes)",
                    self.max_pushes,
                )
                self._overflowing = True
        self._pushes.put_nowait(push)

    # --- the connection's life --------------------------------------------------------

    async def _open(self) -> ClientConnection:
        try:
            return await connect(
                self.url,
                origin=Origin(self.origin),
                additional_headers=self._headers,
                open_timeout=self._open_timeout,
                close_timeout=self._close_timeout,
                ping_interval=None,  # the keepalive is rohrpost's own ping
                max_size=MAX_FRAME_BYTES,
            )
        except asyncio.TimeoutError as exc:
            message = f"No WebSocket connection to {self.url} within {self._open_timeout:g} s"
            raise TimeoutError(message) from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            hint = " (is the Origin allowed?)" if status == 403 else ""
            raise HandshakeFailed(
                f"{self.url} refused the WebSocket handshake with HTTP {status}{hint}",
                status=status,
            ) from exc
        except WebSocketException as exc:
            raise HandshakeFailed(f"No WebSocket handshake with {self.url}: {exc}") from exc

    async def _run(self, connection: ClientConnection) -> None:
        """Serve connection after connection until the client stops."""
        loop = asyncio.get_running_loop()
        failures = 0
        restore = False
        try:
            while True:
                opened_at = loop.time()
                await self._serve(connection, restore=restore)
                lost_error = functools.partial(self._lost_error, connection)
                self._fail_pending(lost_error)
                lost = lost_error()
                if isinstance(lost, ClosedByServer) or not self.reconnect:
                    logger.warning("%s", lost)
                    self._stop_error = lost_error
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
        """Subscribe again to every group; ``False`` when the connection is no good."""
        entries = list(self._subscriptions.items())
        results = await asyncio.gather(
            *(
                self._request(
                    "subscribe",
                    group_object,
                    timeout=None,
                    connection=connection,
                    on_answer=self._remember_subscription(group_object, again=True),
                )
                for _, (group_object, _) in entries
            ),
            return_exceptions=True,
        )
        for (key, (_, group)), result in zip(entries, results, strict=True):
            if isinstance(result, RohrpostCallError):
                logger.warning("Subscribing again to %s was refused: %s", group, result)
                self._subscriptions.pop(key, None)
                reason = f"subscribing again after a reconnect was refused: {result}"
                self._queue_push(Push("unsubscribed", {"group": group, "reason": reason}))
            elif isinstance(result, BaseException):
                logger.warning("Subscribing again failed (%s); replacing the connection.", result)
                connection.transport.abort()
                return False
        return True

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
        self._fail_pending(self._closed_error)
        self._pushes.put_nowait(None)
        self._ready.set()  # callers waiting for a connection wake up and see the end

    def _closed_error(self) -> ConnectionLost:
        if self._stop_error is not None:
            return self._stop_error()
        return ConnectionLost("The client is closed.")

    def _lost_error(self, connection: ClientConnection) -> ConnectionLost:
        # The sans-I/O protocol's view: websockets 13.0 has no Connection.close_code yet.
        code, reason = connection.protocol.close_code, connection.protocol.close_reason
        if code is not None and code in FINAL_CLOSE_CODES:
            return ClosedByServer(code, reason)
        return ConnectionLost(
            f"Lost the connection to {self.url} (close code {code})", code=code, reason=reason
        )

    def _fail_pending(self, error: Callable[[], Exception]) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(error())

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
    ) -> Any:
        """Send one request and return its answer's data (on ``connection`` or the current one)."""
        # String ids never collide with the integer ids the server generates for pushes.
        request_id = f"c{next(self._ids)}"
        message: dict[str, Any] = {"id": request_id, "type": type_}
        if data is not None:
            message["data"] = data
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
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = _Waiting(future, on_answer)
        try:
            try:
                await connection.send(text)
            except ConnectionClosed as exc:
                raise self._lost_error(connection) from exc
            return await future
        finally:
            del self._pending[request_id]
            if not future.done():
                future.cancel()
            if future.cancelled():  # given up (timeout, cancellation): its answer may still come
                self._abandoned.append(request_id)
            else:
                future.exception()  # retrieved: asyncio must not report it as lost

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
        message_id = message.get("id")
        if isinstance(message_id, str):
            waiting = self._pending.get(message_id)
            if waiting is not None:
                if not waiting.future.done():
                    if waiting.on_answer is not None and "error" not in message:
                        waiting.on_answer(message.get("data"))
                    waiting.future.set_result(message)
                return
            if message_id in self._abandoned:
                logger.debug("Dropped the late answer to request %s.", message_id)
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
        push = Push(push_type, message.get("data"), message_id)
        if push_type == "unsubscribed":
            self._subscriptions = {
                key: entry for key, entry in self._subscriptions.items() if entry[1] != push.group
            }
        self._queue_push(push)


class _PushIterator:
    """What :meth:`Client.pushes` returns: an async iterator over the client's pushes."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __aiter__(self) -> _PushIterator:
        return self

    async def __anext__(self) -> Push:
        return await self._client._next_push()


def _canonical(group_object: Any) -> str:
    return json.dumps(group_object, sort_keys=True, separators=(",", ":"))


def _group_of(data: Any) -> str:
    group = data.get("group") if isinstance(data, dict) else None
    if not isinstance(group, str):
        raise ValueError(f"The answer carries no group name: {data!r}")
    return group


async def acall_once(
    url: str,
    type: str,
    data: Any = None,
    *,
    token: str | None = None,
    timeout: float = 5.0,
    origin: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Connect, make one call, close, and return the answer's ``data``.

    Connecting and waiting for the answer may each take up to ``timeout`` seconds.

    Raises:
        RohrpostCallError: The server answered with an error.
        OSError: The server cannot be reached (``ConnectionRefusedError``, ...),
            refused the handshake (:class:`HandshakeFailed`), went away
            (:class:`ConnectionLost`) or did not answer in time (``TimeoutError``).
    """
    client = Client(
        url,
        token=token,
        origin=origin,
        headers=headers,
        call_timeout=timeout,
        open_timeout=timeout,
        ping_interval=None,
        reconnect=False,
    )
    async with client:
        return await client.call(type, data)


def call_once(
    url: str,
    type: str,
    data: Any = None,
    *,
    token: str | None = None,
    timeout: float = 5.0,
    origin: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """The sync twin of :func:`acall_once`, for scripts and management commands::

        task = call_once("ws://127.0.0.1:8000/ws/rohrpost/", "task.add", {"board": 1, "title": "x"})

    It runs its own event loop, so it cannot be called from async code (use
    :func:`acall_once` there).

    Raises:
        RuntimeError: An event loop is running in this thread.
        RohrpostCallError, OSError: As for :func:`acall_once`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("call_once() cannot run inside an event loop; await acall_once().")
    return asyncio.run(
        acall_once(url, type, data, token=token, timeout=timeout, origin=origin, headers=headers)
    )
