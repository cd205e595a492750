"""The demo's own test suite (example/demo/tests), written with the test kit, passes.

It runs in a pytest of its own, under the demo's settings, as an application's
tests would: the kit's fixtures come from the plugin its pytest.ini loads, not
from rohrpost's conftest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.walkthrough import ROOT


def test_the_demos_tests_pass_with_the_kit(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_DB_PATH": str(tmp_path / "demo.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=ROOT / "example",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
    assert "failed" not in result.stdout
