"""tests/README.md's index, from each promise of the README and the pages of docs/ to the tests
that guard it, is kept complete and true: the quotes are the README's or a page's, the tests
exist, nothing the README promises up front or a mutant guards is left out, and no test module
goes uncited."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests import install_docs
from tests.mutants.catalog import MUTANTS

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def flat(text: str) -> str:
    return " ".join(text.split())


def index() -> list[tuple[str, list[str]]]:
    """(quote, [test ids relative to tests/]) for each row of the promise table."""
    text = (TESTS / "README.md").read_text()
    table = text.split("## Promises and the tests that guard them", 1)[1]
    rows = []
    for line in table.splitlines():
        m = re.match(r'^\| "(.+)" \| (.+) \|$', line)
        if m:
            rows.append((m.group(1), re.findall(r"`([\w/]+\.py(?:::\w+)?)`", m.group(2))))
    return rows


def test_the_index_has_rows() -> None:
    assert len(index()) >= 20


def test_every_quote_is_the_readmes_or_a_pages() -> None:
    """Each quote is in README.md or in one of the pages of docs/ (the reference moved there)."""
    pages = [flat(path.read_text()) for path in install_docs.pages()]
    missing = [quote for quote, _ in index() if not any(flat(quote) in p for p in pages)]
    assert missing == []


def test_every_cited_test_exists() -> None:
    missing = []
    for _quote, tests in index():
        for test in tests:
            path, _, name = test.partition("::")
            file = TESTS / path
            if not file.is_file():
                missing.append(test)
                continue
            if name:
                names = {
                    n.name
                    for n in ast.parse(file.read_text()).body
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                }
                if name not in names:
                    missing.append(test)
    assert missing == []


def test_every_up_front_promise_of_the_readme_is_indexed() -> None:
    """Each bullet of "Why it is not just `tailscaled &`" holds at least one indexed quote."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Why it is not just `tailscaled &`", 1)[1].split("\n## ", 1)[0]
    bullets = [flat(b) for b in re.split(r"\n- ", section)[1:]]
    quotes = [flat(quote) for quote, _ in index()]
    bare = [b[:60] for b in bullets if not any(q in b for q in quotes)]
    assert len(bullets) >= 5 and bare == []


def test_every_test_module_is_cited() -> None:
    cited = {t.partition("::")[0] for _quote, tests in index() for t in tests}
    modules = {
        str(p.relative_to(TESTS))
        for folder in ("integration", "faults", "e2e")
        for p in (TESTS / folder).glob("test_*.py")
    }
    assert sorted(modules - cited) == []


def test_every_test_a_mutant_names_is_cited() -> None:
    cited = {t for _quote, tests in index() for t in tests}
    cited_files = {t for t in cited if "::" not in t}
    missing = []
    for mutant in MUTANTS:
        for test in mutant.tests:
            short = test.removeprefix("tests/").split("[")[0]
            if short not in cited and short.partition("::")[0] not in cited_files:
                missing.append(f"{mutant.name}: {short}")
    assert missing == []
