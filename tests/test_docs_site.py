"""The documentation site's strict build (``make docs``) fails on what it must catch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"


def build(tmp_path: Path, page: str) -> subprocess.CompletedProcess[str]:
    """Build the site strictly from a copy of docs/ with one more page, ``extra.md``."""
    config = (ROOT / "mkdocs.yml").read_text()
    assert config.rstrip().endswith("- Changelog: changelog.md")  # nav comes last
    (tmp_path / "mkdocs.yml").write_text(config + "  - Extra: extra.md\n")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "src").symlink_to(ROOT / "src")
    (tmp_path / "CHANGELOG.md").symlink_to(ROOT / "CHANGELOG.md")
    (tmp_path / "example").symlink_to(ROOT / "example")  # testing.md includes the demo's tests
    (tmp_path / "docs" / "extra.md").write_text(page)
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_site_builds_strictly_with_a_sound_extra_page(tmp_path: Path) -> None:
    result = build(tmp_path, "# Extra\n\nSee [the tutorial](tutorial.md#1-install).\n")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "reference" / "registry" / "index.html").exists()
    api = (tmp_path / "site" / "reference" / "registry" / "index.html").read_text()
    assert "rohrpost_handler" in api  # rendered from the docstrings


@pytest.mark.parametrize(
    ("page", "complaint"),
    [
        ("[gone](no-such-page.md)", "no-such-page.md"),
        ("[gone](tutorial.md#no-such-heading)", "no-such-heading"),
        ("::: rohrpost.no_such_module", "rohrpost.no_such_module"),
    ],
    ids=["page", "anchor", "api"],
)
def test_a_broken_link_or_reference_fails_the_strict_build(
    tmp_path: Path, page: str, complaint: str
) -> None:
    result = build(tmp_path, f"# Extra\n\n{page}\n")
    assert result.returncode != 0
    assert complaint in result.stderr + result.stdout
