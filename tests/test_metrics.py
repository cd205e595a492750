"""Tests for rohrpost.metrics: what each metric counts, the view, and the cost when off.

The end-to-end tests start ``uvicorn tests.metrics_app:application`` (one
process, or two workers in prometheus_client's multiprocess mode), talk to it
with a real WebSocket client and scrape its metrics view over HTTP. The others
run in the test process, with the metrics turned on for the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer, metrics
from rohrpost.auth import Authenticator
from rohrpost.dispatch import Call, prepare_call
from rohrpost.exceptions import Forbidden, RohrpostError
from rohrpost.main import handle_rohrpost_message
from rohrpost.registry import HandlerRegistry
from tests.communicators import connect as communicator_connect
from tests.test_docs_snippets import load, python_blocks

ROOT = Path(__file__).resolve().parent.parent
IO_TIMEOUT = 10.0
START_TIMEOUT = 30.0


def value(name: str, **labels: str) -> float:
    """A sample of this process's default registry (0 when it has none yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def metrics_on(settings: Any) -> Iterator[None]:
    settings.ROHRPOST = {"METRICS": True}
    assert metrics.configure() is True
    yield
    settings.ROHRPOST = {"METRICS": False}
    metrics.configure()


def sync_echo(consumer: Any, request: dict[str, Any]) -> Any:
    return request.get("data")


async def async_echo(consumer: Any, request: dict[str, Any]) -> Any:
    return request.get("data")


def quiet(consumer: Any, request: dict[str, Any]) -> None:
    return None


def deny(consumer: Any, request: dict[str, Any]) -> None:
    raise Forbidden("No.")


def fail(consumer: Any, request: dict[str, Any]) -> None:
    raise RuntimeError("planned")


def unencodable(consumer: Any, request: dict[str, Any]) -> Any:
    return object()


@pytest.fixture
def handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    for name, handler in [
        ("t.echo", sync_echo),
        ("t.aecho", async_echo),
        ("t.quiet", quiet),
        ("t.deny", deny),
        ("t.fail", fail),
        ("t.bad", unencodable),
    ]:
        registry.register(name, handler)
    return registry


def frame(request_type: str, request_id: int = 1) -> str:
    return json.dumps({"id": request_id, "type": request_type, "data": "x"})


# --- off -------------------------------------------------------------------------------------


def test_metrics_are_off_by_default_and_a_frame_gets_a_plain_call(
    handlers: HandlerRegistry,
) -> None:
    assert metrics.configure() is False
    assert metrics.enabled is False
    call = prepare_call(handlers, frame("t.echo"))
    assert type(call) is Call


def test_off_a_server_process_never_imports_prometheus_client() -> None:
    """Frames, replies, errors and every record call: nothing loaded, nothing registered."""
    script = """
import sys, django
django.setup()
from rohrpost import metrics
from rohrpost.dispatch import Call, prepare_call
from rohrpost.registry import HANDLERS
import rohrpost.handlers
call = prepare_call(HANDLERS, '{"id": 1, "type": "ping"}')
assert type(call) is Call and call.run(None) is not None
prepare_call(HANDLERS, '{"id": 1, "type": "nope"}')
prepare_call(HANDLERS, 'not json')
metrics.pushes_delivered(1); metrics.push_dropped("closed"); metrics.slow_client_closed()
metrics.layer_error("receive"); metrics.hub_reconnected(); metrics.connection_opened()
print(metrics.enabled, metrics._instruments, "prometheus_client" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "None", "False"]


def test_off_the_record_calls_change_nothing(metrics_on: None, settings: Any) -> None:
    before = value("rohrpost_pushes_delivered_total")
    settings.ROHRPOST = {"METRICS": False}
    metrics.configure()
    opened = value("rohrpost_open_connections")
    metrics.pushes_delivered(5)
    metrics.connection_opened()
    metrics.connection_closed()
    metrics.connection_closed()
    assert metrics.received("t.echo") is None
    metrics.rejected(metrics.UNKNOWN_TYPE, "unknown_type")
    metrics.replied("t.echo", metrics.OK)
    metrics.push_dropped("closed")
    metrics.slow_client_closed()
    metrics.layer_error("receive")
    metrics.hub_reconnected()
    assert value("rohrpost_pushes_delivered_total") == before
    assert value("rohrpost_open_connections") == opened


def test_the_first_record_call_reads_the_setting(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "_decided", False)
    monkeypatch.setattr(metrics, "enabled", True)
    settings.ROHRPOST = {"METRICS": False}
    metrics.slow_client_closed()
    assert metrics.enabled is False
    assert metrics._decided is True


def test_the_first_record_call_turns_metrics_on_when_asked(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics.configure()  # the instruments exist (they are made once per process)
    before = value("rohrpost_slow_clients_closed_total")
    monkeypatch.setattr(metrics, "_decided", False)
    monkeypatch.setattr(metrics, "enabled", True)
    settings.ROHRPOST = {"METRICS": True}
    metrics.slow_client_closed()
    assert value("rohrpost_slow_clients_closed_total") == before + 1
    settings.ROHRPOST = {"METRICS": False}
    metrics.configure()


# --- the functions the hub and the outbox call --------------------------------------------


def test_delivery_functions_count_what_they_say(metrics_on: None) -> None:
    names = [
        ("rohrpost_pushes_delivered_total", {}),
        ("rohrpost_pushes_dropped_total", {"reason": "queue_full"}),
        ("rohrpost_pushes_dropped_total", {"reason": "closed"}),
        ("rohrpost_slow_clients_closed_total", {}),
        ("rohrpost_channel_layer_errors_total", {"where": "receive"}),
        ("rohrpost_hub_reconnects_total", {}),
    ]
    before = [value(name, **labels) for name, labels in names]

    metrics.pushes_delivered(7)
    metrics.pushes_delivered(3)
    metrics.push_dropped("queue_full")
    metrics.push_dropped("queue_full")
    metrics.push_dropped("closed")
    metrics.slow_client_closed()
    metrics.layer_error("receive")
    metrics.hub_reconnected()

    after = [value(name, **labels) for name, labels in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [10, 2, 1, 1, 1, 1]


# --- frames, replies and handler durations ---------------------------------------------------


def test_on_a_handled_request_is_counted_timed_and_its_reply_counted(
    metrics_on: None, handlers: HandlerRegistry
) -> None:
    received = value("rohrpost_frames_received_total", type="t.echo")
    replied = value("rohrpost_replies_sent_total", type="t.echo", code="ok")
    timed = value("rohrpost_handler_duration_seconds_count", type="t.echo")

    for _ in range(2):
        call = prepare_call(handlers, frame("t.echo"))
        assert isinstance(call, Call)
        assert type(call) is not Call
        assert call.run(None) == '{"id":1,"type":"t.echo","data":"x"}'

    assert value("rohrpost_frames_received_total", type="t.echo") == received + 2
    assert value("rohrpost_replies_sent_total", type="t.echo", code="ok") == replied + 2
    assert value("rohrpost_handler_duration_seconds_count", type="t.echo") == timed + 2


async def test_on_an_awaited_handler_is_timed_and_its_reply_counted(
    metrics_on: None, handlers: HandlerRegistry
) -> None:
    replied = value("rohrpost_replies_sent_total", type="t.aecho", code="ok")
    timed = value("rohrpost_handler_duration_seconds_count", type="t.aecho")
    slow = value("rohrpost_handler_duration_seconds_bucket", type="t.aecho", le="0.01")

    async def sleepy(consumer: Any, request: dict[str, Any]) -> str:
        await asyncio.sleep(0.03)
        return "late"

    call = prepare_call(handlers, frame("t.aecho"))
    assert isinstance(call, Call)
    await call.arun(None, sleepy)

    assert value("rohrpost_replies_sent_total", type="t.aecho", code="ok") == replied + 1
    assert value("rohrpost_handler_duration_seconds_count", type="t.aecho") == timed + 1
    # 30 ms is over the 10 ms bucket's bound: the histogram holds the real duration.
    assert value("rohrpost_handler_duration_seconds_bucket", type="t.aecho", le="0.01") == slow


@pytest.mark.parametrize(
    ("request_type", "code"),
    [("t.deny", "forbidden"), ("t.fail", "handler_error"), ("t.bad", "handler_error")],
)
def test_on_a_failed_handler_counts_its_error_code(
    metrics_on: None, handlers: HandlerRegistry, request_type: str, code: str
) -> None:
    replied = value("rohrpost_replies_sent_total", type=request_type, code=code)
    succeeded = value("rohrpost_replies_sent_total", type=request_type, code="ok")

    call = prepare_call(handlers, frame(request_type))
    assert isinstance(call, Call)
    assert f'"code":"{code}"' in (call.run(None) or "")

    assert value("rohrpost_replies_sent_total", type=request_type, code=code) == replied + 1
    assert value("rohrpost_replies_sent_total", type=request_type, code="ok") == succeeded


def test_on_a_handler_without_reply_is_timed_but_no_reply_is_counted(
    metrics_on: None, handlers: HandlerRegistry
) -> None:
    timed = value("rohrpost_handler_duration_seconds_count", type="t.quiet")
    call = prepare_call(handlers, frame("t.quiet"))
    assert isinstance(call, Call)
    assert call.run(None) is None
    assert value("rohrpost_handler_duration_seconds_count", type="t.quiet") == timed + 1
    assert value("rohrpost_replies_sent_total", type="t.quiet", code="ok") == 0


@pytest.mark.parametrize(
    ("text", "label", "code"),
    [
        ("not json", metrics.INVALID_FRAME, "invalid_json"),
        ('{"type": "t.echo"}', metrics.INVALID_FRAME, "missing_id"),
        (frame("no.such.type"), metrics.UNKNOWN_TYPE, "unknown_type"),
        (frame("another.unknown"), metrics.UNKNOWN_TYPE, "unknown_type"),
    ],
)
def test_on_refused_frames_share_one_label_per_kind(
    metrics_on: None, handlers: HandlerRegistry, text: str, label: str, code: str
) -> None:
    received = value("rohrpost_frames_received_total", type=label)
    replied = value("rohrpost_replies_sent_total", type=label, code=code)
    assert isinstance(prepare_call(handlers, text), str)
    assert value("rohrpost_frames_received_total", type=label) == received + 1
    assert value("rohrpost_replies_sent_total", type=label, code=code) == replied + 1
    assert value("rohrpost_frames_received_total", type="no.such.type") == 0


def test_on_bytes_that_are_not_utf8_count_as_an_invalid_frame(metrics_on: None) -> None:
    sent: list[str] = []

    class Consumer:
        def send(self, text: str) -> None:
            sent.append(text)

    replied = value("rohrpost_replies_sent_total", type=metrics.INVALID_FRAME, code="invalid_json")
    handle_rohrpost_message(Consumer(), b"\xff\xfe")
    assert '"code":"invalid_json"' in sent[0]
    assert (
        value("rohrpost_replies_sent_total", type=metrics.INVALID_FRAME, code="invalid_json")
        == replied + 1
    )


async def test_on_authentication_refusals_are_counted_as_replies(metrics_on: None) -> None:
    async def hook(token: str, scope: Any) -> None:
        raise RohrpostError("Expired.", code="token_expired")

    anonymous = {"user": None}
    request: dict[str, Any] = {"id": 1, "type": "t.echo"}
    refused = value("rohrpost_replies_sent_total", type="t.echo", code="unauthenticated")
    expired = value("rohrpost_replies_sent_total", type="t.echo", code="token_expired")

    _, refusal = await Authenticator(None, require=True).acheck(request, anonymous)
    assert refusal is not None
    _, refusal = await Authenticator(hook, require=False).acheck(
        {**request, "auth_jwt": "t"}, anonymous
    )
    assert refusal is not None
    assert "token_expired" in refusal

    assert value("rohrpost_replies_sent_total", type="t.echo", code="unauthenticated") == (
        refused + 1
    )
    assert value("rohrpost_replies_sent_total", type="t.echo", code="token_expired") == (
        expired + 1
    )


# --- open connections ----------------------------------------------------------------------


# Channels checks the database connections around a sync consumer's events.
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layers")
@pytest.mark.parametrize("consumer_class", [SyncRohrpostConsumer, AsyncRohrpostConsumer])
async def test_on_a_connection_is_open_from_its_accept_to_its_end(
    metrics_on: None, consumer_class: type[Any]
) -> None:
    before = value("rohrpost_open_connections")
    async with communicator_connect(consumer_class):
        assert value("rohrpost_open_connections") == before + 1
    assert value("rohrpost_open_connections") == before


class CrashingConsumer(AsyncRohrpostConsumer):
    async def connect(self) -> None:
        await self.accept()
        raise RuntimeError("crashed after the accept")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layers")
async def test_on_a_consumer_that_crashes_is_no_longer_counted(metrics_on: None) -> None:
    from channels.testing import WebsocketCommunicator

    before = value("rohrpost_open_connections")
    communicator = WebsocketCommunicator(CrashingConsumer.as_asgi(), "/ws/")
    connected, _ = await communicator.connect(timeout=1)
    assert connected
    with pytest.raises(RuntimeError, match="crashed after the accept"):
        await communicator.wait(timeout=1)
    assert value("rohrpost_open_connections") == before


class RefusingConsumer(AsyncRohrpostConsumer):
    async def connect(self) -> None:
        await self.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_channel_layers")
async def test_on_a_refused_handshake_is_never_counted(metrics_on: None) -> None:
    from channels.testing import WebsocketCommunicator

    opened = value("rohrpost_open_connections")
    communicator = WebsocketCommunicator(RefusingConsumer.as_asgi(), "/ws/")
    connected, _ = await communicator.connect(timeout=1)
    assert not connected
    assert value("rohrpost_open_connections") == opened
    await communicator.wait(timeout=1)
    assert value("rohrpost_open_connections") == opened


# --- the view ------------------------------------------------------------------------------


def test_the_view_serves_the_text_format_with_rohrpost_metrics(metrics_on: None) -> None:
    response = metrics.metrics_view(RequestFactory().get("/metrics/"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"rohrpost_open_connections", "rohrpost_frames_received"} <= names


def test_the_view_answers_in_openmetrics_when_asked(metrics_on: None) -> None:
    request = RequestFactory().get(
        "/metrics/", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    response = metrics.metrics_view(request)
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.endswith(b"# EOF\n")


def test_the_view_in_multiprocess_mode_reads_the_shared_directory(
    metrics_on: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process wrote no files there: what the view shows comes from the directory only.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    response = metrics.metrics_view(RequestFactory().get("/metrics/"))
    assert response.status_code == 200
    assert b"rohrpost_open_connections" not in response.content
    assert b"python_info" not in response.content


def test_the_view_without_prometheus_client_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImproperlyConfigured, match=r"rohrpost\[metrics\]"):
        metrics.metrics_view(RequestFactory().get("/metrics/"))


def test_the_guides_token_protected_view_serves_only_with_the_token(
    metrics_on: None, settings: Any
) -> None:
    """docs/deployment.md's ``protected_metrics``, run as written."""
    settings.METRICS_TOKEN = "s3cret"
    [code] = python_blocks("deployment.md", "## Metrics")
    assert code.startswith("# myapp/views.py\n")
    views = load("myapp_views", code)
    try:
        factory = RequestFactory()
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}]:
            refused = views.protected_metrics(factory.get("/m/", headers=headers))
            assert refused.status_code == 403
        served = views.protected_metrics(
            factory.get("/m/", headers={"Authorization": "Bearer s3cret"})
        )
        assert served.status_code == 200
        assert b"rohrpost_open_connections" in served.content
    finally:
        del sys.modules["myapp_views"]


# --- end to end: a real uvicorn, a real client, a real scrape -----------------------------


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def ws_url(self, path: str = "ws/async/") -> str:
        return f"ws://127.0.0.1:{self.port}/{path}"

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample the metrics view serves, by name and labels."""
        url = f"http://127.0.0.1:{self.port}/metrics/"
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as response:
            assert response.status == 200
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(
    directory: Path, *, env: dict[str, str] | None = None, workers: int = 1
) -> Iterator[Server]:
    """Run ``tests.metrics_app`` under uvicorn on a free port; kill it at the end."""
    port = _free_port()
    log_path = directory / "server.log"
    command = [sys.executable, "-m", "uvicorn", "tests.metrics_app:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
    if workers > 1:
        command += ["--workers", str(workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, log_path)
    try:
        _wait_until_scraped(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a server that hangs on exit
            process.kill()
            process.wait(timeout=10)


def _wait_until_scraped(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"The server exited early:\n{server.log_path.read_text()}")
        try:
            server.scrape()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"The server did not answer within {START_TIMEOUT} s")


async def ask(connection: ClientConnection, request_type: str, request_id: int) -> Any:
    await connection.send(json.dumps({"id": request_id, "type": request_type, "data": "x"}))
    return json.loads(await asyncio.wait_for(connection.recv(), IO_TIMEOUT))


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def wait_for_sample(server: Server, name: str, expected: float, **labels: str) -> None:
    """Scrape until ``name`` reads ``expected`` (a disconnect is counted asynchronously)."""
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        found = sample(await asyncio.to_thread(server.scrape), name, **labels)
        if found == expected or time.monotonic() > deadline:
            assert found == expected
            return
        await asyncio.sleep(0.05)


@pytest.mark.e2e
async def test_e2e_a_scrape_shows_exactly_what_the_clients_did(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        first = server.scrape()
        assert sample(first, "rohrpost_open_connections") == 0
        assert not any(name == "rohrpost_frames_received_total" for name, _ in first)

        async with (
            connect(server.ws_url("ws/async/")) as async_client,
            connect(server.ws_url("ws/sync/")) as sync_client,
        ):
            for request_id in (1, 2, 3):
                assert (await ask(async_client, "ping", request_id))["id"] == request_id
            assert (await ask(async_client, "m.echo", 4))["data"] == "x"
            assert (await ask(sync_client, "m.sync", 5))["data"] == "x"
            assert (await ask(sync_client, "m.sync", 6))["data"] == "x"
            assert (await ask(async_client, "m.fail", 7))["code"] == "handler_error"
            assert (await ask(sync_client, "m.deny", 8))["code"] == "forbidden"
            assert (await ask(async_client, "no.such.type", 9))["code"] == "unknown_type"
            await async_client.send("{not json")
            assert json.loads(await async_client.recv())["code"] == "invalid_json"
            await async_client.send(json.dumps({"id": 10, "type": "m.quiet"}))
            assert (await ask(async_client, "ping", 11))["id"] == 11  # m.quiet sent nothing

            during = await asyncio.to_thread(server.scrape)

        frames = "rohrpost_frames_received_total"
        replies = "rohrpost_replies_sent_total"
        durations = "rohrpost_handler_duration_seconds_count"
        assert sample(during, "rohrpost_open_connections") == 2
        assert {
            dict(labels)["type"]: count for name, labels in during if name == frames
            for count in [during[(name, labels)]]
        } == {"ping": 4, "m.echo": 1, "m.sync": 2, "m.fail": 1, "m.deny": 1, "m.quiet": 1,
              "(unknown)": 1, "(invalid)": 1}  # fmt: skip
        assert {
            (dict(labels)["type"], dict(labels)["code"]): during[(name, labels)]
            for name, labels in during
            if name == replies
        } == {  # ping answers with send_message (a frame of its own), not a returned reply
            ("m.echo", "ok"): 1,
            ("m.sync", "ok"): 2,
            ("m.fail", "handler_error"): 1,
            ("m.deny", "forbidden"): 1,
            ("(unknown)", "unknown_type"): 1,
            ("(invalid)", "invalid_json"): 1,
        }
        for request_type, count in [("ping", 4), ("m.sync", 2), ("m.fail", 1), ("m.quiet", 1)]:
            assert sample(during, durations, type=request_type) == count
        assert (
            sample(during, "rohrpost_handler_duration_seconds_bucket", type="ping", le="+Inf") == 4
        )
        # Types that were never sent have no series: a client cannot create label values.
        assert not any(dict(labels).get("type") == "no.such.type" for _, labels in during)

        await wait_for_sample(server, "rohrpost_open_connections", 0)


@pytest.mark.e2e
async def test_e2e_off_the_view_serves_no_rohrpost_metric(tmp_path: Path) -> None:
    with serve(tmp_path, env={"METRICS_OFF": "1"}) as server:
        async with connect(server.ws_url()) as client:
            assert (await ask(client, "ping", 1))["id"] == 1
            assert (await ask(client, "m.fail", 2))["code"] == "handler_error"
        samples = server.scrape()
    assert any(name == "python_info" for name, _ in samples)  # the view itself works
    assert not any(name.startswith("rohrpost_") for name, _ in samples)


@pytest.mark.e2e
async def test_e2e_multiprocess_mode_sums_every_worker(tmp_path: Path) -> None:
    """Two uvicorn workers, PROMETHEUS_MULTIPROC_DIR set: any scrape counts both processes."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    with serve(tmp_path, env=env, workers=2) as server:
        clients: list[ClientConnection] = []
        pids: set[int] = set()
        asked = 0
        try:
            # The kernel spreads connections over the workers, once both have started:
            # connect until both serve one, keeping one connection per worker (and a spare).
            deadline = time.monotonic() + START_TIMEOUT
            while len(pids) < 2 and time.monotonic() < deadline:
                client = await connect(server.ws_url())
                asked += 1
                pid = (await ask(client, "m.pid", asked))["data"]
                if pid in pids and len(clients) >= 2:
                    await client.close()
                    await asyncio.sleep(0.1)
                    continue
                pids.add(pid)
                clients.append(client)
            assert len(pids) == 2, server.log_path.read_text()
            for client in clients:
                await ask(client, "ping", 0)
            await wait_for_sample(server, "rohrpost_open_connections", len(clients))
            for _ in range(6):  # each scrape is answered by either worker
                samples = await asyncio.to_thread(server.scrape)
                assert sample(samples, "rohrpost_open_connections") == len(clients)
                assert sample(samples, "rohrpost_frames_received_total", type="ping") == len(
                    clients
                )
                assert sample(samples, "rohrpost_frames_received_total", type="m.pid") == asked
        finally:
            for client in clients:
                await client.close()
        await wait_for_sample(server, "rohrpost_open_connections", 0)


# --- the delivery path records what happens to pushes ------------------------------------


@pytest.mark.usefixtures("fresh_channel_layers")
async def test_on_the_hub_counts_pushes_delivered_and_dropped(metrics_on: None) -> None:
    from rohrpost.consumers import AsyncRohrpostConsumer
    from rohrpost.message import asend_to_group
    from tests.communicators import connect

    registry = HandlerRegistry()

    @registry.handler("join")
    async def join(consumer: Any, request: dict[str, Any]) -> str:
        await consumer.aadd_to_group("room")
        if request.get("data") == "and-leave":
            await asend_to_group("room", {"id": 0, "type": "held"})
            await asyncio.sleep(0.05)  # delivered to the hub, held for this frame
            await consumer.aremove_from_group("room")
        return "ok"

    class Consumer(AsyncRohrpostConsumer):
        rohrpost_registry = registry

    delivered = value("rohrpost_pushes_delivered_total")
    left = value("rohrpost_pushes_dropped_total", reason="left")
    async with connect(Consumer) as a, connect(Consumer) as b:
        for client in (a, b):
            await client.send_to(text_data=frame("join"))
            await client.receive_from(timeout=2)
        await asend_to_group("room", {"id": 1, "type": "news"})
        for client in (a, b):
            await client.receive_from(timeout=2)
        assert value("rohrpost_pushes_delivered_total") == delivered + 2
        await a.send_to(text_data=json.dumps({"id": 2, "type": "join", "data": "and-leave"}))
        await a.receive_from(timeout=2)
        assert value("rohrpost_pushes_dropped_total", reason="left") == left + 1


async def test_on_the_hub_counts_layer_errors_and_reconnects(
    metrics_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from channels.layers import InMemoryChannelLayer

    from rohrpost import hub as hub_module
    from rohrpost import upkeep as upkeep_module

    monkeypatch.setattr(upkeep_module, "RETRY_FIRST_SECONDS", 0.001)
    monkeypatch.setattr(upkeep_module, "CANARY_SECONDS", 0.01)
    errors = value("rohrpost_channel_layer_errors_total", where="group_add")
    reconnects = value("rohrpost_hub_reconnects_total")

    class Flaky(InMemoryChannelLayer):  # type: ignore[misc]
        failures = 2

        async def group_add(self, group: str, channel: str) -> None:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("Redis is down")
            await super().group_add(group, channel)

    hub = hub_module.hub_for(Flaky())

    class Member:
        def rohrpost_control(self, event: dict[str, Any]) -> None: ...

    hub.add("room", Member())  # type: ignore[arg-type]
    for _ in range(400):
        if value("rohrpost_hub_reconnects_total") > reconnects:
            break
        await asyncio.sleep(0.005)
    assert value("rohrpost_channel_layer_errors_total", where="group_add") >= errors + 1
    assert value("rohrpost_hub_reconnects_total") == reconnects + 1
