"""Smoke test of the sync pool benchmark (``python -m bench.sync_pool``) in a tiny configuration.

It starts the real uvicorn servers and real clients, so it proves that the
benchmark runs and checks every reply; it asserts nothing about timing (the
targets are for a full run on a quiet machine).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bench import sync_pool

from tests.services import POSTGRES, require_service

pytestmark = pytest.mark.e2e

TINY = ["--busy", "3", "--seconds", "1", "--threads", "2", "--rounds", "1"]


@pytest.fixture(autouse=True)
def test_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PostgreSQL workloads use the tests' database, not the benchmark's."""
    require_service("PostgreSQL", str(POSTGRES["HOST"]), int(POSTGRES["PORT"]))
    monkeypatch.setattr(sync_pool, "PGDATABASE", POSTGRES["NAME"])


def test_each_database_runs_on_both_consumers_and_reports_ratios() -> None:
    args = sync_pool.parse_args([*TINY, "--workload", "pg-2ms", "--workload", "sqlite"])
    data = asyncio.run(sync_pool.run(args))
    assert set(data["results"]) == {
        f"{workload}/{consumer}"
        for workload in ("pg-2ms", "sqlite")
        for consumer in sync_pool.CONSUMERS
    }
    for key, result in data["results"].items():
        assert result["failure"] is None, f"{key}: {result['failure']}"
        for side in ("one_thread", "pool"):
            assert result[side]["calls_per_second"] > 0
            assert result[side]["probe_calls"] > 0
        assert result["calls_ratio"] > 0
    sync_pool.print_report(data)


def test_a_wrong_reply_fails_the_run(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """The query answers 1; a benchmark expecting 2 must report a failure, not a figure."""
    measure = sync_pool.measure

    async def expecting_two(url: str, args: Any, expected: Any) -> Any:
        return await measure(url, args, expected=2)

    monkeypatch.setattr(sync_pool, "measure", expecting_two)
    assert sync_pool.main([*TINY, "--workload", "sqlite", "--consumer", "sync"]) == 1
    assert "FAILED: WrongReply" in capsys.readouterr().out
