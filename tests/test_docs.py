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


MARKDOWN = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "bench" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """The GitHub anchors of a Markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def _local_links() -> list[tuple[Path, str]]:
    return [
        (source, target)
        for source in MARKDOWN
        for target in _LINK.findall(source.read_text())
        if not target.startswith(("http://", "https://", "mailto:"))
    ]


def test_every_local_link_in_the_docs_leads_somewhere() -> None:
    broken = []
    for source, target in _local_links():
        file_part, _, anchor = target.partition("#")
        path = (source.parent / file_part).resolve() if file_part else source
        if not path.exists():
            broken.append(f"{source.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{source.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []
    assert len(_local_links()) > 20  # the check looked at the links at all
