"""The configurations of docs/deployment.md work as the guide says.

The nginx configuration is taken from the guide as written (only its ports and
certificate paths are replaced), checked with ``nginx -t`` and run in front of
the demo server with a self-signed certificate: a WebSocket round trip over
TLS, the page over HTTPS, the frame limit and the client address are tested
through it. The ``CHANNEL_LAYERS`` examples are taken from the guide too and
run against a ``redis-server`` and a Redis sentinel these tests start on
free ports (never the shared Redis).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from channels.layers import BaseChannelLayer
from django.utils.module_loading import import_string
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from tests.demo_server import (
    EXAMPLE_DIR,
    MAX_FRAME_BYTES,
    UVICORN_WS_OPTIONS,
    DemoServer,
    run_demo,
)
from tests.services import services_required

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
IO_TIMEOUT = 10.0
START_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args!r} exited early:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{process.args!r} did not listen within {START_TIMEOUT} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=IO_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=IO_TIMEOUT)


def _replace_once(text: str, old: str, new: str) -> str:
    """Replace ``old``, which must occur exactly once: the guide must not drift unseen."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the guide's block"
    return text.replace(old, new)


# The servers' commands ---------------------------------------------------------


def _guide_command(program: str) -> list[str]:
    """The guide's ``$ <program> ...`` console command, its continued lines joined."""
    match = re.search(rf"```console\n\$ ({program} .*?)\n```", GUIDE.read_text(), re.DOTALL)
    assert match, f"docs/deployment.md shows no {program} command"
    return match[1].replace("\\\n", " ").split()


def _full_size_echo() -> str:
    frame = json.dumps({"id": 1, "type": "echo", "data": ""})
    frame = frame.replace('""', json.dumps("x" * (MAX_FRAME_BYTES - len(frame))))
    assert len(frame.encode()) == MAX_FRAME_BYTES
    return frame


def test_the_guides_uvicorn_command_has_the_demos_websocket_options() -> None:
    command = " ".join(_guide_command("uvicorn"))
    assert " ".join(UVICORN_WS_OPTIONS) in command


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with run_demo(tmp_path_factory.mktemp("deployment")) as server:
        yield server


@pytest.fixture
def daphne_port(demo: DemoServer, tmp_path: Path) -> Iterator[int]:
    """daphne started with the guide's command, serving the demo; yields its port."""
    port = _free_port()
    command = _guide_command("daphne")
    command[command.index("-p") + 1] = str(port)
    command[command.index("myproject.asgi:application")] = "demo.asgi:application"
    daphne = shutil.which("daphne", path=str(Path(sys.executable).parent))
    assert daphne is not None
    log = tmp_path / "daphne.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [daphne, *command[1:]],
            cwd=EXAMPLE_DIR,
            env=demo.manage_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_listening(port, process, log)
        yield port
    finally:
        _stop(process)


async def test_daphne_as_the_guide_runs_it_answers_a_full_size_message_and_drops_more(
    daphne_port: int,
) -> None:
    """Over the limit daphne drops the connection without a close frame (1006), as documented."""
    url, origin = f"ws://127.0.0.1:{daphne_port}/ws/rohrpost/", f"http://127.0.0.1:{daphne_port}"
    frame = _full_size_echo()
    async with connect(url, origin=origin, compression=None) as connection:  # type: ignore[arg-type]
        await connection.send(frame)
        assert json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT)) == json.loads(
            frame
        )

    async def send_and_receive() -> None:
        async with connect(url, origin=origin, compression=None) as connection:  # type: ignore[arg-type]
            await connection.send(frame + " ")
            await connection.recv()

    with pytest.raises(ConnectionClosedError) as excinfo:
        await asyncio.wait_for(send_and_receive(), IO_TIMEOUT)
    assert excinfo.value.rcvd is None


# nginx -------------------------------------------------------------------------


def _guide_nginx_config() -> str:
    block = GUIDE.read_text().split("<!-- nginx-config:start")[1].split("<!-- nginx-config:end")[0]
    match = re.search(r"```nginx\n(.*?)```", block, flags=re.DOTALL)
    assert match, "docs/deployment.md has no nginx block between its markers"
    return match[1]


@dataclass(frozen=True)
class Proxy:
    """nginx, configured as the guide says, in front of a demo server."""

    demo: DemoServer
    port: int
    check_output: str

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws/rohrpost/"

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    certificate, key = directory / "proxy.crt", directory / "proxy.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return certificate, key


def _nginx_config(directory: Path, upstream_port: int, port: int) -> str:
    """The guide's configuration, on free ports, inside a minimal main configuration."""
    certificate, key = _self_signed_certificate(directory)
    config = _guide_nginx_config()
    config = _replace_once(
        config,
        "    server 127.0.0.1:8000;\n    server 127.0.0.1:8001;\n",
        f"    server 127.0.0.1:{upstream_port};\n",
    )
    config = _replace_once(config, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    config = _replace_once(config, "/etc/ssl/example.com.crt", str(certificate))
    config = _replace_once(config, "/etc/ssl/example.com.key", str(key))
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\npid {directory / 'nginx.pid'};\nerror_log {directory / 'error.log'};\n"
        f"events {{}}\nhttp {{\n    access_log {directory / 'access.log'};\n{temp_paths}\n"
        f"{config}}}\n"
    )


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin")
    if nginx is None:
        reason = "nginx is not installed (apt-get install nginx-light)"
        if services_required():
            pytest.fail(f"{reason}, and ROHRPOST_REQUIRE_SERVICES is set", pytrace=False)
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("nginx")
    with run_demo(directory) as demo:
        port = _free_port()
        config_path = directory / "nginx.conf"
        config_path.write_text(_nginx_config(directory, demo.port, port))
        command = [nginx, "-p", str(directory), "-c", str(config_path)]
        check = subprocess.run(
            [*command, "-t"], capture_output=True, text=True, timeout=30, check=False
        )
        assert check.returncode == 0, check.stderr
        log = directory / "nginx.out"
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_until_listening(port, process, log)
            yield Proxy(demo, port, check.stderr)
        finally:
            _stop(process)


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


def _connect(proxy: Proxy, **options: Any) -> connect:
    return connect(
        proxy.ws_url,
        ssl=_client_tls(),
        origin=proxy.origin,  # type: ignore[arg-type]
        open_timeout=IO_TIMEOUT,
        close_timeout=IO_TIMEOUT,
        compression=None,
        **options,
    )


def test_nginx_accepts_the_guides_configuration(proxy: Proxy) -> None:
    assert "test is successful" in proxy.check_output


async def test_a_websocket_round_trip_through_nginx_over_tls(proxy: Proxy) -> None:
    async with _connect(proxy) as connection:
        await connection.send(json.dumps({"id": 1, "type": "echo", "data": {"via": "nginx"}}))
        reply = json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))
    assert reply == {"id": 1, "type": "echo", "data": {"via": "nginx"}}


def test_the_page_is_served_through_nginx(proxy: Proxy) -> None:
    with urllib.request.urlopen(  # noqa: S310 - the proxy's local https URL
        proxy.origin + "/", timeout=IO_TIMEOUT, context=_client_tls()
    ) as response:
        assert response.status == 200
        assert 'data-ws-path="/ws/rohrpost/"' in response.read().decode()


async def test_nginx_passes_a_full_size_message_and_uvicorn_refuses_one_more_byte(
    proxy: Proxy,
) -> None:
    """nginx has no frame limit of its own: the refusal is uvicorn's.

    uvicorn closes with 1009 while nginx is still forwarding the rest of the
    message; nginx then fails to write upstream and drops the client's side,
    usually before the close frame reaches it, so the client sees 1009 or an
    abnormal close (no close frame), as docs/deployment.md says.
    """
    frame = _full_size_echo()
    async with _connect(proxy) as connection:
        await connection.send(frame)
        assert json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT)) == json.loads(
            frame
        )

    async def send_and_receive() -> None:
        async with _connect(proxy) as connection:
            await connection.send(frame + " ")
            await connection.recv()

    with pytest.raises(ConnectionClosedError) as excinfo:
        await asyncio.wait_for(send_and_receive(), IO_TIMEOUT)
    received = excinfo.value.rcvd
    assert received is None or received.code == 1009


async def test_a_client_cannot_choose_the_address_the_server_sees(proxy: Proxy) -> None:
    """nginx replaces the client's X-Forwarded-For with the address it saw.

    uvicorn reads the header from the trusted proxy and logs the address it
    took (port 0: from the header). Had nginx appended to the client's header,
    uvicorn would have taken the forged address.
    """
    forged = "203.0.113.9"
    async with _connect(proxy, additional_headers={"X-Forwarded-For": forged}) as connection:
        await connection.send(json.dumps({"id": 1, "type": "ping"}))
        await asyncio.wait_for(connection.recv(), IO_TIMEOUT)
    log = proxy.demo.log()
    assert '127.0.0.1:0 - "WebSocket /ws/rohrpost/" [accepted]' in log
    assert forged not in log


# The Redis channel layer -------------------------------------------------------


@dataclass(frozen=True)
class RedisServers:
    """A Redis server and a sentinel watching it as the master ``rohrpost``."""

    port: int
    sentinel_port: int


def _start(command: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    _wait_until_listening(port, process, log)
    return process


@pytest.fixture(scope="module")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServers]:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        reason = "redis-server is not installed"
        if services_required():
            pytest.fail(f"{reason}, and ROHRPOST_REQUIRE_SERVICES is set", pytrace=False)
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("redis")
    port, sentinel_port = _free_port(), _free_port()
    server = _start(
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(directory),
        ],
        port,
        directory / "redis.log",
    )
    sentinel_config = directory / "sentinel.conf"
    sentinel_config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor rohrpost 127.0.0.1 {port} 1\n"
    )
    try:
        sentinel = _start(
            [redis_server, str(sentinel_config), "--sentinel"],
            sentinel_port,
            directory / "sentinel.log",
        )
        try:
            yield RedisServers(port, sentinel_port)
        finally:
            _stop(sentinel)
    finally:
        _stop(server)


def _guide_channel_layers(servers: RedisServers) -> list[dict[str, Any]]:
    """Every ``CHANNEL_LAYERS`` example of the guide, pointed at the test's servers."""
    addresses = {
        "redis.internal:6379/0": f"127.0.0.1:{servers.port}/0",
        "redis-1.internal:6379/0": f"127.0.0.1:{servers.port}/1",
        "redis-2.internal:6379/0": f"127.0.0.1:{servers.port}/2",
        '("sentinel-1.internal", 26379)': f'("127.0.0.1", {servers.sentinel_port})',
        '("sentinel-2.internal", 26379)': f'("127.0.0.1", {servers.sentinel_port})',
    }
    blocks = re.findall(r"```python\n(CHANNEL_LAYERS = .*?)```", GUIDE.read_text(), re.DOTALL)
    assert len(blocks) == 3, "the guide shows one host, several hosts and Sentinel"
    settings = []
    for block in blocks:
        for placeholder, address in addresses.items():
            block = block.replace(placeholder, address)
        assert ".internal" not in block, block
        namespace: dict[str, Any] = {}
        exec(block, namespace)  # noqa: S102 - the guide's own example, on the test's servers
        settings.append(namespace["CHANNEL_LAYERS"]["default"])
    return settings


def _layer(setting: dict[str, Any]) -> BaseChannelLayer:
    backend: type[BaseChannelLayer] = import_string(setting["BACKEND"])
    return backend(**setting["CONFIG"])


async def _close(layer: Any) -> None:
    """Close a layer's Redis connections.

    ``flush()`` closes the connection pools, but not a Sentinel pool's
    connections to the sentinels themselves: close those first.
    """
    for loop_layer in getattr(layer, "_layers", {}).values():
        for client in getattr(loop_layer, "_connections", {}).values():
            manager = getattr(client.connection_pool, "sentinel_manager", None)
            for sentinel in getattr(manager, "sentinels", ()):
                await sentinel.aclose()
    await layer.flush()


async def _idles_then_delivers(layer: BaseChannelLayer, idle: float) -> str | BaseException:
    """Wait in receive for ``idle`` seconds, then deliver a group message; say what happened.

    The receive is never cancelled: cancelling one makes the Pub/Sub layer drop
    the channel, as a consumer's end would.
    """
    channel = await layer.new_channel()
    await layer.group_add("deployment", channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(idle)
    if receiving.done():
        return receiving.exception() or "receive ended while idle"
    await layer.group_send("deployment", {"type": "deployment.check", "n": 1})
    message = await asyncio.wait_for(receiving, IO_TIMEOUT)
    await layer.group_discard("deployment", channel)
    return "delivered" if message == {"type": "deployment.check", "n": 1} else repr(message)


async def test_the_guides_channel_layers_idle_past_5_s_and_deliver(
    redis_servers: RedisServers,
) -> None:
    """One host, several hosts and Sentinel, each with ``socket_timeout`` above 5 s."""
    layers = [_layer(setting) for setting in _guide_channel_layers(redis_servers)]
    try:
        results = await asyncio.gather(*(_idles_then_delivers(layer, 6.5) for layer in layers))
    finally:
        for layer in layers:
            await _close(layer)
    assert results == ["delivered"] * 3


async def test_a_plain_url_fails_an_idle_receive_after_5_s(redis_servers: RedisServers) -> None:
    """What the guide warns of: redis-py 8's 5 s socket timeout against a 5 s blocking receive."""
    url = f"redis://127.0.0.1:{redis_servers.port}/3"
    plain = _layer({"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}})
    pubsub = _layer(
        {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [url]}}
    )
    try:
        core_result, pubsub_result = await asyncio.gather(
            _idles_then_delivers(plain, 6.5), _idles_then_delivers(pubsub, 6.5)
        )
    finally:
        await _close(plain)
        await _close(pubsub)
    assert isinstance(core_result, redis.exceptions.TimeoutError), core_result
    assert pubsub_result == "delivered"
