"""What the README and the plugin tell a user to paste, read as the tests need it: the quick
start's shell lines, the hooks of each way of running in Spacelift, the plugin's context."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
PLUGIN_MANIFEST = REPO / "plugin" / "plugin.yaml"
PHASES = ("init", "plan", "apply", "destroy", "perform")
# The placeholder the README uses for where spacetail comes from.
ORG_URL = "https://github.com/<org>/spacetail"


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of LANGUAGE, in order."""
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)


def section(title: str) -> str:
    """The README's text under the heading TITLE (any level), up to the next heading."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r} in README.md"
    return match.group(1)


def yaml_load(text: str) -> Any:
    yaml = importlib.import_module("yaml")  # a test dependency (tox.ini)
    return yaml.safe_load(text)


def section_hooks(title: str) -> dict[str, list[str]]:
    """`stack_defaults` hooks of the first yaml block in the README section TITLE."""
    block = re.search(r"^```yaml\n(.*?)^```$", section(title), re.M | re.S)
    assert block, f"no yaml block in README section {title!r}"
    hooks = yaml_load(block.group(1))["stack_defaults"]
    assert isinstance(hooks, dict)
    return hooks


def quick_start() -> list[str]:
    """The quick start's install lines (the first sh block of its section)."""
    block = re.search(r"^```sh\n(.*?)^```$", section("Quick start"), re.M | re.S)
    assert block, "no sh block in the README's quick start"
    return [line for line in block.group(1).splitlines() if line.strip()]


def plugin_context() -> dict[str, Any]:
    data = yaml_load(PLUGIN_MANIFEST.read_text(encoding="utf-8"))
    (context,) = data["contexts"]
    assert isinstance(context, dict)
    return context


def plugin_parameters() -> dict[str, dict[str, Any]]:
    data = yaml_load(PLUGIN_MANIFEST.read_text(encoding="utf-8"))
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


def code_blocks() -> list[tuple[str, str]]:
    """Every fenced code block of the README: (language, text), in order."""
    text = README.read_text(encoding="utf-8")
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S)


def inline_code() -> list[str]:
    """The README's inline code spans, outside its code blocks."""
    text = re.sub(r"^```.*?^```$", "", README.read_text(encoding="utf-8"), flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", text)


# A call of spacetail where a shell would run it: at the start of a command (after `$(`, `;`,
# `&&`, `||`, `|`, `{`, or an opening quote of a ProxyCommand), optionally by a path.
_CALL = re.compile(r"""(?:^|(?<=[\s(;&|{'"]))(?:[\w.~-]*/)*spacetail(?=\s+[-\w])""")
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
    """The runner-image hooks of README.md ("3. The hooks"): phase hook -> its one line."""
    hooks = section_hooks("3. The hooks")
    assert all(len(lines) == 1 for lines in hooks.values()), hooks
    return {name: lines[0] for name, lines in hooks.items()}
