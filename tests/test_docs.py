"""The documentation states what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from rohrpost import protocol

ROOT = Path(__file__).resolve().parent.parent


def _codes_table() -> dict[str, str]:
    text = (ROOT / "docs" / "protocol.md").read_text()
    block = text.split("<!-- error-codes:start")[1].split("<!-- error-codes:end -->")[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (.+?) \|$", block, flags=re.MULTILINE)
    return dict(rows)


def test_protocol_md_lists_every_error_code_with_its_meaning() -> None:
    assert _codes_table() == protocol.ERROR_CODES


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme


def test_changelog_has_an_unreleased_section() -> None:
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
