"""A test client that talks to a rohrpost endpoint through Channels' communicator."""

from __future__ import annotations

import itertools
import json
from collections import deque
from types import TracebackType
from typing import Any

from rohrpost import publisher
from rohrpost.exceptions import RohrpostError

__all__ = ["CallError", "TestClient"]

DEFAULT_PATH = "/ws/rohrpost/"
# Django's test environment adds "testserver" to ALLOWED_HOSTS.
TEST_ORIGIN = b"http://testserver"


class CallError(RohrpostError):
    """The server answered a :meth:`TestClient.call` with an error frame.

    Attributes:
        code: The error's machine code (``invalid``, ``forbidden``, ...).
        message: The error's text.
        data: The error's ``data`` detail (``None`` without one).
        frame: The whole error frame, decoded.
    """

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(frame.get("error"), code=frame.get("code"), data=frame.get("data"))
        self.frame = frame

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TestClient:
    """A connected rohrpost client over ``channels.testing.WebsocketCommunicator``.

    Use it as an async context manager; it connects on entry and disconnects
    on exit::

        async with TestClient(user=alice) as client:
            assert await client.call("add", [1, 2]) == 3
            await client.subscribe({"type": "board", "id": 1})
            push = await client.receive_push()

    Args:
        application: The ASGI application to connect to: a consumer's
            ``as_asgi()``, a URL router or the project's whole ASGI application.
            By default an :class:`~rohrpost.AsyncRohrpostConsumer`.
        path: The path of the WebSocket request.
        user: Put into ``scope["user"]`` (a communicator has no auth middleware).
        headers: HTTP headers of the handshake, as ``(name, value)`` byte pairs.
            Without an ``origin`` header, ``Origin: http://testserver`` is sent,
            which ``AllowedHostsOriginValidator`` lets through in Django's tests.
        timeout: Seconds to wait for a reply or a push unless told otherwise.

    Pushes that arrive while a call waits for its reply are kept, in order,
    for :meth:`receive_push`.
    """

    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(
        self,
        application: Any = None,
        path: str = DEFAULT_PATH,
        *,
        user: Any = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        timeout: float = 2.0,
    ) -> None:
        from channels.testing import WebsocketCommunicator

        if application is None:
            from rohrpost.consumers import AsyncRohrpostConsumer

            application = AsyncRohrpostConsumer.as_asgi()
        headers = list(headers or [])
        if not any(name.lower() == b"origin" for name, _value in headers):
            headers.append((b"origin", TEST_ORIGIN))
        self.communicator = WebsocketCommunicator(application, path, headers=headers)
        if user is not None:
            self.communicator.scope["user"] = user
        self.timeout = timeout
        self.pushes: deque[dict[str, Any]] = deque()
        self._ids = itertools.count(1)

    @property
    def scope(self) -> dict[str, Any]:
        """The connection's scope (set ``scope["user"]`` and the like before connecting)."""
        scope: dict[str, Any] = self.communicator.scope
        return scope

    async def connect(self) -> None:
        """Open the connection; raise ``AssertionError`` when the server refuses it."""
        connected, code = await self.communicator.connect(timeout=self.timeout)
        if not connected:
            raise AssertionError(f"The server refused the connection (close code {code}).")

    async def close(self) -> None:
        """Close the connection (nothing to do once the application has ended)."""
        # A receive that timed out has made the communicator cancel the application.
        if not self.communicator.future.done():
            await self.communicator.disconnect(timeout=self.timeout)

    async def __aenter__(self) -> TestClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame as JSON text, as it is."""
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame the server sends, decoded (pushes kept aside are not looked at)."""
        text = await self.communicator.receive_from(timeout=timeout or self.timeout)
        frame: dict[str, Any] = json.loads(text)
        return frame

    async def request(
        self, request_type: str, data: Any = None, *, timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send a request and return its answer frame, reply or error, decoded.

        ``fields`` become top-level fields of the request (``auth_jwt=...``).
        """
        request_id = next(self._ids)
        frame: dict[str, Any] = {"id": request_id, "type": request_type, **fields}
        if data is not None:
            frame["data"] = data
        await self.send(frame)
        while True:
            answer = await self.receive(timeout)
            # A push carries an id of its own (random, 53 bits): the id tells them apart.
            if answer.get("id") == request_id:
                return answer
            self.pushes.append(answer)

    async def call(
        self, request_type: str, data: Any = None, *, timeout: float | None = None, **fields: Any
    ) -> Any:
        """Make a call and return the reply's ``data``.

        Raises:
            CallError: The server answered with an error (``code``, ``message``, ``data``).
            asyncio.TimeoutError: No answer within ``timeout`` seconds.
        """
        answer = await self.request(request_type, data, timeout=timeout, **fields)
        if "error" in answer:
            raise CallError(answer)
        return answer.get("data")

    async def subscribe(self, group_object: dict[str, Any]) -> str:
        """Subscribe to a group object; return the group's name (raise :class:`CallError`)."""
        reply = await self.call("subscribe", group_object)
        group: str = reply["group"]
        return group

    async def unsubscribe(self, group_object: dict[str, Any]) -> str:
        """Unsubscribe from a group object; return the group's name."""
        reply = await self.call("unsubscribe", group_object)
        group: str = reply["group"]
        return group

    async def receive_push(self, timeout: float | None = None) -> dict[str, Any]:
        """The next push (a frame that answers no call), decoded as ``{"id", "type", "data"}``.

        Raises:
            asyncio.TimeoutError: None came within ``timeout`` seconds (Channels'
                communicator then stops the connection's application).
        """
        if self.pushes:
            return self.pushes.popleft()
        return await self.receive(timeout)

    async def assert_no_push(self, timeout: float = 0.1) -> None:
        """Fail if a push is waiting or comes within ``timeout`` seconds.

        First every frame this process published is handed to the channel
        layer, so a push already on its way is seen, not missed. A push that
        fails the assertion is kept for :meth:`receive_push`.
        """
        await publisher.aflush()
        if self.pushes:
            raise AssertionError(f"Unexpected push: {self.pushes[0]!r}")
        if not await self.communicator.receive_nothing(timeout=timeout):
            self.pushes.append(await self.receive())  # kept for receive_push, as any push
            raise AssertionError(f"Unexpected push: {self.pushes[0]!r}")
