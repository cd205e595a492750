"""Guard rails: checks logged once at start-up, missing set-up steps named in errors and logs."""

from __future__ import annotations

import logging
from io import StringIO
from typing import Any

import pytest
from channels.layers import channel_layers
from channels_redis.core import RedisChannelLayer
from django.core.management import call_command
from django.test import override_settings

from rohrpost import AsyncRohrpostConsumer, SyncRohrpostConsumer, checks, startup
from rohrpost.apps import HANDLER_MODULE
from rohrpost.checks import check_channel_layers, rohrpost_problems
from rohrpost.registry import HANDLERS, HandlerRegistry
from tests.communicators import ask, connect

pytestmark = [
    # The sync consumer checks the database connections around each frame.
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_channel_layers"),
]


@pytest.fixture(params=[SyncRohrpostConsumer, AsyncRohrpostConsumer], ids=["sync", "async"])
def consumer_class(request: pytest.FixtureRequest) -> type[Any]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def no_channel_layer(settings: Any) -> None:
    del settings.CHANNEL_LAYERS
    channel_layers.backends = {}


def rohrpost_records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rohrpost" and text in r.getMessage()]


# --- the checks ----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_channel_layer")
def test_manage_py_check_warns_about_a_missing_channel_layer() -> None:
    out = StringIO()
    call_command("check", "--tag", "rohrpost", stdout=out, stderr=out)
    assert "rohrpost.W001" in out.getvalue()
    assert "CHANNEL_LAYERS has no 'default' layer" in out.getvalue()


@pytest.mark.parametrize("layers", [{}, {"other": {}}, {"default": "x"}, None])
def test_a_channel_layers_setting_without_a_default_layer_is_a_warning(
    settings: Any, layers: Any
) -> None:
    settings.CHANNEL_LAYERS = layers
    assert [w.id for w in check_channel_layers()] == ["rohrpost.W001"]


def test_a_configured_channel_layer_passes() -> None:
    assert check_channel_layers() == []
    assert rohrpost_problems() == []


def test_rohrpost_missing_from_installed_apps_is_a_problem_at_start_up(settings: Any) -> None:
    apps = [app for app in settings.INSTALLED_APPS if app != "rohrpost"]
    with override_settings(INSTALLED_APPS=apps):
        problems = rohrpost_problems()
    assert [p.id for p in problems] == ["rohrpost.W002"]
    assert problems[0].hint == "Add 'rohrpost' to INSTALLED_APPS."


@pytest.mark.usefixtures("no_channel_layer")
async def test_the_first_connection_logs_every_problem_once(
    settings: Any, consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """ASGI servers run no system checks: rohrpost runs its own, once per process."""
    settings.ROHRPOST = {"MAX_DEPHT": 8}
    with caplog.at_level(logging.WARNING, logger="rohrpost"):
        for _ in range(3):
            async with connect(consumer_class) as communicator:
                await ask(communicator, {"id": 1, "type": "ping"})
    typo = rohrpost_records(caplog, "unknown key 'MAX_DEPHT'")
    layer = rohrpost_records(caplog, "(rohrpost.W001)")
    assert [r.levelno for r in typo] == [logging.ERROR]
    assert "(rohrpost.E001)" in typo[0].getMessage()
    assert [r.levelno for r in layer] == [logging.WARNING]


async def test_a_sound_configuration_logs_nothing_at_start_up(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="rohrpost"):
        async with connect(consumer_class) as communicator:
            await ask(communicator, {"id": 1, "type": "ping"})
    assert [r for r in caplog.records if r.name == "rohrpost"] == []


async def test_an_unusable_auth_setting_is_logged_once_not_per_connection(
    settings: Any, consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings.ROHRPOST = {"AUTHENTICATE": "no.such.hook", "REQUIRE_AUTHENTICATION": "yes"}
    with caplog.at_level(logging.WARNING, logger="rohrpost"):
        for _ in range(3):
            async with connect(consumer_class) as communicator:
                await ask(communicator, {"id": 1, "type": "ping"})
    assert len(rohrpost_records(caplog, "is unusable: no token is accepted")) == 1
    assert len(rohrpost_records(caplog, "is not a bool: taken as True")) == 1
    assert all(r.exc_info is None for r in caplog.records)


# --- a handler that needs the channel layer --------------------------------------------------


@pytest.mark.usefixtures("no_channel_layer")
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_joining_a_group_without_a_channel_layer_answers_clearly_and_logs_the_cause(
    registry: HandlerRegistry,
    consumer_class: type[Any],
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if kind == "sync":

        @registry.handler("join")
        def join(consumer: Any, request: dict[str, Any]) -> str:
            consumer.add_to_group("lobby")
            return "joined"

    else:

        @registry.handler("join")
        async def ajoin(consumer: Any, request: dict[str, Any]) -> str:
            await consumer.aremove_from_group("lobby")
            return "left"

    with caplog.at_level(logging.ERROR, logger="rohrpost"):
        async with connect(consumer_class) as communicator:
            first = await ask(communicator, {"id": 1, "type": "join"})
            second = await ask(communicator, {"id": 2, "type": "join"})
            assert await ask(communicator, {"id": 3, "type": "ping"}) == {"id": 3, "type": "pong"}
    assert first == {
        "id": 1,
        "type": "join",
        "error": "The server has no channel layer configured, so it cannot join or leave groups.",
        "code": "handler_error",
    }
    assert second["code"] == "handler_error"
    logged = rohrpost_records(caplog, "no channel layer is configured: set CHANNEL_LAYERS")
    assert len(logged) == 1
    assert "'lobby'" in logged[0].getMessage()


# --- unknown types that mean a missing set-up step ---------------------------------------------


async def test_subscribe_without_installed_subscriptions_hints_at_the_missing_step(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    assert "subscribe" not in HANDLERS
    with caplog.at_level(logging.WARNING, logger="rohrpost"):
        async with connect(consumer_class) as communicator:
            replies = [
                await ask(communicator, {"id": n, "type": kind, "data": {"type": "board"}})
                for n, kind in enumerate(["subscribe", "unsubscribe", "subscribe"])
            ]
    assert replies[0] == {
        "id": 0,
        "type": "subscribe",
        "error": "No registered handler called 'subscribe'. "
        "The server has no subscriptions installed.",
        "code": "unknown_type",
    }
    assert [r["code"] for r in replies] == ["unknown_type"] * 3
    logged = rohrpost_records(caplog, "Subscriptions().install()")
    assert len(logged) == 1
    assert f"{HANDLER_MODULE}.py" in logged[0].getMessage()


class BareConsumer(AsyncRohrpostConsumer):
    """Serves a registry that holds only the built-in handler, as if none were imported."""

    rohrpost_registry = HandlerRegistry({"ping": HANDLERS["ping"]})


async def test_an_unknown_type_with_no_handlers_registered_logs_where_they_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="rohrpost"):
        async with connect(BareConsumer) as communicator:
            for n in range(3):
                reply = await ask(communicator, {"id": n, "type": "add"})
                assert reply["error"] == "No registered handler called 'add'."
    assert len(rohrpost_records(caplog, "no handler besides the built-in ones")) == 1


async def test_an_unknown_type_beside_registered_handlers_logs_nothing(
    consumer_class: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="rohrpost"):
        async with connect(consumer_class) as communicator:
            reply = await ask(communicator, {"id": 1, "type": "nope"})
    assert reply["error"] == "No registered handler called 'nope'."
    assert [r for r in caplog.records if r.name == "rohrpost"] == []


# --- autodiscovery -----------------------------------------------------------------------------


async def test_handler_modules_of_installed_apps_are_found_without_an_import(
    consumer_class: type[Any],
) -> None:
    """tests/feedapp/rohrpost_handlers.py is imported by nothing but the rohrpost app."""
    async with connect(consumer_class) as communicator:
        reply = await ask(communicator, {"id": 1, "type": "feedapp.autodiscovered"})
    assert reply == {"id": 1, "type": "feedapp.autodiscovered", "data": "found"}


def test_log_once_logs_a_key_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="rohrpost"):
        assert startup.log_once("k", logging.INFO, "said %s", "once") is True
        assert startup.log_once("k", logging.INFO, "said %s", "twice") is False
    assert [r.getMessage() for r in caplog.records] == ["said once"]


# --- the token hook's refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("unknown-token", "the token hook returned NoneType"),
        ("anon-token", "the token hook returned SimpleNamespace"),
        ("forbidden-token", "the token hook raised 'forbidden': This token was revoked."),
    ],
)
async def test_a_refused_token_is_logged_at_info_without_the_token(
    settings: Any,
    registry: HandlerRegistry,
    caplog: pytest.LogCaptureFixture,
    token: str,
    why: str,
) -> None:
    from tests.test_auth import user_for_token

    settings.ROHRPOST = {"AUTHENTICATE": user_for_token}
    registry.register("whoami", lambda consumer, request: "someone")
    with caplog.at_level(logging.INFO, logger="rohrpost"):
        async with connect(AsyncRohrpostConsumer) as communicator:
            reply = await ask(communicator, {"id": 7, "type": "whoami", "auth_jwt": token})
    assert "error" in reply
    logged = rohrpost_records(caplog, "Token refused on request id 7")
    assert [(r.levelno, r.getMessage()) for r in logged] == [
        (logging.INFO, f"Token refused on request id 7: {why}")
    ]
    assert token not in caplog.text


# --- channels_redis socket timeouts (W003, W004) ------------------------------------------

REDIS = "channels_redis.core.RedisChannelLayer"
PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
URL = "redis://127.0.0.1:6379/0"
SENTINEL = {"sentinels": [("127.0.0.1", 26379)], "master_name": "rohrpost"}


def redis_layer_warnings(settings: Any, config: Any, backend: str = REDIS) -> list[Any]:
    layer: dict[str, Any] = {"BACKEND": backend}
    if config is not None:
        layer["CONFIG"] = config
    settings.CHANNEL_LAYERS = {"default": layer, "memory": {"BACKEND": "x.InMemoryChannelLayer"}}
    return check_channel_layers()


@pytest.mark.parametrize(
    "config",
    [
        {"hosts": [URL]},
        {"hosts": [("127.0.0.1", 6379)]},
        {"hosts": [{"address": URL}]},
        {"hosts": [{"address": URL, "health_check_interval": 30}]},
        {"hosts": [{"host": "127.0.0.1", "port": 6379}]},
        {"hosts": ["unix:///run/redis.sock"]},
        {"hosts": [SENTINEL]},
        {"hosts": [{**SENTINEL, "sentinel_kwargs": {"socket_timeout": None}}]},
        {"hosts": ["redis://127.0.0.1:6379/0?health_check_interval=30"]},
        {"hosts": []},  # channels_redis' default host
        None,
    ],
)
def test_a_redis_host_left_with_redis_py_8s_default_timeout_is_w003(
    settings: Any, config: Any
) -> None:
    found = redis_layer_warnings(settings, config)
    assert [w.id for w in found] == ["rohrpost.W003"]
    assert found[0].msg.startswith("The channel layer 'default' leaves redis-py's default ")
    assert "socket_timeout of 5 s on hosts[0], no longer than the 5 s" in found[0].msg
    assert '"socket_timeout": None}, or above 5 s.' in str(found[0].hint)


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ({"hosts": [{"address": URL, "socket_timeout": 5}]}, "hosts[0] (socket_timeout=5)"),
        ({"hosts": [{"address": URL, "socket_timeout": 0.5}]}, "hosts[0] (socket_timeout=0.5)"),
        ({"hosts": [{"host": "h", "port": 1, "socket_timeout": 3}]}, "hosts[0] (socket_timeout=3)"),
        ({"hosts": [{**SENTINEL, "socket_timeout": 2}]}, "hosts[0] (socket_timeout=2)"),
        ({"hosts": [URL + "?socket_timeout=4"]}, "hosts[0] (?socket_timeout=4)"),
        # The URL's query wins over the dict's key, in redis-py as in the check.
        (
            {"hosts": [{"address": URL + "?socket_timeout=5", "socket_timeout": None}]},
            "hosts[0] (?socket_timeout=5)",
        ),
        (
            {"hosts": [{"address": URL, "socket_timeout": None}, URL + "?socket_timeout=1"]},
            "hosts[1] (?socket_timeout=1)",
        ),
    ],
)
def test_a_redis_host_with_a_socket_timeout_at_or_below_the_blocking_receive_is_w004(
    settings: Any, config: Any, where: str
) -> None:
    found = redis_layer_warnings(settings, config)
    assert [w.id for w in found] == ["rohrpost.W004"]
    assert f"sets a socket_timeout on {where}, no longer than the 5 s" in found[0].msg
    assert '"socket_timeout": None}, or above 5 s.' in str(found[0].hint)
    assert (checks.URL_TIMEOUT_NOTE in str(found[0].hint)) == ("?" in where)


def test_a_layer_with_both_kinds_of_short_timeout_gets_both_warnings(settings: Any) -> None:
    hosts = [URL, {"address": URL, "socket_timeout": 10}, {"address": URL, "socket_timeout": 1}]
    found = redis_layer_warnings(settings, {"hosts": hosts})
    assert [w.id for w in found] == ["rohrpost.W003", "rohrpost.W004"]
    assert "on hosts[0], no longer" in found[0].msg
    assert "on hosts[2] (socket_timeout=1), no longer" in found[1].msg


@pytest.mark.parametrize(
    "config",
    [
        {"hosts": [{"address": URL, "socket_timeout": None}]},
        {"hosts": ({"address": URL, "socket_timeout": 30},)},
        {"hosts": [{"address": URL, "socket_timeout": 5.5}]},
        {"hosts": [URL + "?socket_timeout=10"]},
        {"hosts": [{"address": URL + "?socket_timeout=10", "socket_timeout": 1}]},
        {"hosts": [{"host": "127.0.0.1", "port": 6379, "socket_timeout": None}]},
        {"hosts": [{**SENTINEL, "socket_timeout": None, "sentinel_kwargs": {"socket_timeout": 1}}]},
        # Hosts channels_redis refuses by itself, when the layer is built or connects.
        {"hosts": URL},
        {"hosts": [URL + "?socket_timeout=None"]},
        {"hosts": ["http://127.0.0.1:6379/0"]},
        {"hosts": [{"master_name": "rohrpost"}]},
    ],
)
def test_a_redis_host_whose_reads_outlast_the_blocking_receive_passes(
    settings: Any, config: Any
) -> None:
    assert redis_layer_warnings(settings, config) == []


@pytest.mark.parametrize(
    "backend", [PUBSUB, "channels_redis.core.NoSuchLayer", "channels_redis.utils.decode_hosts"]
)
def test_layers_whose_receive_does_not_block_on_a_socket_read_are_not_checked(
    settings: Any, backend: str
) -> None:
    """The pub/sub layer reads with a 0.1 s timeout of its own per call."""
    assert redis_layer_warnings(settings, {"hosts": [URL]}, backend) == []


def test_layers_without_a_backend_path_are_left_to_channels(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {}, "odd": "x", "numbered": {"BACKEND": 1}}
    assert check_channel_layers() == []


class SlowRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]
    brpop_timeout = 20


def test_a_layer_subclass_is_checked_against_its_own_blocking_timeout(settings: Any) -> None:
    backend = f"{__name__}.SlowRedisChannelLayer"
    config = {"hosts": [{"address": URL, "socket_timeout": 10}]}
    found = redis_layer_warnings(settings, config, backend)
    assert [w.id for w in found] == ["rohrpost.W004"]
    assert "no longer than the 20 s" in found[0].msg
    assert "or above 20 s." in str(found[0].hint)


def test_without_redis_py_8s_default_timeout_a_plain_url_passes(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py before 8 reads without a timeout unless one is given."""
    monkeypatch.setattr(checks, "_default_socket_timeout", lambda connection_class: None)
    assert redis_layer_warnings(settings, {"hosts": [URL]}) == []


def test_the_default_timeout_is_the_one_a_redis_py_connection_gets() -> None:
    from redis.asyncio import Connection, UnixDomainSocketConnection
    from redis.asyncio.sentinel import SentinelManagedConnection

    assert checks._default_socket_timeout(Connection) == Connection().socket_timeout
    assert checks._default_socket_timeout(UnixDomainSocketConnection) == 5
    assert checks._default_socket_timeout(SentinelManagedConnection) == 5
    assert checks._default_socket_timeout(object) is None


def test_the_start_up_checks_include_the_redis_timeout_warnings(settings: Any) -> None:
    redis_layer_warnings(settings, {"hosts": [{"address": URL, "socket_timeout": 2}]})
    assert [p.id for p in rohrpost_problems()] == ["rohrpost.W004"]


async def test_the_check_foretells_which_idle_receives_fail_on_a_real_redis(
    settings: Any, redis_url: str
) -> None:
    """Each layer waits 6 quiet seconds in a receive: those warned about fail, the others wait."""
    import asyncio

    from channels.layers import get_channel_layer
    from redis.exceptions import TimeoutError as RedisTimeoutError

    plain = redis_url.split("?")[0]
    configs = {
        "url": (REDIS, [plain]),
        "url_off": (REDIS, [{"address": plain, "socket_timeout": None}]),
        "url_query_10": (REDIS, [plain + "?socket_timeout=10"]),
        "url_query_4_wins": (
            REDIS,
            [{"address": plain + "?socket_timeout=4", "socket_timeout": None}],
        ),
        "pubsub_url": (PUBSUB, [plain]),
    }
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
        **{
            alias: {"BACKEND": backend, "CONFIG": {"hosts": hosts}}
            for alias, (backend, hosts) in configs.items()
        },
    }
    warned = {p.msg.split("'")[1] for p in check_channel_layers()}

    async def idle_receive_fails(alias: str) -> bool:
        layer = get_channel_layer(alias)
        channel = await layer.new_channel()
        try:
            await asyncio.wait_for(layer.receive(channel), 6.5)
        except RedisTimeoutError:
            return True
        except TimeoutError:
            return False
        finally:
            await layer.flush()
        raise AssertionError("nothing was sent, yet the receive returned")

    failed = await asyncio.gather(*(idle_receive_fails(alias) for alias in configs))
    assert {alias for alias, fail in zip(configs, failed, strict=True) if fail} == warned
    assert warned == {"url", "url_query_4_wins"}
