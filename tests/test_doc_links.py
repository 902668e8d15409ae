"""Every relative link in the README and docs/ points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / "redis" / "schemas").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(document: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.S)  # not in code blocks
    return [target for target in LINK.findall(text)
            if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(document: Path) -> None:
    missing = [target for target in relative_links(document)
               if not (document.parent / target.split("#", 1)[0]).exists()]
    assert missing == [], f"{document.relative_to(REPO)} links to missing files: {missing}"


def test_the_readme_links_every_doc() -> None:
    linked = {Path(t).name for t in relative_links(REPO / "README.md")}
    assert {p.name for p in (REPO / "docs").glob("*.md")} <= linked
