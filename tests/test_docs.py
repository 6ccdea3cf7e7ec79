"""The README, docs/*.md and benchmarks/*.md: every relative link names a file that exists and, after `#`, a
heading in it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """The text without fenced blocks (their `#` lines are shell comments, not headings)."""
    return FENCE.sub("", text)


def anchors(page: Path) -> Iterator[str]:
    """GitHub's anchors for a page's headings: lower case, markup and punctuation dropped, spaces as
    hyphens, a repeated heading numbered -1, -2, ..."""
    seen: dict[str, int] = {}
    for title in HEADING.findall(prose(page.read_text())):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link keeps its text
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        yield slug if count == 0 else f"{slug}-{count}"


def links(page: Path) -> list[str]:
    """The relative link targets of a page's prose (code spans and blocks are commands, not links)."""
    text = CODE.sub("", prose(page.read_text()))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def shown(path: Path) -> str:
    """A path as a message names it: from the repository root when it lies inside it."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def broken(page: Path) -> list[str]:
    wrong = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            wrong.append(f"{target}: no file {shown(linked)}")
        elif anchor and (linked.suffix != ".md" or anchor not in set(anchors(linked))):
            wrong.append(f"{target}: no heading with the anchor #{anchor} in {shown(linked)}")
    return wrong


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    if not page.is_file():
        pytest.skip("the docs are checked in a source checkout (the tests were copied without them)")
    assert broken(page) == []


def test_the_checker_sees_a_broken_file_and_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# A title: `with code`\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-title-with-code) [ok](other.md#twice-1) [ok](#here) `[code](nowhere.md)`\n"
                    "[gone](missing.md) [bad](other.md#twice-2) [web](https://example.com/x)\n\n## Here\n"
                    "```bash\n# not a heading [nor](a-link.md)\n```\n")
    assert [line.split(":")[0] for line in broken(page)] == ["missing.md", "other.md#twice-2"]
