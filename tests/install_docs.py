"""What the README, the pages of docs/ and the plugin tell a user to paste, read as the tests
need it: the "Try it" install lines, the hooks of each way of running in Spacelift, the plugin's
context."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PHASES = ("init", "plan", "apply", "destroy", "perform")


def pages() -> list[Path]:
    """What a user reads: README.md, then the pages of docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def page(name: str) -> Path:
    """A page by its name in the repository: "README.md" or "docs/commands.md"."""
    path = REPO / name
    assert path in pages(), f"{name} is not README.md or a page of docs/"
    return path


def section(title: str, where: str | None = None) -> str:
    """The text under the heading TITLE (any level) of the page WHERE ("README.md",
    "docs/commands.md"), up to the next heading. Without WHERE, the one page that has it."""
    found = []
    for path in [page(where)] if where else pages():
        text = path.read_text(encoding="utf-8")
        match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
        if match:
            found.append((path.relative_to(REPO), match.group(1)))
    assert found, f"no section {title!r} in {where or 'README.md or docs/'}"
    assert len(found) == 1, f"section {title!r} is in {[str(p) for p, _ in found]}: say which"
    return found[0][1]


def yaml_load(text: str) -> Any:
    yaml = importlib.import_module("yaml")  # a test dependency (tox.ini)
    return yaml.safe_load(text)


def section_hooks(title: str, where: str | None = None) -> dict[str, list[str]]:
    """`stack_defaults` hooks of the first yaml block in the section TITLE (of the page WHERE)."""
    block = re.search(r"^```yaml\n(.*?)^```$", section(title, where), re.M | re.S)
    assert block, f"no yaml block in the section {title!r}"
    hooks = yaml_load(block.group(1))["stack_defaults"]
    assert isinstance(hooks, dict)
    return hooks


def quick_start() -> list[str]:
    """The README's install lines, run in a clone of this repository (the first sh block of
    "Try it")."""
    block = re.search(r"^```sh\n(.*?)^```$", section("Try it", "README.md"), re.M | re.S)
    assert block, "no sh block in the README's Try it"
    return [line for line in block.group(1).splitlines() if line.strip()]


def plugin_manifest() -> dict[str, Any]:
    """The plugin's manifest, generated with the pyz built from this checkout (tests/pyz.py)."""
    from tests import pyz

    data = yaml_load(pyz.plugin_manifest().read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def plugin_context() -> dict[str, Any]:
    data = plugin_manifest()
    (context,) = data["contexts"]
    assert isinstance(context, dict)
    return context


def plugin_parameters() -> dict[str, dict[str, Any]]:
    data = plugin_manifest()
    return {p["id"]: p for p in data["parameters"]}


def plugin_env(values: dict[str, str]) -> dict[str, str]:
    """The variables the plugin's context gives a run, with VALUES by parameter id (every
    other parameter at its default, as Spacelift fills a parameter left empty)."""
    params = plugin_parameters()
    unknown = set(values) - set(params)
    assert not unknown, f"the plugin has no parameter {unknown}"
    env = {}
    for variable in plugin_context()["env"]:
        pid = variable["value_from_parameter"]
        env[variable["key"]] = values.get(pid, str(params[pid]["default"]))
    return env


# A fenced block, also one indented under a list item.
_FENCED = re.compile(r"^ *```(\w*)\n(.*?)^ *```$", re.M | re.S)


def instruction_pages() -> list[Path]:
    """The pages that tell a user what to type: all but docs/faults.md, a record of what
    spacetail printed when things went wrong (its messages, and mistyped commands on purpose)."""
    return [path for path in pages() if path != DOCS / "faults.md"]


def code_blocks(paths: list[Path] | None = None) -> list[tuple[str, str]]:
    """Every fenced code block of PATHS (the README and docs/): (language, text), in order."""
    found = []
    for path in pages() if paths is None else paths:
        found += _FENCED.findall(path.read_text(encoding="utf-8"))
    return found


def inline_code(paths: list[Path] | None = None) -> list[str]:
    """The inline code spans of PATHS (the README and docs/), outside their code blocks."""
    spans = []
    for path in pages() if paths is None else paths:
        text = _FENCED.sub("", path.read_text(encoding="utf-8"))
        spans += re.findall(r"`([^`\n]+)`", text)
    return spans


# A call of spacetail where a shell would run it: at the start of a command (after `$(`, `;`,
# `&&`, `||`, `|`, `{`, or an opening quote of a ProxyCommand), optionally by a path; or the
# pyz run by python3.
_CALL = re.compile(
    r"""(?:(?:^|(?<=[\s(;&|{'"]))(?:[\w.~-]*/)*spacetail"""
    r"""|(?<=python3 )(?:[\w.~-]*/)*spacetail\.pyz)(?=\s+[-\w])"""
)
# Where that command ends: a shell operator, a closing quote or brace, a redirection.
_END = re.compile(r"""[;&|)'"}>`]""")
_OPTIONAL = re.compile(r"\$\{(\w+):\+([^}]*)\}")  # ${NAME:+WORDS}
_VARIABLE = re.compile(r"\"?\$\{?\w+\}?\"?")  # $NAME, "$NAME", ${NAME}


def _expansions(line: str) -> list[str]:
    """LINE as a shell would see it with each ${NAME:+WORDS} set and unset, and every variable
    given a plain value."""
    variants = [line]
    if _OPTIONAL.search(line):
        variants = [_OPTIONAL.sub(r"\2", line), _OPTIONAL.sub("", line)]
    return [_VARIABLE.sub("VALUE", v) for v in variants]


def spacetail_calls(text: str) -> list[str]:
    """The `spacetail ...` command lines in TEXT (a code block, or a line of one), each as the
    words after `spacetail`, joined by spaces; comments and line continuations understood."""
    text = text.replace("\\\n", " ")
    calls = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw)  # a comment (a `#` in a word stays)
        for variant in _expansions(line):
            for match in _CALL.finditer(variant):
                rest = variant[match.end() :]
                end = _END.search(rest)
                calls.append((rest[: end.start()] if end else rest).strip())
    return calls


def readme_hooks() -> dict[str, str]:
    """The runner-image hooks ("3. The hooks" of docs/other-install-paths.md): phase hook -> its
    one line."""
    hooks = section_hooks("3. The hooks", "docs/other-install-paths.md")
    assert all(len(lines) == 1 for lines in hooks.values()), hooks
    return {name: lines[0] for name, lines in hooks.items()}
