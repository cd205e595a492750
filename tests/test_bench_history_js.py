"""The JS client's resume benchmark (bench.history_js) runs end to end in a tiny configuration.

It checks what the benchmark checks (every missed push applied once, in order,
then a live one), on both layers and with and without permessage-deflate;
timings are only reported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.services import require_redis, services_required

JS_DIR = Path(__file__).resolve().parent.parent / "clients" / "js"


def require_node() -> None:
    """Skip (or fail, when services are required) without Node and the client's packages."""
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "ws").is_dir():
        reason = "node, or clients/js's node_modules (npm ci), is missing"
        if services_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def test_the_js_resume_benchmark_resumes_and_reports(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    require_node()
    redis_url = require_redis()
    from bench import history_js

    out = tmp_path / "results.json"
    argv = ["--missed", "30", "--rounds", "2", "--redis-url", redis_url, "--json", str(out)]
    assert history_js.main(argv) == 0
    report = capsys.readouterr().out
    assert "30 missed pushes, 2 resumes each" in report
    results = json.loads(out.read_text())
    keys = [f"{layer}, deflate {on}" for layer in ("memory", "redis") for on in ("on", "off")]
    assert sorted(key for key in results if key != "node") == sorted(keys)
    for key in keys:
        assert key in report
        rounds = results[key]["rounds"]
        assert len(rounds) == 2
        # The missed pushes and the live one, each applied once; the client saw no more.
        assert [each["applied"] for each in rounds] == [31, 31]
        assert all(each["frames"] >= 31 for each in rounds)
    assert "permessage-deflate" in results["memory, deflate on"]["extensions"]
    assert results["memory, deflate off"]["extensions"] == ""


def test_a_client_that_resumes_wrongly_fails_the_benchmark(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A round whose pushes do not all arrive fails: a bench that delivers nothing is not fast."""
    require_node()
    from bench import history_js

    # A history of 10 pushes cannot replay 30: the server answers with a reset.
    argv = ["--missed", "30", "--rounds", "1", "--layer", "memory", "--history-size", "10"]
    assert history_js.main(argv) == 1
    report = capsys.readouterr().out
    assert "FAILED" in report
    assert "0 of 30 pushes applied at the reply" in report
