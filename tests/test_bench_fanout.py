"""Smoke test of the fan-out benchmark (``python -m bench.fanout``) in a tiny configuration.

It starts the real uvicorn servers, subscriber processes, a redis-server of
its own and the sender process, so it proves that the benchmark runs on both
layers, that every push is checked and that the report and the plot are
made; it asserts nothing about timing (the targets are for a full run).
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from bench import fanout, fanout_procs, fanout_report

from tests.services import services_required

pytestmark = pytest.mark.e2e

SUBSCRIBERS, BROADCASTS, ROUNDS = 20, 10, 2
TINY = [
    "--quick",
    *("--subscribers", str(SUBSCRIBERS), "--sweep", "8", "--sweep", str(SUBSCRIBERS)),
    *("--broadcasts", str(BROADCASTS), "--min-broadcasts", "5", "--rounds", str(ROUNDS)),
    *("--idle-connections", "40"),
]


@pytest.fixture(scope="module")
def redis_server_binary() -> None:
    if shutil.which("redis-server") is None:
        if services_required():
            pytest.fail("redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed")


@pytest.fixture(scope="module")
def tiny_run(redis_server_binary: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    plot = tmp_path_factory.mktemp("fanout") / "fanout.png"
    return fanout.measure(fanout.parse_args([*TINY, "--plot", str(plot)]))


def runs_by_key(data: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(run["layer"], run["subscribers"]): run for run in data["runs"]}


def test_every_contender_delivers_every_push_on_both_layers(tiny_run: dict[str, Any]) -> None:
    runs = runs_by_key(tiny_run)
    assert set(runs) == {("memory", 8), ("memory", SUBSCRIBERS), ("redis", SUBSCRIBERS)}
    for run in runs.values():
        assert set(run["contenders"]) == set(fanout.CONTENDERS)
        for name, result in run["contenders"].items():
            assert result["failure"] is None, f"{run['layer']} {name}: {result['failure']}"
            assert len(result["samples"]) == ROUNDS
            for sample in result["samples"]:
                assert sample["deliveries"] == run["subscribers"] * run["broadcasts"]
                assert sample["server_us"] > 0
                assert sample["deliveries_per_second"] > 0


def test_redis_counts_redis_and_the_sender_beside_the_servers(tiny_run: dict[str, Any]) -> None:
    run = runs_by_key(tiny_run)[("redis", SUBSCRIBERS)]
    for name, result in run["contenders"].items():
        for sample in result["samples"]:
            assert sample["sender_us"] > 0, name
            assert sample["total_us"] == pytest.approx(sample["server_us"] + sample["redis_us"])
    # channels_redis does its group_send in Redis (a Lua script per send): Redis works.
    channels = run["contenders"]["ChannelsAsyncJson"]["samples"]
    assert sum(sample["redis_us"] for sample in channels) > 0


def test_each_rohrpost_contender_has_its_targets_judged(tiny_run: dict[str, Any]) -> None:
    for run in tiny_run["runs"]:
        for name in fanout.ROHRPOST:
            floor = run["ratios"][f"{name}/BareASGI total_us"]
            rate = run["ratios"][f"{name}/ChannelsAsyncJson deliveries_per_second"]
            assert floor["target"] == fanout.TARGET_FLOOR_RATIO
            assert rate["target"] == fanout.TARGET_RATE_RATIO
            assert floor["met"] == (floor["ratio_of_medians"] <= floor["target"])
            assert rate["met"] == (rate["ratio_of_medians"] >= rate["target"])


def test_idle_memory_is_measured_on_a_fresh_server_per_contender(
    tiny_run: dict[str, Any],
) -> None:
    idle = tiny_run["idle_memory"]
    assert set(idle) == {"deflate", "plain"}
    for client, kind in idle.items():
        assert set(kind) == {"BareASGI", "ChannelsAsyncJson", "AsyncRohrpost"}
        for name, result in kind.items():
            assert result["failure"] is None, f"{client} {name}: {result['failure']}"
            assert result["connections"] == 40
            # Offered as browsers do, uvicorn accepts permessage-deflate; else nobody has it.
            assert result["deflated"] == (40 if client == "deflate" else 0)
            assert result["rss_before_bytes"] > 10 * 2**20  # a Django process: tens of MB
            assert result["bytes_per_connection"] > 0
        assert isinstance(kind["AsyncRohrpost"]["met"], bool)


def test_the_plot_is_a_png(tiny_run: dict[str, Any]) -> None:
    plot = Path(tiny_run["config"]["plot"])
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_report_prints_every_table(
    tiny_run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    fanout_report.print_report(tiny_run)

    report = capsys.readouterr().out
    assert "FAILED" not in report
    assert report.count("layer memory:") == 2
    assert report.count("layer redis:") == 1
    assert "idle memory, clients offering permessage-deflate: 40 connections" in report
    assert "idle memory, clients without extensions: 40 connections" in report
    assert "AsyncRohrpost/BareASGI CPU/delivery" in report


def test_on_granian_the_worker_processes_cpu_is_counted() -> None:
    server, port = fanout_procs.fanout_server("bare", None, server="granian")
    try:
        info = fanout_procs.wait_until_ready(server, port)

        workers = fanout_procs.descendants(server.pid)
        assert info["server"] == "granian"
        assert info["pid"] in workers  # the app runs in a worker, not in the main process
        assert fanout_procs.tree_cpu_seconds(server.pid) > fanout_procs.cpu_seconds(server.pid)
    finally:
        fanout_procs.stop_servers([server])


def test_every_contender_delivers_every_push_on_granian() -> None:
    args = fanout.parse_args(["--quick", "--server", "granian", "--rounds", "1"])

    run = fanout.measure_layer("memory", 10, args, "granian")

    assert run["server_kind"] == "granian"
    for name, result in run["contenders"].items():
        assert result["failure"] is None, f"{name}: {result['failure']}"
        assert result["samples"][0]["server_us"] > 0


@pytest.mark.parametrize("server", fanout.SERVER_KINDS)
def test_an_exception_the_server_logs_is_counted(server: str) -> None:
    with tempfile.TemporaryFile() as log:
        process, port = fanout_procs.fanout_server("bare", None, log, server)
        try:
            fanout_procs.wait_until_ready(process, port)
            with pytest.raises(urllib.error.HTTPError):  # no count: a KeyError in the app
                fanout_procs.http_get(port, "/broadcast?contender=bare", timeout=10)
        finally:
            fanout_procs.stop_servers([process])

        assert fanout_procs.logged_errors(log) == {"KeyError: 'count'": 1}


def test_a_wrong_push_fails_the_contender(monkeypatch: pytest.MonkeyPatch) -> None:
    # The subscribers compare every push with what they are told to expect.
    monkeypatch.setattr(fanout_procs, "PAYLOAD", {"type": "something else"})
    args = fanout.parse_args(["--quick", "--only", "BareASGI", "--rounds", "1"])

    run = fanout.measure_layer("memory", 3, args)

    failure = run["contenders"]["BareASGI"]["failure"]
    assert failure is not None
    assert "wrong push" in failure
