"""The demo's task board over a real server: its API, its permissions, and live pushes.

Changes made through rohrpost calls, in the Django admin and from a management
command reach every subscribed client; private boards stay private.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.demo_server import DemoServer, run_demo

pytestmark = pytest.mark.e2e

IO_TIMEOUT = 10.0
PUBLIC = {"type": "board", "id": 1}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with run_demo(tmp_path_factory.mktemp("board")) as server:
        yield server


class Peer:
    """A raw WebSocket client: requests by id, pushes kept apart."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.pushes: list[dict[str, Any]] = []
        self._next_id = 0

    async def call(self, request_type: str, data: Any = None, **fields: Any) -> dict[str, Any]:
        self._next_id += 1
        frame = {"id": self._next_id, "type": request_type, **fields}
        if data is not None:
            frame["data"] = data
        await asyncio.wait_for(self.connection.send(json.dumps(frame)), IO_TIMEOUT)
        while True:
            reply: dict[str, Any] = json.loads(
                await asyncio.wait_for(self.connection.recv(), IO_TIMEOUT)
            )
            if reply.get("id") == self._next_id and reply.get("type") != "subscription-update":
                return reply
            self.pushes.append(reply)

    async def push(self) -> dict[str, Any]:
        """The next ``subscription-update`` push's data."""
        if self.pushes:
            return self.pushes.pop(0)["data"]  # type: ignore[no-any-return]
        frame = json.loads(await asyncio.wait_for(self.connection.recv(), IO_TIMEOUT))
        assert frame["type"] == "subscription-update", frame
        return frame["data"]  # type: ignore[no-any-return]

    async def no_push(self, seconds: float = 0.3) -> None:
        assert not self.pushes
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.connection.recv(), seconds)


@asynccontextmanager
async def peer(server: DemoServer, cookie: str | None = None) -> AsyncIterator[Peer]:
    headers = {"Cookie": cookie} if cookie else None
    async with connect(
        server.ws_url,
        origin=server.base_url,  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=IO_TIMEOUT,
        close_timeout=IO_TIMEOUT,
    ) as connection:
        yield Peer(connection)


def data(reply: dict[str, Any]) -> Any:
    assert "error" not in reply, reply
    return reply.get("data")


# --- reading and permissions ----------------------------------------------------------


async def test_anonymous_clients_see_the_public_board_only(demo: DemoServer) -> None:
    async with peer(demo) as client:
        boards = data(await client.call("boards"))
        assert boards == [{"id": 1, "name": "Everyone's board", "private": False}]
        tasks = data(await client.call("tasks", {"board": 1}))
        assert len(tasks) >= 4
        assert all(set(task) == {"id", "board", "title", "done"} for task in tasks)


async def test_a_token_shows_the_users_private_board(demo: DemoServer) -> None:
    token = demo.token("alice")
    async with peer(demo) as client:
        boards = data(await client.call("boards", auth_jwt=token))
        assert [board["name"] for board in boards] == ["Everyone's board", "alice's board"]
        private = boards[1]["id"]
        reply = data(await client.call("subscribe", {"type": "board", "id": private}))
        assert reply["group"] == f"board-{private}"
        # Boards keep history: the reply has the board's tasks as of its position.
        assert [task["title"] for task in reply["snapshot"]["tasks"]] == [
            "Only alice sees this board"
        ]
        assert set(reply["position"]) == {"epoch", "offset"}


@pytest.mark.parametrize(
    ("group_object", "code"),
    [
        ({"type": "board", "id": 2}, "forbidden"),  # alice's
        ({"type": "board", "id": 999}, "forbidden"),  # no such board: not told apart
        ({"type": "board", "id": "1"}, "invalid"),
        ({"type": "board"}, "invalid"),
        ({"type": "nope", "id": 1}, "forbidden"),
    ],
)
async def test_subscriptions_are_refused_where_they_should_be(
    demo: DemoServer, group_object: dict[str, Any], code: str
) -> None:
    async with peer(demo) as client:
        assert (await client.call("subscribe", group_object))["code"] == code


async def test_bob_may_not_touch_alices_board(demo: DemoServer) -> None:
    alice, bob = demo.token("alice"), demo.token("bob")
    async with peer(demo) as client:
        boards = data(await client.call("boards", auth_jwt=alice))
        alices = boards[1]["id"]
        task = data(await client.call("task.add", {"board": alices, "title": "secret"}))
        await client.call("whoami", auth_jwt=bob)
        for request_type, payload, code in [
            ("tasks", {"board": alices}, "forbidden"),
            ("task.add", {"board": alices, "title": "x"}, "forbidden"),
            ("task.toggle", {"id": task["id"]}, "not_found"),
            ("task.rename", {"id": task["id"], "title": "mine"}, "not_found"),
            ("task.delete", {"id": task["id"]}, "not_found"),
            ("subscribe", {"type": "board", "id": alices}, "forbidden"),
        ]:
            assert (await client.call(request_type, payload))["code"] == code, request_type
        await client.call("whoami", auth_jwt=alice)
        assert task in data(await client.call("tasks", {"board": alices}))  # untouched


@pytest.mark.parametrize(
    ("request_type", "payload"),
    [
        ("task.toggle", {}),
        ("task.toggle", {"done": True}),
        ("task.rename", {"title": "mine"}),
        ("task.delete", {}),
    ],
)
async def test_a_hidden_task_is_answered_as_a_missing_one(
    demo: DemoServer, request_type: str, payload: dict[str, Any]
) -> None:
    """No reply tells whether a task on a board one may not see exists."""
    async with peer(demo) as alice:
        alices = data(await alice.call("boards", auth_jwt=demo.token("alice")))[1]["id"]
        hidden = data(await alice.call("task.add", {"board": alices, "title": "secret"}))
        missing = data(await alice.call("task.add", {"board": alices, "title": "gone"}))
        data(await alice.call("task.delete", {"id": missing["id"]}))
    replies = []
    for user in (None, "bob"):
        async with peer(demo) as other:
            token = {"auth_jwt": demo.token(user)} if user else {}
            for task in (hidden, missing):
                reply = await other.call(request_type, {"id": task["id"], **payload}, **token)
                replies.append({key: value for key, value in reply.items() if key != "id"})
    assert replies[0]["code"] == "not_found", replies[0]
    assert all(reply == replies[0] for reply in replies), replies


@pytest.mark.parametrize(
    ("request_type", "payload", "code"),
    [
        ("tasks", None, "invalid"),
        ("tasks", {"board": True}, "invalid"),
        ("task.add", {"board": 1, "title": "   "}, "invalid"),
        ("task.add", {"board": 1, "title": "x" * 201}, "invalid"),
        ("task.add", {"board": 1, "title": 5}, "invalid"),
        ("task.toggle", {"id": 1, "done": "yes"}, "invalid"),
        ("task.toggle", {"id": 10**9}, "not_found"),
        ("task.rename", {"id": 10**9, "title": "x"}, "not_found"),
        ("task.delete", {"id": 0}, "invalid"),
    ],
)
async def test_bad_requests_get_clear_errors(
    demo: DemoServer, request_type: str, payload: Any, code: str
) -> None:
    async with peer(demo) as client:
        reply = await client.call(request_type, payload)
    assert reply["code"] == code
    assert reply["error"]


# --- live changes ---------------------------------------------------------------------


async def test_every_edit_reaches_every_subscriber(demo: DemoServer) -> None:
    async with peer(demo) as editor, peer(demo) as watcher:
        assert data(await watcher.call("subscribe", PUBLIC))["group"] == "board-1"
        task = data(await editor.call("task.add", {"board": 1, "title": "  buy milk "}))
        assert task == {"id": task["id"], "board": 1, "title": "buy milk", "done": False}
        assert await watcher.push() == {"type": "create", "group": "board-1", "object": task}

        data(await editor.call("task.rename", {"id": task["id"], "title": "buy oat milk"}))
        change = await watcher.push()
        assert (change["type"], change["object"]["title"]) == ("update", "buy oat milk")

        data(await editor.call("task.toggle", {"id": task["id"]}))
        assert (await watcher.push())["object"]["done"] is True
        data(await editor.call("task.toggle", {"id": task["id"], "done": True}))
        assert (await watcher.push())["object"]["done"] is True

        assert data(await editor.call("task.delete", {"id": task["id"]})) == {"id": task["id"]}
        change = await watcher.push()
        assert (change["type"], change["object"]["id"]) == ("delete", task["id"])


async def test_unsubscribing_stops_the_pushes(demo: DemoServer) -> None:
    async with peer(demo) as editor, peer(demo) as watcher:
        data(await watcher.call("subscribe", PUBLIC))
        data(await watcher.call("unsubscribe", PUBLIC))
        data(await editor.call("task.add", {"board": 1, "title": "unseen"}))
        await watcher.no_push()


async def test_private_changes_do_not_reach_the_public_board(demo: DemoServer) -> None:
    token = demo.token("bob")
    async with peer(demo) as bob, peer(demo) as watcher:
        data(await watcher.call("subscribe", PUBLIC))
        bobs = data(await bob.call("boards", auth_jwt=token))[1]["id"]
        data(await bob.call("task.add", {"board": bobs, "title": "bob only"}))
        await watcher.no_push()


class Browser:
    """An HTTP client with cookies, for Django's login forms (CSRF included)."""

    def __init__(self, server: DemoServer) -> None:
        self.server = server
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> str:
        with self.opener.open(self.server.base_url + path, timeout=IO_TIMEOUT) as response:
            return str(response.read().decode())

    def post(self, path: str, fields: dict[str, str], form_page: str | None = None) -> str:
        """Post ``fields`` to ``path`` with the CSRF token of ``form_page`` (default: ``path``)."""
        page = self.get(form_page or path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page[:500]
        body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token[1]}).encode()
        request = urllib.request.Request(  # noqa: S310 - a local http URL
            self.server.base_url + path, data=body, headers={"Referer": self.server.base_url + path}
        )
        with self.opener.open(request, timeout=IO_TIMEOUT) as response:
            return str(response.read().decode())

    def cookie(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.jar)


async def test_an_admin_edit_shows_up_live(demo: DemoServer) -> None:
    browser = Browser(demo)
    await asyncio.to_thread(
        browser.post, "/admin/login/?next=/admin/", {"username": "alice", "password": "rohrpost"}
    )
    async with peer(demo) as watcher:
        data(await watcher.call("subscribe", PUBLIC))
        task = data(await watcher.call("task.add", {"board": 1, "title": "edit me in the admin"}))
        assert (await watcher.push())["type"] == "create"
        await asyncio.to_thread(
            browser.post,
            f"/admin/demo/task/{task['id']}/change/",
            {"board": "1", "title": "edited in the admin", "done": "on", "_save": "Save"},
        )
        change = await watcher.push()
    assert change["type"] == "update"
    assert change["object"] == {**task, "title": "edited in the admin", "done": True}


async def test_a_session_login_reaches_the_websocket_and_logout_closes_it(
    demo: DemoServer,
) -> None:
    browser = Browser(demo)
    await asyncio.to_thread(browser.post, "/login/", {"username": "bob", "password": "rohrpost"})
    assert "signed in as <strong>bob</strong>" in await asyncio.to_thread(browser.get, "/")
    async with peer(demo, cookie=browser.cookie()) as client:
        assert data(await client.call("whoami")) == {"authenticated": True, "username": "bob"}
        await asyncio.to_thread(browser.post, "/logout/", {}, "/")  # the page's logout form
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(client.connection.recv(), IO_TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4003


def test_the_command_writes_directly_when_asked(demo: DemoServer) -> None:
    added = demo.manage("board", "add", "from the shell", "--direct")
    assert added.returncode == 0, added.stderr
    match = re.match(r"\[ \] (\d+): from the shell \(board 1\)", added.stdout)
    assert match, added.stdout
    listed = demo.manage("board", "list")
    assert f"[ ] {match[1]}: from the shell" in listed.stdout
    toggled = demo.manage("board", "toggle", match[1], "--direct")
    assert toggled.stdout.startswith(f"[x] {match[1]}:")
    deleted = demo.manage("board", "delete", match[1], "--direct")
    assert deleted.stdout.strip() == f"Deleted task {match[1]}."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add"], "add takes one TITLE"),
        (["toggle", "abc", "--direct"], "'abc' is not a task id"),
        (["rename", "1"], "rename takes TASK_ID TITLE"),
        (["delete", "999999", "--direct"], "No task 999999"),
        (["list", "--board", "999"], "No board 999"),
        (["add", "x", "--board", "999", "--direct"], "No board 999"),
    ],
)
def test_the_command_explains_bad_input(demo: DemoServer, args: list[str], message: str) -> None:
    result = demo.manage("board", *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_command_says_when_the_server_is_not_running(demo: DemoServer) -> None:
    result = demo.manage("board", "add", "x", "--url", "ws://127.0.0.1:9/ws/rohrpost/")
    assert result.returncode != 0
    assert "Could not reach the demo server" in result.stderr


def test_a_token_for_nobody_is_refused(demo: DemoServer) -> None:
    result = demo.manage("demo_token", "mallory")
    assert result.returncode != 0
    assert "No user called 'mallory'" in result.stderr


def test_the_demo_data_has_no_pending_migrations(demo: DemoServer, tmp_path: Path) -> None:
    result = demo.manage("makemigrations", "--check", "--dry-run", "demo")
    assert result.returncode == 0, result.stdout + result.stderr


def test_with_redis_a_command_in_another_process_pushes_live(
    tmp_path: Path, redis_url: str
) -> None:
    """REDIS_URL switches the demo to channels_redis: idle sockets live, another process's
    ORM write is pushed.
    """

    async def watch_and_edit(server: DemoServer) -> dict[str, Any]:
        async with peer(server) as watcher:
            data(await watcher.call("subscribe", PUBLIC))
            # Quiet for longer than redis-py 8's default 5 s read timeout: the
            # socket stays open (the demo's layer sets socket_timeout).
            await asyncio.sleep(6)
            assert (await watcher.call("ping"))["type"] == "pong"
            # No --direct needed: with Redis the command writes through the ORM itself.
            added = await asyncio.to_thread(server.manage, "board", "add", "over Redis")
            assert added.returncode == 0, added.stderr
            return await watcher.push()

    with run_demo(tmp_path, redis_url=redis_url) as server:
        change = asyncio.run(watch_and_edit(server))
    assert change["type"] == "create"
    assert change["object"]["title"] == "over Redis"
