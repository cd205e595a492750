"""Smoke test of the round-trip benchmark (``python -m bench``) in a tiny configuration.

It starts the real uvicorn server of :mod:`bench.app` and real WebSocket
clients, so it proves that every contender (the bare ASGI echo included)
answers every ping correctly and that the report states each target; it
asserts nothing about timing (the targets are for a full run).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from bench import __main__ as bench
from websockets.asyncio.client import connect

pytestmark = pytest.mark.e2e

ROUNDS, CLIENTS, ROUND_TRIPS = 2, 2, 3
TINY = [
    *("--rounds", str(ROUNDS), "--clients", str(CLIENTS), "--round-trips", str(ROUND_TRIPS)),
    *("--skip-changefeed", "--skip-flood", "--skip-fanout"),
]


@pytest.fixture(scope="module")
def tiny_run() -> dict[str, Any]:
    return asyncio.run(bench.run(bench.parse_args(TINY)))


def test_every_contender_answers_every_ping(tiny_run: dict[str, Any]) -> None:
    assert set(tiny_run["contenders"]) == set(bench.CONTENDERS)
    assert "BareASGIEcho" in tiny_run["contenders"]
    for name, result in tiny_run["contenders"].items():
        assert result["failure"] is None, f"{name}: {result['failure']}"
        assert len(result["us_server_cpu_per_round_trip"]) == ROUNDS
        assert result["median_us"] > 0


def test_rohrpost_is_compared_with_the_bare_echo_against_1_1x(tiny_run: dict[str, Any]) -> None:
    for name in ("AsyncRohrpost", "SyncRohrpost"):
        ratio = tiny_run["ratios"][f"{name}/BareASGIEcho"]
        assert ratio["target"] == 1.1
        expected = (
            tiny_run["contenders"][name]["median_us"]
            / (tiny_run["contenders"]["BareASGIEcho"]["median_us"])
        )
        assert ratio["ratio_of_medians"] == pytest.approx(expected)
        assert ratio["met"] == (ratio["ratio_of_medians"] <= 1.1)
    assert tiny_run["ratios"]["AsyncRohrpost/ChannelsAsyncJson"]["target"] == 1.0


def test_the_report_says_missed_for_a_ratio_over_its_target(
    tiny_run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(json.dumps(tiny_run))
    data["ratios"]["AsyncRohrpost/BareASGIEcho"] |= {"ratio_of_medians": 1.3, "met": False}
    data["ratios"]["SyncRohrpost/BareASGIEcho"] |= {"ratio_of_medians": 1.05, "met": True}
    bench.print_report(data)
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert "<= 1.1x" in lines["AsyncRohrpost/BareASGIEcho"]
    assert lines["AsyncRohrpost/BareASGIEcho"].endswith("MISSED")
    assert lines["SyncRohrpost/BareASGIEcho"].endswith("met")
    assert "BareASGIEcho" in lines


async def test_the_bare_echo_answers_with_the_request_id_and_data() -> None:
    port = bench.free_port()
    server = bench.start_server(port)
    try:
        await bench.wait_until_ready(server, port)
        url = f"ws://127.0.0.1:{port}{bench.CONTENDERS['BareASGIEcho']}"
        async with connect(url) as client:
            await client.send('{"id": "a", "type": "ping", "data": [1, "é"]}')
            reply = await client.recv()
        assert isinstance(reply, str)
        assert json.loads(reply) == {"id": "a", "type": "pong", "data": [1, "é"]}
    finally:
        bench.stop_server(server)
