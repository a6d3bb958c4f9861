"""The front door stays short and every door it opens leads somewhere: README.md is read in
five minutes (200 lines at most, the reference lives in docs/), and every relative link of
README.md and the pages of docs/ points at a file of this repository (anchors are not checked)."""

from __future__ import annotations

import re

from tests import install_docs

README_LINES = 200
# [text](target) and [text](target "title"); images too. Code spans and blocks are not links.
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCED = re.compile(r"^ *```.*?^ *```$", re.M | re.S)
_SPAN = re.compile(r"`[^`\n]*`")


def relative_links(markdown: str) -> list[str]:
    """The link targets of MARKDOWN that name a file, without their anchors."""
    text = _SPAN.sub("", _FENCED.sub("", markdown))
    targets = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, or an anchor of the page itself
        targets.append(target.split("#", 1)[0])
    return targets


def test_the_readme_is_read_in_five_minutes() -> None:
    lines = install_docs.README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_every_relative_link_points_at_a_file() -> None:
    broken = []
    checked = 0
    for page in install_docs.pages():
        for target in relative_links(page.read_text(encoding="utf-8")):
            resolved = (page.parent / target).resolve()
            checked += 1
            if not resolved.exists():
                broken.append(f"{page.relative_to(install_docs.REPO)}: {target}")
    assert broken == []
    assert checked >= 30


def test_the_link_reader_sees_links_and_only_links() -> None:
    text = (
        '[a](docs/a.md) [b](b.md#x) [c](https://x.org/c.md) [d](#d) `[e](e.md)` ![f](f.png "title")'
    )
    markdown = text + "\n```\n[g](g.md)\n```\n"
    assert relative_links(markdown) == ["docs/a.md", "b.md", "f.png"]
