"""Several server processes, one app, one Redis that idles, expires and restarts empty.

Two uvicorn processes serve :mod:`tests.e2e.app` over a ``redis-server`` of
the test's own (a free port, no persistence: a restart comes back empty),
configured the way channels_redis's README shows it, a plain URL, on both
Redis layers. A plain Python process publishes too. Real clients
(:mod:`websockets`) connect to both processes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.wire import assert_ping_works, call, send_json
from tests.services import RedisServer

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 20.0
#: channels_redis drops a membership this long after it was added unless renewed;
#: small here, so that the tests outlive it several times over.
GROUP_EXPIRY = 4
#: Pushes each group's history keeps (ROHRPOST["HISTORY"]["SIZE"] of the servers).
HISTORY_SIZE = 100
_ids = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def url(self, endpoint: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{endpoint}/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _env(redis_server: RedisServer, layer: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "PYTHONUNBUFFERED": "1",
        "E2E_REDIS_URL": redis_server.url,
        "E2E_REDIS_LAYER": layer,
    }
    if layer == "core":
        env["E2E_GROUP_EXPIRY"] = str(GROUP_EXPIRY)
    env["E2E_HISTORY_SIZE"] = str(HISTORY_SIZE)
    return env


def _start_server(env: dict[str, str], log_path: Path) -> Server:
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.e2e.app:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
    command += ["--log-level", "warning"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, port, log_path)
    deadline = time.monotonic() + START_SECONDS
    while True:
        assert process.poll() is None, f"uvicorn exited:\n{server.log()}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            assert time.monotonic() < deadline, f"uvicorn did not listen:\n{server.log()}"
            time.sleep(0.05)


@dataclass
class Cluster:
    layer: str
    redis: RedisServer
    servers: list[Server]
    env: dict[str, str]

    def publish(self, group: str, text: str, count: int = 1) -> None:
        """Publish from a plain Python process (no server, no event loop of its own).

        ``count`` pushes ``text``, ``text``-2, ... (the first keeps ``text`` as it is).
        """
        code = (
            "import django; django.setup()\n"
            "import sys\n"
            "from rohrpost.message import send_to_group\n"
            "for n in range(int(sys.argv[3])):\n"
            "    text = sys.argv[2] if n == 0 else f'{sys.argv[2]}-{n + 1}'\n"
            "    send_to_group(sys.argv[1], {'type': 'shout', 'data': {'text': text}})\n"
        )
        self._run(code, group, text, str(count))

    def _run(self, code: str, *args: str) -> None:
        """Run ``code`` in a plain Python process with the cluster's settings."""
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def record_only(self, group: str, text: str, count: int) -> None:
        """Record ``count`` pushes in ``group``'s history without sending them (from a script).

        What a publisher leaves behind when its ``group_send`` fails after the
        history append (Redis blipped, a channel at capacity): no connection
        gets them live, the history has them.
        """
        code = (
            "import django; django.setup()\n"
            "import asyncio, json, sys\n"
            "from rohrpost import history\n"
            "texts = [json.dumps({'id': n + 1, 'type': 'shout', 'data': {'text': sys.argv[2]"
            " if n == 0 else f'{sys.argv[2]}-{n + 1}'}}) for n in range(int(sys.argv[3]))]\n"
            "frames, position = asyncio.run(history.arecord(sys.argv[1], texts))\n"
            "assert position is not None, 'the group is not tracked'\n"
        )
        self._run(code, group, text, str(count))


@pytest.fixture(scope="module", params=["core", "pubsub"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    layer = str(request.param)
    directory = tmp_path_factory.mktemp(f"processes-{layer}")
    redis_server = RedisServer(directory)
    env = _env(redis_server, layer)
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            servers.append(_start_server(env, directory / f"server-{name}.log"))
        yield Cluster(layer, redis_server, servers, env)
    finally:
        for server in servers:
            server.process.terminate()
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.process.kill()
        redis_server.stop()


@pytest.fixture
async def clients(cluster: Cluster) -> AsyncIterator[list[ClientConnection]]:
    """``n`` clients per server, alternating async and sync endpoints (filled by ``open``)."""
    opened: list[ClientConnection] = []
    yield opened
    for connection in opened:
        await connection.close()


async def open_clients(cluster: Cluster, per_server: int, opened: list[ClientConnection]) -> None:
    for server in cluster.servers:
        for i in range(per_server):
            endpoint = ("async", "sync")[i % 2]
            opened.append(await connect(server.url(endpoint), open_timeout=10))


async def join(connection: ClientConnection, group: str) -> None:
    request_id = next(_ids)
    reply = await call(connection, {"id": request_id, "type": "ajoin", "data": {"group": group}})
    assert reply == {"id": request_id, "type": "ajoin", "data": {"group": group}}


async def shout(connection: ClientConnection, group: str, text: str) -> None:
    """Ask the server to push ``text`` to ``group``; its reply is skipped by :func:`pushes`."""
    data = {"group": group, "text": text}
    await send_json(connection, {"id": next(_ids), "type": "ashout", "data": data})


async def pushes(connection: ClientConnection, count: int, seconds: float = 10.0) -> list[str]:
    """The texts of the next ``count`` shout pushes (other frames are skipped)."""
    texts: list[str] = []
    deadline = time.monotonic() + seconds
    while len(texts) < count:
        frame = json.loads(await asyncio.wait_for(connection.recv(), deadline - time.monotonic()))
        if frame.get("type") == "shout":
            texts.append(frame["data"]["text"])
    return texts


def group_name(cluster: Cluster, topic: str) -> str:
    return f"{topic}-{cluster.layer}-{next(_ids)}"


# --- pushes across processes -----------------------------------------------------------------


async def test_pushes_caused_in_any_process_reach_clients_on_every_process(
    cluster: Cluster, clients: list[ClientConnection]
) -> None:
    await open_clients(cluster, 3, clients)
    group = group_name(cluster, "everywhere")
    for connection in clients:
        await join(connection, group)
    on_a, on_b = clients[0], clients[3]
    await shout(on_a, group, "from a")
    await shout(on_b, group, "from b")
    await asyncio.to_thread(cluster.publish, group, "from a script")
    for connection in clients:  # three sources: no order among them
        assert sorted(await pushes(connection, 3)) == ["from a", "from a script", "from b"]


async def test_connections_leave_no_membership_behind(
    cluster: Cluster, clients: list[ClientConnection]
) -> None:
    """1000 connect, subscribe, disconnect cycles over both processes."""
    topic = f"cycle-{cluster.layer}"

    async def cycle(i: int) -> None:
        server = cluster.servers[i % 2]
        async with connect(server.url(("async", "sync")[i // 2 % 2]), open_timeout=10) as c:
            await join(c, f"{topic}-{i % 10}")

    for start in range(0, 1000, 50):
        await asyncio.gather(*(cycle(i) for i in range(start, start + 50)))
    client = cluster.redis.client()
    try:
        deadline = time.monotonic() + 10
        while left := _memberships(client, cluster.layer, topic):
            assert time.monotonic() < deadline, f"memberships left in Redis: {left}"
            await asyncio.sleep(0.1)
    finally:
        client.close()
    # The servers still serve, across processes.
    await open_clients(cluster, 1, clients)
    group = group_name(cluster, "after-cycles")
    for connection in clients:
        await join(connection, group)
    await shout(clients[0], group, "still here")
    for connection in clients:
        assert await pushes(connection, 1) == ["still here"]


def _memberships(client: redis.Redis, layer: str, topic: str) -> list[Any]:
    """What Redis still holds for the groups ``topic-*``."""
    if layer == "core":
        return [key for key in client.keys(f"asgi:group:{topic}-*") if client.zcard(key)]
    return list(client.pubsub_channels(f"*{topic}-*"))


async def test_idle_connections_live_on_past_the_timeouts_and_the_group_expiry(
    cluster: Cluster, clients: list[ClientConnection]
) -> None:
    """Idle well past redis-py's 5 s socket timeout and channels_redis's group expiry.

    60 s on ``RedisChannelLayer`` (the layer whose every idle consumer crashed
    after 5 s); the Pub/Sub layer, which had no such fault, idles 12 s.
    """
    idle = 60 if cluster.layer == "core" else 12
    await open_clients(cluster, 2, clients)
    group = group_name(cluster, "idle")
    for connection in clients:
        await join(connection, group)
    await asyncio.sleep(idle)
    for connection in clients:
        await assert_ping_works(connection)
    await shout(clients[0], group, "after the idle time")
    await asyncio.to_thread(cluster.publish, group, "and from a script")
    for connection in clients:
        assert await pushes(connection, 2) == ["after the idle time", "and from a script"]


async def test_a_redis_restart_closes_no_socket_and_every_subscriber_gets_the_next_push(
    cluster: Cluster, clients: list[ClientConnection]
) -> None:
    """Redis stops for 3 s and comes back empty; a push 2 s later reaches everyone."""
    await open_clients(cluster, 10, clients)
    group = group_name(cluster, "restart")
    for connection in clients:
        await join(connection, group)
    cluster.redis.stop()
    await asyncio.sleep(1)
    # Publishing meanwhile fails in the background; the request that caused it is answered.
    await shout(clients[0], group, "lost in the outage")
    await asyncio.sleep(2)
    await asyncio.to_thread(cluster.redis.start)
    await asyncio.sleep(2)
    await shout(clients[0], group, "after the restart")
    for connection in clients:
        # The push sent during the outage may or may not have gone out: nothing else may.
        received = await pushes(connection, 1)
        if received == ["lost in the outage"]:
            received = await pushes(connection, 1)
        assert received == ["after the restart"]
        await assert_ping_works(connection)
    for server in cluster.servers:
        assert server.process.poll() is None
        log = server.log()
        assert log.count("The channel layer failed") <= 2, log
        assert "answers again" in log or "had lost" in log, log


# --- history: resume, reset, snapshot (issue 13) --------------------------------------------


async def follow(
    connection: ClientConnection, kind: str, name: str, since: Any = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Subscribe; return the reply's data and the pushes that came before it (the replay)."""
    request_id = next(_ids)
    request: dict[str, Any] = {
        "id": request_id,
        "type": "subscribe",
        "data": {"type": kind, "name": name},
    }
    if since is not None:
        request["since"] = since
    await send_json(connection, request)
    before: list[dict[str, Any]] = []
    while True:
        frame = json.loads(await asyncio.wait_for(connection.recv(), 10))
        if frame.get("id") == request_id and frame.get("type") == "subscribe":
            assert "data" in frame, frame
            return frame["data"], before
        before.append(frame)


async def shouts(connection: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` shout pushes, whole (with their positions)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        frame = json.loads(await asyncio.wait_for(connection.recv(), 10))
        if frame.get("type") == "shout":
            found.append(frame)
    return found


async def test_a_client_away_while_50_pushes_go_out_gets_exactly_those_on_another_process(
    cluster: Cluster,
) -> None:
    name = f"resume-{next(_ids)}"
    group = f"feed-{name}"
    async with connect(cluster.servers[0].url("async")) as first:
        reply, _ = await follow(first, "feed", name)
        await asyncio.to_thread(cluster.publish, group, "seen", 3)
        last = (await shouts(first, 3))[-1]["position"]
        assert last["offset"] == reply["position"]["offset"] + 3
    await asyncio.to_thread(cluster.publish, group, "missed", 50)
    since = {"epoch": last["epoch"], "offset": last["offset"]}
    async with connect(cluster.servers[1].url("sync")) as back:
        reply, replayed = await follow(back, "feed", name, since)
        assert reply["resumed"] == 50
        assert [p["data"]["text"] for p in replayed] == ["missed"] + [
            f"missed-{n}" for n in range(2, 51)
        ]
        offsets = [p["position"]["offset"] for p in replayed]
        assert offsets == list(range(last["offset"] + 1, last["offset"] + 51))
        assert reply["position"] == {"epoch": last["epoch"], "offset": offsets[-1]}
        await asyncio.to_thread(cluster.publish, group, "live")
        (live,) = await shouts(back, 1)
        assert live["data"]["text"] == "live"
        assert live["position"]["offset"] == offsets[-1] + 1


async def test_a_client_away_past_the_window_is_told_to_reset(cluster: Cluster) -> None:
    name = f"window-{next(_ids)}"
    async with connect(cluster.servers[0].url("async")) as first:
        reply, _ = await follow(first, "feed", name)
    await asyncio.to_thread(cluster.publish, f"feed-{name}", "flood", HISTORY_SIZE + 150)
    async with connect(cluster.servers[1].url("async")) as back:
        again, replayed = await follow(back, "feed", name, reply["position"])
        assert again["reset"] is True
        assert replayed == []
        assert again["position"]["offset"] == reply["position"]["offset"] + HISTORY_SIZE + 150


async def test_a_snapshot_taken_while_a_writer_saves_plus_the_pushes_after_it_is_the_state(
    cluster: Cluster,
) -> None:
    """A writer increments a counter and publishes each value; a client joins mid-stream."""
    name = f"count-{next(_ids)}"
    key = f"e2e:counter:{name}"
    code = (
        "import django; django.setup()\n"
        "import os, sys, time, redis\n"
        "from rohrpost.message import send_to_group\n"
        "client = redis.Redis.from_url(os.environ['E2E_REDIS_URL'])\n"
        "for _ in range(300):\n"
        "    value = client.incr(sys.argv[1])\n"  # the change, committed ...
        "    send_to_group(sys.argv[2], {'type': 'counter', 'data': {'value': value}})\n"
        "    time.sleep(0.002)\n"
    )
    async with connect(cluster.servers[0].url("async")) as watcher:
        await follow(watcher, "counter", name)  # the group has history from here on
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, key, f"counter-{name}", cwd=ROOT, env=cluster.env
        )
        try:
            # Mid-stream: once the watcher has had a few of the writer's pushes.
            for _ in range(10):
                frame = json.loads(await asyncio.wait_for(watcher.recv(), 10))
                assert frame["type"] == "counter"
            async with connect(cluster.servers[1].url("sync")) as client:
                reply, before = await follow(client, "counter", name)
                assert before == []
                state = reply["snapshot"]["value"]
                position = reply["position"]["offset"]
                assert state > 0
                assert await asyncio.wait_for(writer.wait(), 60) == 0
                final = int(cluster.redis.client().get(key) or 0)
                while state != final:
                    frame = json.loads(await asyncio.wait_for(client.recv(), 10))
                    assert frame["type"] == "counter"
                    assert frame["position"]["offset"] > position  # nothing older than it
                    position = frame["position"]["offset"]
                    state = frame["data"]["value"]  # full state: applied as it comes
                assert state == final == 300
        finally:
            if writer.returncode is None:
                writer.kill()
                await writer.wait()


async def test_after_redis_restarted_empty_a_resume_is_a_reset(cluster: Cluster) -> None:
    name = f"restart-{next(_ids)}"
    async with connect(cluster.servers[0].url("async")) as first:
        reply, _ = await follow(first, "feed", name)
        await asyncio.to_thread(cluster.publish, f"feed-{name}", "before", 5)
        await shouts(first, 5)
    cluster.redis.stop()
    await asyncio.to_thread(cluster.redis.start)
    await asyncio.sleep(2)  # the hubs notice and join their groups again
    since = {"epoch": reply["position"]["epoch"], "offset": reply["position"]["offset"] + 5}
    async with connect(cluster.servers[1].url("async")) as back:
        again, replayed = await follow(back, "feed", name, since)
        assert again["reset"] is True
        assert replayed == []
        assert again["position"]["epoch"] != since["epoch"]
        assert again["position"]["offset"] == 0


async def test_a_live_subscriber_sees_a_new_epoch_after_redis_restarted_empty(
    cluster: Cluster,
) -> None:
    """Its hub starts the group's history again: the next push tells the client to reset."""
    name = f"live-{next(_ids)}"
    async with connect(cluster.servers[1].url("async")) as client:
        reply, _ = await follow(client, "feed", name)
        cluster.redis.stop()
        await asyncio.to_thread(cluster.redis.start)
        await asyncio.sleep(2.5)  # the hubs notice, join again and restart the history
        await asyncio.to_thread(cluster.publish, f"feed-{name}", "after")
        (push,) = await shouts(client, 1)
        assert push["position"]["epoch"] != reply["position"]["epoch"]
        assert push["position"]["offset"] == 1


async def test_a_held_group_resubscribed_since_its_position_gets_what_the_layer_lost(
    cluster: Cluster,
) -> None:
    """Pushes recorded in the history but lost on their way come again, then live ones once."""
    name = f"lost-{next(_ids)}"
    group = f"feed-{name}"
    async with connect(cluster.servers[1].url("sync")) as client:
        await follow(client, "feed", name)
        await asyncio.to_thread(cluster.publish, group, "seen", 2)
        last = (await shouts(client, 2))[-1]["position"]
        await asyncio.to_thread(cluster.record_only, group, "lost", 3)
        await asyncio.to_thread(cluster.publish, group, "after")
        (after,) = await shouts(client, 1)
        assert after["position"]["offset"] == last["offset"] + 4  # the client sees the gap
        since = {"epoch": last["epoch"], "offset": last["offset"]}
        reply, replayed = await follow(client, "feed", name, since)
        assert [p["data"]["text"] for p in replayed] == ["lost", "lost-2", "lost-3", "after"]
        offsets = [p["position"]["offset"] for p in replayed]
        assert offsets == list(range(last["offset"] + 1, last["offset"] + 5))
        assert reply == {
            "group": group,
            "position": {"epoch": last["epoch"], "offset": offsets[-1]},
            "resumed": 4,
        }
        await asyncio.to_thread(cluster.publish, group, "live", 2)
        live = await shouts(client, 2)
        assert [p["data"]["text"] for p in live] == ["live", "live-2"]
        assert [p["position"]["offset"] for p in live] == [offsets[-1] + 1, offsets[-1] + 2]
        await assert_ping_works(client)  # and nothing came before the pong
