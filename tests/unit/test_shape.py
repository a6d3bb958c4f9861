"""The shape of the package, read from its source with ast: imports run one way (no cycle), the
manager's imports leave out what only the commands need (the downloader), and no signature hides
a type the code knows behind a bare Any."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "spacetail"


def imports() -> dict[str, set[str]]:
    """Each module's spacetail imports: top-level, deferred and for typing alike."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "spacetail":
                deps |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spacetail."):
                deps.add(str(node.module).split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {
                    a.name.split(".")[1] for a in node.names if a.name.startswith("spacetail.")
                }
        graph[path.stem] = deps - {path.stem}
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


def test_the_manager_never_imports_the_downloader() -> None:
    reach = closure(imports(), "manager")
    assert not reach & {"install", "package", "binaries", "cli", "doctor"}, sorted(reach)


def test_no_bare_any_in_a_signature() -> None:
    """JSON stays dict[str, Any]; a parameter or return typed Any alone says nothing."""
    bare = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            annotated = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            annotations = [a.annotation for a in annotated] + [node.returns]
            for annotation in annotations:
                if isinstance(annotation, ast.Name) and annotation.id == "Any":
                    bare.append(f"{path.name}:{node.lineno} {node.name}")
    assert bare == []


def test_no_class_over_400_lines_and_no_function_over_60() -> None:
    """Rooms a new maintainer can read whole: a class that grows past 400 lines, or a function
    past 60, holds more than one idea."""
    big = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                limit = 400 if isinstance(node, ast.ClassDef) else 60
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    big.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    assert big == []


def test_the_architecture_names_every_module() -> None:
    """docs/architecture.md is where a new maintainer starts: every module has its line."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = [
        p.name
        for p in PACKAGE.glob("*.py")
        if p.stem not in ("__init__", "__main__") and f"`{p.name}`" not in text
    ]
    assert missing == []
