"""Tests for ``python -m rohrpost`` (and the demo's ``manage.py board``) as subprocesses.

Every command runs as a real process against the demo under uvicorn; every
wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rohrpost.__main__ import EXIT_CODES, build_parser, main
from rohrpost.client import Client
from tests.demo_server import DemoServer, run_demo
from tests.test_client import add_task, closed_port, next_push

pytestmark = pytest.mark.e2e

IO_TIMEOUT = 10.0
BOARD_1 = '{"type": "board", "id": 1}'


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with run_demo(tmp_path_factory.mktemp("cli")) as server:
        yield server


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    if "ROHRPOST_TOKEN" not in extra:
        env.pop("ROHRPOST_TOKEN", None)
    return env


def rohrpost(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rohrpost ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "rohrpost", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=cli_env(**env),
        check=False,
    )


async def start_listening(*args: str) -> asyncio.subprocess.Process:
    """Start ``python -m rohrpost listen ARGS`` and wait until it has subscribed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rohrpost",
        "listen",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stderr.readline(), IO_TIMEOUT)
    assert line.decode().strip() == "rohrpost: subscribed to board-1"
    return process


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Wait for ``process`` to end (killing it if it does not); its status and output."""
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), IO_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


# --- ping and call ----------------------------------------------------------------------


def test_ping_prints_each_round_trip_and_a_summary(demo: DemoServer) -> None:
    result = rohrpost("ping", demo.ws_url, "--count", "2", "--interval", "0")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" seq=")[1].split()[0] for line in lines[:2]] == ["1", "2"]
    assert all(line.endswith(" ms") for line in lines)
    assert lines[2].startswith("2 pongs, min/avg/max = ")


def test_call_prints_the_answers_data_as_one_json_line(demo: DemoServer) -> None:
    added = rohrpost("call", demo.ws_url, "add", "[1, 2, 3]")
    assert (added.returncode, added.stdout) == (0, "6\n")
    echoed = rohrpost("call", demo.ws_url, "echo", '{"tëxt": [1, {"a": null}]}')
    assert json.loads(echoed.stdout) == {"tëxt": [1, {"a": None}]}
    assert echoed.stdout.count("\n") == 1
    assert rohrpost("call", demo.ws_url, "echo").stdout == "null\n"


def test_call_error_answer_goes_to_stderr_with_status_1(demo: DemoServer) -> None:
    result = rohrpost("call", demo.ws_url, "add", '"not numbers"')
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "rohrpost: invalid: Invalid data: Input should be a valid list\n"
        'rohrpost: data: {"errors": [{"path": [], "message": "Input should be a valid list", '
        '"type": "list_type"}]}\n'
    )


def test_token_comes_from_the_option_or_the_environment(demo: DemoServer) -> None:
    token = demo.token("bob")
    by_option = rohrpost("call", demo.ws_url, "whoami", "--token", token)
    by_environment = rohrpost("call", demo.ws_url, "whoami", ROHRPOST_TOKEN=token)
    for result in (by_option, by_environment):
        assert json.loads(result.stdout) == {"authenticated": True, "username": "bob"}
    refused = rohrpost("call", demo.ws_url, "whoami", "--token", "forged")
    assert refused.returncode == 1
    assert "unauthenticated" in refused.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["call"],
        ["call", "ws://127.0.0.1:1/", "echo", "{not json"],
        ["call", "http://127.0.0.1:1/", "echo"],
        ["ping", "ws://127.0.0.1:1/", "--count", "0"],
        ["listen", "ws://127.0.0.1:1/"],
    ],
    ids=["no-command", "no-url", "bad-json", "not-a-websocket-url", "zero-count", "no-group"],
)
def test_usage_errors_exit_with_status_2(args: list[str]) -> None:
    result = rohrpost(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_an_unreachable_server_exits_with_status_3() -> None:
    url = f"ws://127.0.0.1:{closed_port()}/ws/rohrpost/"
    result = rohrpost("call", url, "ping")
    assert result.returncode == 3
    assert result.stderr.startswith(f"rohrpost: cannot connect to {url}: ")


def test_a_foreign_origin_exits_with_status_3(demo: DemoServer) -> None:
    result = rohrpost("ping", demo.ws_url, "--origin", "http://evil.example")
    assert result.returncode == 3
    assert "HTTP 403" in result.stderr


def test_help_lists_the_commands_and_exit_codes() -> None:
    result = rohrpost("--help")
    assert result.returncode == 0
    for word in ("ping", "call", "listen", "130 interrupted"):
        assert word in result.stdout
    assert set(EXIT_CODES) == {0, 1, 2, 3, 4, 130}


def test_main_runs_in_process_too(demo: DemoServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", demo.ws_url, "add", "[40, 2]"]) == 0
    assert capsys.readouterr().out == "42\n"
    assert build_parser().parse_args(["ping", demo.ws_url]).count == 4


# --- listen -----------------------------------------------------------------------------


async def test_listen_prints_one_json_line_per_push_made_by_another_client(
    demo: DemoServer,
) -> None:
    process = await start_listening(demo.ws_url, BOARD_1, "--count", "2")
    try:
        task = await add_task(demo, "heard by the listener")
        async with Client(demo.ws_url) as editor:
            await editor.call("task.toggle", {"id": task["id"]})
    finally:
        status, stdout, stderr = await finish(process)
    assert status == 0, stderr
    pushes = [json.loads(line) for line in stdout.splitlines()]
    assert [push["type"] for push in pushes] == ["subscription-update"] * 2
    assert [push["data"]["type"] for push in pushes] == ["create", "update"]
    assert pushes[0]["data"] == {"type": "create", "group": "board-1", "object": task}
    assert pushes[1]["data"]["object"]["done"] is True
    assert all(isinstance(push["id"], int) for push in pushes)


async def test_listen_ends_cleanly_on_ctrl_c(demo: DemoServer) -> None:
    process = await start_listening(demo.ws_url, BOARD_1)
    process.send_signal(signal.SIGINT)
    status, stdout, stderr = await finish(process)
    assert status == 130
    assert stdout == ""
    assert "Traceback" not in stderr


def test_listen_for_a_while_ends_with_status_0(demo: DemoServer) -> None:
    result = rohrpost("listen", demo.ws_url, BOARD_1, "--timeout", "0.3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_listen_that_gets_too_few_pushes_exits_with_status_4(demo: DemoServer) -> None:
    result = rohrpost("listen", demo.ws_url, BOARD_1, "--count", "1", "--timeout", "0.3")
    assert result.returncode == 4
    assert result.stderr.endswith("rohrpost: 0 of 1 pushes within 0.3 s\n")


def test_listen_to_a_forbidden_group_exits_with_status_1(demo: DemoServer) -> None:
    result = rohrpost("listen", demo.ws_url, '{"type": "board", "id": 2}', "--timeout", "1")
    assert result.returncode == 1
    assert "forbidden" in result.stderr


# --- the demo's management command goes through call_once -------------------------------


async def test_board_add_goes_through_the_server_and_is_pushed_live(
    demo: DemoServer,
) -> None:
    async with Client(demo.ws_url) as watcher:
        await watcher.subscribe({"type": "board", "id": 1})
        result = await asyncio.to_thread(
            demo.manage, "board", "add", "From the shell", "--url", demo.ws_url
        )
        assert result.returncode == 0, result.stderr
        push = await next_push(watcher)
    assert push.action == "create"
    assert push.object["title"] == "From the shell"
    assert result.stdout == f"[ ] {push.object['id']}: From the shell (board 1)\n"


def test_board_command_reports_a_refusal_and_an_unreachable_server(
    demo: DemoServer,
) -> None:
    refused = demo.manage("board", "rename", "999999", "x", "--url", demo.ws_url)
    assert refused.returncode == 1
    assert "The server refused: not_found: There is no such task." in refused.stderr
    url = f"ws://127.0.0.1:{closed_port()}/ws/rohrpost/"
    unreachable = demo.manage("board", "toggle", "1", "--url", url)
    assert unreachable.returncode == 1
    assert f"Could not reach the demo server at {url}" in unreachable.stderr
    assert "Traceback" not in refused.stderr + unreachable.stderr
