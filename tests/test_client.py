"""Tests for rohrpost.client against real servers, over real sockets.

Most tests talk to the demo project under uvicorn (:mod:`tests.demo_server`).
Reconnects and keepalives go through :class:`CuttableProxy`, a TCP proxy the
test can cut or blackhole. What the demo cannot be made to do (close with
4001 or 4003, send ``unsubscribed``, send garbage) comes from a small
scripted ``websockets`` server. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from rohrpost.client import (
    Client,
    ClosedByServer,
    ConnectionLost,
    HandshakeFailed,
    Push,
    RohrpostCallError,
    acall_once,
    call_once,
)
from rohrpost.exceptions import RohrpostError
from tests.demo_server import WS_PATH, DemoServer, run_demo

pytestmark = pytest.mark.e2e

IO_TIMEOUT = 10.0
#: Quick reconnects for tests: a cut connection is back within a few tenths of a second.
FAST = {"backoff_base": 0.05, "backoff_max": 0.2}


# --- servers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with run_demo(tmp_path_factory.mktemp("cli")) as server:
        yield server


@pytest.fixture(scope="module")
def alice_token(demo: DemoServer) -> str:
    return demo.token("alice")


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of a server, under the test's control.

    ``cut()`` closes every connection at once (both sides see a reset);
    ``blackhole()`` stops forwarding on the current connections, in both
    directions, without closing them (a dead network); ``refuse`` closes new
    connections as soon as they come.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refuse = False
        self.accepted = 0
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, asyncio.Event]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        for client_side, server_side, _ in self._links:
            client_side.transport.abort()
            server_side.transport.abort()
        self._links.clear()

    def blackhole(self) -> None:
        for _, _, flowing in self._links:
            flowing.clear()

    def resume(self) -> None:
        for _, _, flowing in self._links:
            flowing.set()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        server: asyncio.StreamWriter | None = None
        try:
            if self.refuse:
                return
            server_reader, server = await asyncio.open_connection("127.0.0.1", self.target_port)
            flowing = asyncio.Event()
            flowing.set()
            self._links.append((client, server, flowing))
            await asyncio.gather(
                self._pipe(client_reader, server, flowing),
                self._pipe(server_reader, client, flowing),
            )
        finally:
            for writer in (client, server):
                if writer is not None:
                    writer.transport.abort()
                    writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
    ) -> None:
        try:
            while data := await reader.read(65536):
                await flowing.wait()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()  # one side gone: the other goes too


@pytest.fixture
async def proxy(demo: DemoServer) -> AsyncIterator[CuttableProxy]:
    async with CuttableProxy(demo.port) as running:
        yield running


Script = Callable[[ServerConnection, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_server(script: Script) -> AsyncIterator[str]:
    """A websockets server on 127.0.0.1; its n-th connection runs ``script(connection, n)``."""
    count = 0

    async def handler(connection: ServerConnection) -> None:
        nonlocal count
        count += 1
        await script(connection, count)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


async def answer(connection: ServerConnection, data: Any) -> dict[str, Any]:
    """Receive one request and answer it with ``data``; return the request."""
    request: dict[str, Any] = json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))
    await connection.send(json.dumps({"id": request["id"], "type": request["type"], "data": data}))
    return request


# --- helpers ----------------------------------------------------------------------------


class Connections:
    """An ``on_connect`` callback that counts the connections a client made ready."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    async def __call__(self, client: Client) -> None:
        assert client.connected
        self.count += 1
        self._changed.set()

    async def reach(self, count: int) -> None:
        async def wait() -> None:
            while self.count < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), IO_TIMEOUT)


async def next_push(client: Client, timeout: float = IO_TIMEOUT) -> Push:
    return await asyncio.wait_for(anext(client.pushes()), timeout)


async def until(condition: Callable[[], bool], timeout: float = IO_TIMEOUT) -> None:
    async def wait() -> None:
        while not condition():  # noqa: ASYNC110 - the client's state has no event to wait on
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def add_task(demo: DemoServer, title: str, board: int = 1) -> dict[str, Any]:
    """Add a task through a client of its own, as another user of the board would."""
    async with Client(demo.ws_url) as editor:
        task: dict[str, Any] = await editor.call("task.add", {"board": board, "title": title})
        return task


async def private_board_id(demo: DemoServer, token: str) -> int:
    async with Client(demo.ws_url, token=token) as client:
        boards = await client.call("boards")
    (board,) = [board["id"] for board in boards if board["private"]]
    return int(board)


# --- calls ------------------------------------------------------------------------------


async def test_call_returns_the_answers_data(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        assert await client.call("add", [1, 2, 3]) == 6
        assert await client.call("echo", {"hello": ["wörld", 1]}) == {"hello": ["wörld", 1]}


async def test_call_without_data_sends_no_data_and_gets_none(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        assert await client.call("echo") is None


async def test_error_answer_raises_call_error_with_code_message_type_and_id(
    demo: DemoServer,
) -> None:
    async with Client(demo.ws_url) as client:
        with pytest.raises(RohrpostCallError) as excinfo:
            await client.call("add", "not numbers")
        with pytest.raises(RohrpostCallError, match="unknown_type"):
            await client.call("no.such.type")
    error = excinfo.value
    assert isinstance(error, RohrpostError)
    assert error.code == "invalid"
    assert error.message == "Invalid data: Input should be a valid list"
    assert error.type == "add"
    assert isinstance(error.id, str)
    assert error.data == {
        "errors": [{"path": [], "message": "Input should be a valid list", "type": "list_type"}]
    }
    assert str(error) == "invalid: Invalid data: Input should be a valid list"


async def test_concurrent_calls_each_get_their_own_answer(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        answers = await asyncio.gather(*(client.call("echo", {"n": n}) for n in range(30)))
    assert answers == [{"n": n} for n in range(30)]


async def test_ping_returns_the_round_trip_in_seconds(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        seconds = await client.ping()
    assert 0 < seconds < IO_TIMEOUT


async def test_token_is_sent_as_auth_jwt(demo: DemoServer, alice_token: str) -> None:
    async with Client(demo.ws_url) as anonymous:
        assert await anonymous.call("whoami") == {"authenticated": False, "username": None}
    async with Client(demo.ws_url, token=alice_token) as alice:
        assert await alice.call("whoami") == {"authenticated": True, "username": "alice"}
    async with Client(demo.ws_url, token="forged") as forged:
        with pytest.raises(RohrpostCallError) as excinfo:
            await forged.call("whoami")
    assert excinfo.value.code == "unauthenticated"


async def test_call_timeout_raises_timeout_error_and_the_late_answer_is_dropped(
    proxy: CuttableProxy,
) -> None:
    async with Client(proxy.url, ping_interval=None) as client:
        proxy.blackhole()
        with pytest.raises(TimeoutError, match=r"No answer to 'echo' within 0\.2 s"):
            await client.call("echo", {"late": True}, timeout=0.2)
        proxy.resume()  # the network is back: the late answer arrives now
        assert await client.call("echo", {"on": "time"}) == {"on": "time"}
        with pytest.raises(asyncio.TimeoutError):
            await next_push(client, timeout=0.2)  # the late answer is no push


async def test_call_before_connect_is_a_runtime_error() -> None:
    client = Client(f"ws://127.0.0.1:{closed_port()}/")
    with pytest.raises(RuntimeError, match="Connect the client first"):
        await client.call("ping")


# --- connecting -------------------------------------------------------------------------


def test_origin_defaults_to_the_urls_http_origin() -> None:
    assert Client("ws://127.0.0.1:8000/ws/rohrpost/").origin == "http://127.0.0.1:8000"
    assert Client("wss://user:pw@example.com/ws/").origin == "https://example.com"
    assert Client("ws://localhost/", origin="http://localhost:1").origin == "http://localhost:1"


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("http://127.0.0.1:8000/", {}),
        ("ws:///no-host", {}),
        ("ws://127.0.0.1/", {"call_timeout": 0}),
        ("ws://127.0.0.1/", {"ping_interval": -1}),
        ("ws://127.0.0.1/", {"max_pushes": 0}),
        ("ws://127.0.0.1/", {"gap_fill_delay": 0}),
    ],
)
def test_bad_url_or_settings_are_refused(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked elsewhere
        Client(url, **options)


async def test_foreign_origin_fails_the_handshake_with_403(demo: DemoServer) -> None:
    with pytest.raises(HandshakeFailed, match="HTTP 403") as excinfo:
        async with Client(demo.ws_url, origin="http://evil.example"):
            pass
    assert excinfo.value.status == 403
    assert isinstance(excinfo.value, ConnectionError)


async def test_connecting_to_a_closed_port_raises_connection_refused() -> None:
    with pytest.raises(ConnectionRefusedError):
        await Client(f"ws://127.0.0.1:{closed_port()}/").connect()


async def test_a_server_that_never_answers_the_handshake_times_out() -> None:
    held = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()
        await writer.wait_closed()
        held.set()

    async with await asyncio.start_server(hold, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(TimeoutError, match="No WebSocket connection"):
            await Client(f"ws://127.0.0.1:{port}/", open_timeout=0.2).connect()
        await asyncio.wait_for(held.wait(), IO_TIMEOUT)


async def test_a_client_connects_once(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        with pytest.raises(RuntimeError, match="connects once"):
            await client.connect()


# --- subscriptions and pushes ----------------------------------------------------------


async def test_subscribe_then_change_feed_pushes_carry_group_action_and_object(
    demo: DemoServer,
) -> None:
    async with Client(demo.ws_url) as client, Client(demo.ws_url) as editor:
        assert await client.subscribe({"type": "board", "id": 1}) == "board-1"
        assert client.subscriptions == {"board-1": {"type": "board", "id": 1}}
        task = await editor.call("task.add", {"board": 1, "title": "watch me"})
        await editor.call("task.rename", {"id": task["id"], "title": "renamed"})
        await editor.call("task.delete", {"id": task["id"]})
        pushes = [await next_push(client) for _ in range(3)]
    assert [push.type for push in pushes] == ["subscription-update"] * 3
    assert [push.action for push in pushes] == ["create", "update", "delete"]
    assert {push.group for push in pushes} == {"board-1"}
    assert pushes[0].object == task
    assert pushes[1].object["title"] == "renamed"
    assert isinstance(pushes[0].id, int)
    assert pushes[0].reason is None
    assert pushes[0].as_message()["data"]["type"] == "create"


async def test_async_for_over_the_client_yields_pushes(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client:
        await client.subscribe({"type": "board", "id": 1})
        await add_task(demo, "iterated")

        async def first() -> Push:
            async for push in client:
                return push
            raise AssertionError("the pushes ended")

        push = await asyncio.wait_for(first(), IO_TIMEOUT)
    assert push.object["title"] == "iterated"


async def test_private_board_needs_its_owners_token(demo: DemoServer, alice_token: str) -> None:
    board = await private_board_id(demo, alice_token)
    async with Client(demo.ws_url) as anonymous:
        with pytest.raises(RohrpostCallError) as excinfo:
            await anonymous.subscribe({"type": "board", "id": board})
        assert anonymous.subscriptions == {}
    assert excinfo.value.code == "forbidden"
    async with Client(demo.ws_url, token=alice_token) as alice:
        assert await alice.subscribe({"type": "board", "id": board}) == f"board-{board}"


async def test_unsubscribe_stops_pushes_and_leaves_the_resubscribe_set(demo: DemoServer) -> None:
    async with Client(demo.ws_url) as client, Client(demo.ws_url) as witness:
        await client.subscribe({"type": "board", "id": 1})
        await witness.subscribe({"type": "board", "id": 1})
        assert await client.unsubscribe({"type": "board", "id": 1}) == "board-1"
        assert client.subscriptions == {}
        await add_task(demo, "unseen")
        assert (await next_push(witness)).object["title"] == "unseen"
        with pytest.raises(asyncio.TimeoutError):
            await next_push(client, timeout=0.3)


async def test_a_slow_reader_loses_the_oldest_pushes_with_one_warning(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(demo.ws_url, max_pushes=2) as client:
        await client.subscribe({"type": "board", "id": 1})
        with caplog.at_level(logging.WARNING, logger="rohrpost.client"):
            for n in range(4):
                await add_task(demo, f"flood {n}")
            await until(lambda: client.dropped_pushes == 2)
        kept = [(await next_push(client)).object["title"] for _ in range(2)]
    assert kept == ["flood 2", "flood 3"]
    assert caplog.text.count("dropping the oldest") == 1


# --- losing the connection --------------------------------------------------------------


async def test_close_fails_pending_calls_and_ends_the_pushes(proxy: CuttableProxy) -> None:
    client = Client(proxy.url, ping_interval=None, close_timeout=0.2)
    await client.connect()
    proxy.blackhole()
    pending = asyncio.create_task(client.call("echo", {"never": "answered"}))
    await until(lambda: len(client._pending) == 1)
    await client.close()
    with pytest.raises(ConnectionLost, match="The client is closed"):
        await pending
    assert client.closed
    assert not client.connected
    assert [push async for push in client] == []
    with pytest.raises(ConnectionLost):
        await client.call("ping")
    with pytest.raises(RuntimeError, match="connects once"):
        await client.connect()
    await client.close()  # closing twice is fine


async def test_closing_a_client_that_never_connected_ends_its_pushes() -> None:
    client = Client(f"ws://127.0.0.1:{closed_port()}/")
    await client.close()
    assert client.closed
    assert [push async for push in client.pushes()] == []


async def test_a_cut_fails_the_pending_call_then_the_client_reconnects_and_resubscribes(
    demo: DemoServer, proxy: CuttableProxy
) -> None:
    connections = Connections()
    async with Client(proxy.url, on_connect=connections, **FAST) as client:
        await client.subscribe({"type": "board", "id": 1})
        await connections.reach(1)
        proxy.blackhole()
        pending = asyncio.create_task(client.call("echo", {"lost": True}))
        await until(lambda: len(client._pending) == 1)
        proxy.refuse = True  # the first attempts to come back fail too
        proxy.cut()
        with pytest.raises(ConnectionLost) as excinfo:
            await asyncio.wait_for(pending, IO_TIMEOUT)
        assert excinfo.value.code == 1006
        await until(lambda: proxy.accepted >= 3)
        proxy.refuse = False
        await connections.reach(2)
        assert client.connected
        assert client.subscriptions == {"board-1": {"type": "board", "id": 1}}
        await add_task(demo, "after the cut")
        assert (await next_push(client)).object["title"] == "after the cut"


async def test_a_call_made_while_reconnecting_waits_for_the_new_connection(
    proxy: CuttableProxy,
) -> None:
    async with Client(proxy.url, **FAST) as client:
        await client.call("ping")
        proxy.cut()
        await until(lambda: not client.connected)
        assert await client.call("echo", {"patient": True}) == {"patient": True}


async def test_keepalive_replaces_a_connection_that_stops_answering(
    demo: DemoServer, proxy: CuttableProxy, caplog: pytest.LogCaptureFixture
) -> None:
    connections = Connections()
    client = Client(proxy.url, ping_interval=0.1, ping_timeout=0.3, on_connect=connections, **FAST)
    with caplog.at_level(logging.WARNING, logger="rohrpost.client"):
        async with client:
            await client.subscribe({"type": "board", "id": 1})
            await asyncio.sleep(0.3)  # pings and pongs flow: nothing happens
            assert connections.count == 1
            proxy.blackhole()
            await connections.reach(2)
            await add_task(demo, "after the blackhole")
            assert (await next_push(client)).object["title"] == "after the blackhole"
    assert "No pong from" in caplog.text


async def test_without_reconnect_a_lost_connection_stops_the_client(proxy: CuttableProxy) -> None:
    async with Client(proxy.url, reconnect=False) as client:
        await client.call("ping")
        proxy.cut()
        with pytest.raises(ConnectionLost, match="close code 1006"):
            await next_push(client)
        assert client.closed
        with pytest.raises(ConnectionLost):
            await client.call("ping")
    assert proxy.accepted == 1


async def test_a_refused_resubscribe_becomes_an_unsubscribed_push(
    demo: DemoServer, proxy: CuttableProxy, alice_token: str
) -> None:
    board = await private_board_id(demo, alice_token)
    connections = Connections()
    async with Client(proxy.url, token=alice_token, on_connect=connections, **FAST) as client:
        await client.subscribe({"type": "board", "id": 1})
        await client.subscribe({"type": "board", "id": board})
        client.token = None  # the next connection is anonymous: alice's board is out of reach
        proxy.cut()
        push = await next_push(client)
        await connections.reach(2)
        assert client.subscriptions == {"board-1": {"type": "board", "id": 1}}
    assert push.type == "unsubscribed"
    assert push.group == f"board-{board}"
    assert push.reason is not None
    assert "forbidden" in push.reason


# --- what only a scripted server does ---------------------------------------------------


@pytest.mark.parametrize("code", [4001, 4003])
async def test_final_close_codes_stop_the_client_without_reconnecting(code: int) -> None:
    connections = 0

    async def script(connection: ServerConnection, number: int) -> None:
        nonlocal connections
        connections = number
        await answer(connection, {"group": "g"})
        await connection.close(code, "go away")

    async with scripted_server(script) as url, Client(url, **FAST) as client:
        assert await client.subscribe({"type": "g"}) == "g"
        with pytest.raises(ClosedByServer) as excinfo:
            await next_push(client)
        with pytest.raises(ClosedByServer):
            await client.call("ping")
        await asyncio.sleep(0.3)  # several backoff steps: no second connection
    assert connections == 1
    assert excinfo.value.code == code
    assert excinfo.value.reason == "go away"
    assert str(code) in str(excinfo.value)


async def test_closed_right_after_the_handshake_with_4001_fails_the_first_call() -> None:
    async def script(connection: ServerConnection, number: int) -> None:
        await connection.close(4001, "")

    async with scripted_server(script) as url, Client(url, **FAST) as client:
        with pytest.raises(ClosedByServer, match="not authenticated"):
            await client.call("whoami")


async def test_unsubscribed_push_drops_the_group_from_the_resubscribe_set() -> None:
    second_connection: list[str] = []

    async def script(connection: ServerConnection, number: int) -> None:
        if number == 1:
            await answer(connection, {"group": "board-5"})
            push = {"group": "board-5", "reason": "removed from the board"}
            await connection.send(json.dumps({"id": 7, "type": "unsubscribed", "data": push}))
            await connection.close(1011)
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                second_connection.append(await asyncio.wait_for(connection.recv(), 0.3))

    connections = Connections()
    async with (
        scripted_server(script) as url,
        Client(url, ping_interval=None, on_connect=connections, **FAST) as client,
    ):
        await client.subscribe({"type": "board", "id": 5})
        push = await next_push(client)
        assert client.subscriptions == {}
        await connections.reach(2)
        await asyncio.sleep(0.4)
    assert (push.type, push.group, push.reason, push.id) == (
        "unsubscribed",
        "board-5",
        "removed from the board",
        7,
    )
    assert push.action is None
    assert push.object is None
    assert second_connection == []  # nothing was subscribed again


async def test_frames_that_answer_nothing_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    async def script(connection: ServerConnection, number: int) -> None:
        request = json.loads(await connection.recv())
        await connection.send(b"\x00binary")
        await connection.send("not json")
        await connection.send("[1, 2]")
        await connection.send(json.dumps({"id": "x", "data": 1}))
        await connection.send(json.dumps({"error": "slow down", "code": "rate_limited"}))
        await connection.send(json.dumps({"id": request["id"], "type": "pong"}))
        await connection.send(json.dumps({"id": 3, "type": "custom", "data": [1]}))
        await connection.wait_closed()

    async with scripted_server(script) as url, Client(url, ping_interval=None) as client:
        with caplog.at_level(logging.WARNING, logger="rohrpost.client"):
            await client.ping()
            push = await next_push(client)
    assert (push.type, push.data, push.group, push.action) == ("custom", [1], None, None)
    for text in ("binary frame", "not JSON", "not a JSON object", "without a type", "slow down"):
        assert text in caplog.text


async def test_a_subscribe_answer_without_a_group_name_is_a_value_error() -> None:
    async def script(connection: ServerConnection, number: int) -> None:
        await answer(connection, {"joined": True})
        await connection.wait_closed()

    async with scripted_server(script) as url, Client(url) as client:
        with pytest.raises(ValueError, match="no group name"):
            await client.subscribe({"type": "g"})
        assert client.subscriptions == {}


async def test_keepalive_takes_an_error_answer_as_a_sign_of_life() -> None:
    async def script(connection: ServerConnection, number: int) -> None:
        async for frame in connection:
            request = json.loads(frame)
            error = {"id": request["id"], "error": "No ping here.", "code": "unknown_type"}
            await connection.send(json.dumps(error))

    connections = Connections()
    async with (
        scripted_server(script) as url,
        Client(url, ping_interval=0.05, ping_timeout=0.2, on_connect=connections) as client,
    ):
        await asyncio.sleep(0.4)  # eight pings, each answered with an error
        assert client.connected
    assert connections.count == 1


async def test_on_connect_may_be_a_plain_function_and_its_errors_are_logged(
    demo: DemoServer, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bool] = []

    def on_connect(client: Client) -> None:
        seen.append(client.connected)
        raise RuntimeError("the callback broke")

    with caplog.at_level(logging.ERROR, logger="rohrpost.client"):
        async with Client(demo.ws_url, on_connect=on_connect) as client:
            await until(lambda: seen == [True])
            assert await client.call("add", [2, 2]) == 4
    assert "on_connect callback failed" in caplog.text


# --- call_once --------------------------------------------------------------------------


def test_call_once_returns_the_answers_data(demo: DemoServer, alice_token: str) -> None:
    assert call_once(demo.ws_url, "add", [1, 2, 3]) == 6
    whoami = call_once(demo.ws_url, "whoami", token=alice_token, timeout=5)
    assert whoami == {"authenticated": True, "username": "alice"}


def test_call_once_raises_call_error_for_an_error_answer(demo: DemoServer) -> None:
    with pytest.raises(RohrpostCallError) as excinfo:
        call_once(demo.ws_url, "task.add", {"board": 1, "title": " "})
    assert excinfo.value.code == "invalid"


def test_call_once_raises_an_os_error_when_nothing_listens() -> None:
    with pytest.raises(ConnectionRefusedError):
        call_once(f"ws://127.0.0.1:{closed_port()}/ws/rohrpost/", "ping")


def test_call_once_with_a_foreign_origin_raises_an_os_error(demo: DemoServer) -> None:
    with pytest.raises(OSError, match="HTTP 403"):
        call_once(demo.ws_url, "ping", origin="http://evil.example")


async def test_call_once_inside_an_event_loop_says_to_await_acall_once(demo: DemoServer) -> None:
    with pytest.raises(RuntimeError, match="acall_once"):
        call_once(demo.ws_url, "ping")
    assert await acall_once(demo.ws_url, "echo", {"a": 1}) == {"a": 1}
