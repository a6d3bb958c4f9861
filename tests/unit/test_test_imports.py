"""The shape of the tests, read from their source with ast: no test module imports another test
module (what two tests share lives in a helper module: helpers.py, faultkit.py, waiting.py,
fidelity.py, ...), and there is one poll helper (tests/waiting.py), not one per module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SUITES = ("unit", "integration", "faults", "e2e")


def modules_of_tests() -> Iterator[tuple[str, Path]]:
    for path in sorted(TESTS.rglob("test_*.py")):
        yield ".".join(path.relative_to(TESTS.parent).with_suffix("").parts), path


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return (
        len(parts) >= 3
        and parts[0] == "tests"
        and parts[1] in SUITES
        and (parts[2].startswith("test_"))
    )


def test_no_test_module_imports_another() -> None:
    offenders = {
        name: sorted(n for n in imported(path) if is_test_module(n))
        for name, path in modules_of_tests()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_reader_sees_a_test_module() -> None:
    assert is_test_module("tests.e2e.test_spacelift_runs.fetch")
    assert is_test_module("tests.unit.test_shape")
    assert not is_test_module("tests.e2e.phases") and not is_test_module("tests.helpers")


def test_one_poll_helper() -> None:
    waiters = {"poll", "wait_until", "wait_for"}
    found = [
        f"{path.relative_to(TESTS)}:{node.name}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != "waiting.py" and "fakes" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name in waiters
    ]
    assert found == []
