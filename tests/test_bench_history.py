"""The history benchmark (bench.history) runs end to end in a tiny configuration."""

from __future__ import annotations

import shutil

import pytest

from tests.services import services_required


def test_the_history_benchmark_resumes_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("redis-server") is None:
        if services_required():
            pytest.fail("redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed")
    from bench import history

    assert history.main(["--missed", "20", "--rounds", "1"]) == 0
    report = capsys.readouterr().out
    assert "history: 20 missed pushes, 1 resumes" in report
    assert "resume until live: median" in report
    assert "Redis memory per group holding 1000 pushes" in report
