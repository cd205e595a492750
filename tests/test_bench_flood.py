"""Smoke test of the flood benchmark (``python -m bench.flood``) in a tiny configuration.

It starts the real uvicorn server and the real flooding process, so it proves
that the benchmark runs and that it checks every answer; it asserts nothing
about timing (the targets are for a full run on a quiet machine).
"""

from __future__ import annotations

from typing import Any

import pytest
from bench import flood
from bench.dense_client import DENSE_FRAMES, DENSE_RATE

from rohrpost import conf, protocol

pytestmark = pytest.mark.e2e

TINY = flood.FloodConfig(pingers=3, rounds=20, warm_up_rounds=2, bomb_repeats=1)
PHASES = ("baseline", "flooded", "during_bombs", "during_heavy_frames", "dense_frames")
#: What each bomb must be answered with: its error code (or pong), never anything else.
EXPECTED = {bomb.name: bomb.expected for bomb in flood.BOMBS + flood.HEAVY_FRAMES}


@pytest.fixture(scope="module")
def tiny_run() -> dict[str, Any]:
    return flood.measure(TINY)


def test_every_path_runs_every_phase_without_a_wrong_answer(tiny_run: dict[str, Any]) -> None:
    assert set(tiny_run["paths"]) == {"async", "sync"}
    for name, result in tiny_run["paths"].items():
        assert result["failure"] is None, f"{name}: {result['failure']}"
        for phase in PHASES:
            assert result[phase]["samples"] > 0
            assert 0 < result[phase]["p50_ms"] <= result[phase]["p99_ms"]
            assert result[phase]["p99_ms"] <= result[phase]["max_ms"]


def test_every_pinger_gets_every_pong_in_the_fixed_phases(tiny_run: dict[str, Any]) -> None:
    for result in tiny_run["paths"].values():
        for phase in ("baseline", "flooded", "dense_frames"):
            assert result[phase]["samples"] == TINY.pingers * TINY.rounds


def test_the_flooder_is_refused_and_closed_4029_and_nothing_else(
    tiny_run: dict[str, Any],
) -> None:
    for result in tiny_run["paths"].values():
        stats = result["flood"]
        assert stats["server_closes"].get("4029", 0) >= 1
        assert set(stats["server_closes"]) == {"4029"}
        assert stats["abnormal_closes"] == 0
        assert stats["wrong_replies"] == 0
        assert stats["refusals"] > 0
        # The burst of every connection is answered before the refusals start.
        assert stats["pongs"] >= 200 * stats["server_closes"]["4029"]
        assert stats["frames_sent"] > stats["pongs"] + stats["refusals"]


def test_every_bomb_gets_its_error_reply_and_leaves_the_connection_open(
    tiny_run: dict[str, Any],
) -> None:
    for result in tiny_run["paths"].values():
        assert {bomb["bomb"] for bomb in result["bomb_results"]} == set(EXPECTED)
        for bomb in result["bomb_results"]:
            assert bomb["answer"] == EXPECTED[bomb["bomb"]], bomb
            assert bomb["open_after"] is True
            assert bomb["correct"] is True
            assert bomb["ms"] > 0
        deflated = [bomb for bomb in result["bomb_results"] if "deflated" in bomb["bomb"]]
        assert [bomb["deflate_negotiated"] for bomb in deflated] == [True]


def test_server_rss_is_read_before_during_and_after_the_flood(tiny_run: dict[str, Any]) -> None:
    for result in tiny_run["paths"].values():
        memory = result["memory"]
        assert memory["rss_before_bytes"] > 10 * 2**20  # a Django process: tens of MB
        assert memory["rss_peak_sampled_bytes"] > 0
        assert memory["rss_after_bytes"] > 0
        assert isinstance(memory["met"], bool)


def test_the_report_prints_every_target(
    tiny_run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    flood.print_report(tiny_run)

    report = capsys.readouterr().out
    assert "FAILED" not in report
    for name in EXPECTED:
        assert name in report
    assert report.count("(< 50 MB)") == 2
    assert report.count("dense frames ") == 2
    assert report.count("server CPU during the dense frames") == 2


def test_the_dense_frames_are_what_they_claim_just_under_the_frame_limit() -> None:
    limit = conf.DEFAULTS["MAX_FRAME_BYTES"]
    for frame in DENSE_FRAMES:
        text = frame.build(123)
        assert limit - 128 < len(text.encode()) <= limit
        answer = protocol.parse_request(text)
        assert isinstance(answer, protocol.FrameError)
        assert answer.code == frame.expected
        assert answer.request_id == (123 if frame.echoes_id else None)
    # Without the container cap: the ping is valid, the array is not an object,
    # and the deep frame is one level too deep, not more (at 33 it is valid).
    uncapped = protocol.Limits(max_containers=10**6)
    ping = protocol.parse_request(DENSE_FRAMES[0].build(123), limits=uncapped)
    assert isinstance(ping, dict)
    assert len(ping["data"]) > 80_000
    assert all(item == [] for item in ping["data"])
    array = protocol.parse_request(DENSE_FRAMES[1].build(1), limits=uncapped)
    assert isinstance(array, protocol.FrameError)
    assert array.code == protocol.NOT_AN_OBJECT
    deep = DENSE_FRAMES[2].build(1)
    assert protocol.parse_request(deep, limits=uncapped).code == protocol.TOO_DEEP  # type: ignore[union-attr]
    deeper_allowed = protocol.Limits(max_depth=33, max_containers=10**6)
    assert isinstance(protocol.parse_request(deep, limits=deeper_allowed), dict)


def test_the_dense_client_gets_a_right_answer_to_every_frame(tiny_run: dict[str, Any]) -> None:
    byte_limit = conf.DEFAULTS["BYTE_RATE_LIMIT"]
    for result in tiny_run["paths"].values():
        dense = result["dense"]
        assert dense["connections"] == 1
        assert dense["server_closes"] == {}
        assert dense["abnormal_closes"] == 0
        assert dense["wrong_replies"] == dense["unanswered"] == 0
        # One answer per frame: the kind's own while the byte budget lasts, then refusals.
        assert sum(dense["answers"].values()) == dense["frames_sent"]
        assert dense["frames_by_kind"] == {
            frame.name: len(range(i, dense["frames_sent"], 3))
            for i, frame in enumerate(DENSE_FRAMES)
        }
        for frame in DENSE_FRAMES:  # the burst admits the first of each kind
            assert dense["answers"][frame.expected] >= 1
        # 20 frames/s of 256 KiB are 5 MiB/s: ten times the byte budget, refused beyond it.
        assert dense["answers"].get(protocol.RATE_LIMITED, 0) > 0
        admitted = dense["frames_sent"] - dense["answers"][protocol.RATE_LIMITED]
        budget = byte_limit["BURST"] + byte_limit["RATE"] * dense["seconds"]
        assert admitted * dense["bytes_sent"] / dense["frames_sent"] <= budget
        # A steady pace, never a burst: one frame at once, then one per 1/DENSE_RATE s.
        assert dense["frames_sent"] <= DENSE_RATE * dense["seconds"] + 1


def test_the_server_cpu_of_every_phase_is_read(tiny_run: dict[str, Any]) -> None:
    for result in tiny_run["paths"].values():
        for phase in PHASES:
            row = result[phase]
            assert row["seconds"] > 0
            assert row["server_cpu_seconds"] >= 0
            assert row["server_cpu_share"] == row["server_cpu_seconds"] / row["seconds"]
        # The server's clock moves in 10 ms ticks: one short phase may read 0
        # (a dense frame is refused in about a millisecond now), the run does not.
        assert sum(result[phase]["server_cpu_seconds"] for phase in PHASES) > 0


def test_a_wrong_error_code_fails_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = flood.Bomb("NaN, expecting the wrong code", lambda: "[NaN]", protocol.TOO_DEEP)
    monkeypatch.setattr(flood, "BOMBS", (wrong,))

    data = flood.measure(
        flood.FloodConfig(pingers=1, rounds=5, warm_up_rounds=1, bomb_repeats=1, paths=("async",))
    )

    failure = data["paths"]["async"]["failure"]
    assert failure is not None
    assert "NaN, expecting the wrong code" in failure
