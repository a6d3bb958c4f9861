"""The shape of the package, read from its source with ast: imports run one way (no cycle), no
command imports another, the manager's imports leave out what only the commands need (the
downloader), no signature hides a type the code knows behind a bare Any, and
docs/architecture.md names every module where it lives."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "spacetail"


def modules() -> Iterator[tuple[str, Path]]:
    """Every module, by its dotted name below the package (`commands.up`, `cli`)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield ".".join(parts), path


def _resolve(name: str, known: set[str]) -> str | None:
    """The module a dotted spacetail name refers to: itself, or the package that holds it."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports() -> dict[str, set[str]]:
    """Each module's spacetail imports: top-level, deferred and for typing alike. A package's
    `__init__` counts as the package's name (`commands`)."""
    found = dict(modules())
    known = {name.removesuffix(".__init__") for name in found}
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spacetail"):
                base = str(node.module).removeprefix("spacetail").removeprefix(".")
                names = [f"{base}.{a.name}".strip(".") for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                names = [a.name.removeprefix("spacetail.") for a in node.names
                         if a.name.startswith("spacetail.")]  # fmt: skip
            deps |= {m for n in names if n and (m := _resolve(n, known))}
        me = name.removesuffix(".__init__")
        graph[me] = deps - {me} - {p for p in known if me.startswith(p + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, set())
    return seen


def test_no_import_cycle_among_spacetail_modules() -> None:
    cycle = find_cycle(imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_reader_sees_every_form() -> None:
    graph = imports()
    assert {"state.identity", "state.verdict", "state.stopping"} <= graph["commands.up"]
    assert "manager.service" in graph["commands.foreground"]  # a deferred import counts
    assert "config.loader" in graph["commands.up"]  # so does one for typing only


def test_no_command_imports_another() -> None:
    """What two commands share lives below both (state, tailnet, config): a command module
    that imports another drags its imports and its decisions along."""
    graph = imports()
    crossing = sorted(
        f"{name} -> {dep}"
        for name, deps in graph.items()
        if name.startswith("commands.")
        for dep in deps
        if dep.startswith("commands")
    )
    assert crossing == []


def test_the_manager_never_imports_the_downloader() -> None:
    reach = closure(imports(), "manager.service")
    forbidden = {"install.installer", "install.package", "cli", "doctor"}
    assert not {m for m in reach if m in forbidden or m.startswith(("commands", "doctor"))}, sorted(
        reach
    )


def test_no_bare_any_in_a_signature() -> None:
    """JSON stays dict[str, Any]; a parameter or return typed Any alone says nothing."""
    bare = []
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            annotated = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            annotations = [a.annotation for a in annotated] + [node.returns]
            for annotation in annotations:
                if isinstance(annotation, ast.Name) and annotation.id == "Any":
                    bare.append(f"{name}:{node.lineno} {node.name}")
    assert bare == []


def test_no_class_over_400_lines_and_no_function_over_60() -> None:
    """Rooms a new maintainer can read whole: a class that grows past 400 lines, or a function
    past 60, holds more than one idea."""
    big = []
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                limit = 400 if isinstance(node, ast.ClassDef) else 60
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    big.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    assert big == []


def test_no_two_modules_share_a_name() -> None:
    """`wait.py` here and `wait.py` there, or `tailscale.py` beside `tailscaled.py`, is a name a
    maintainer mistakes; packages' `__init__` aside, each file name is used once."""
    stems = [p.stem for _, p in modules() if p.stem != "__init__"]
    assert sorted({s for s in stems if stems.count(s) > 1}) == []


def test_the_architecture_names_every_module() -> None:
    """docs/architecture.md is where a new maintainer starts: every module has its line, named
    by its path below the package (`commands/up.py`)."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = [
        str(p.relative_to(PACKAGE))
        for _, p in modules()
        if p.parent != PACKAGE or p.name not in ("__init__.py", "__main__.py")
        if f"`{p.relative_to(PACKAGE)}`" not in text
    ]
    assert missing == []
