"""The README and the pages of docs/ say only what the program takes: every `spacetail ...`
command line of their code blocks (shell, YAML hooks, ini, HCL), every whole command in their
text, and every synopsis and flag of the reference's tables goes through the real argument
parser (cli.build_parser, parse_args: nothing runs), so a line a user would paste and spacetail
would refuse fails the suite."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex

from spacetail import cli
from tests import install_docs

# What each placeholder of the README's synopses stands for, to parse them as a user's line.
SAMPLES = {
    "HOST": "db.example.ts.net", "PORT": "5432", "NAME": "db.internal.example.com",
    "DIR": "/tmp/spacetail", "COMMAND": "status", "CMD": "terraform", "ARGS": "plan",
    "URL": "https://pkgs.example.com/stable", "ADDR": "127.0.0.1", "LPORT": "15432",
    "D": "90s", "N": "40", "V": "1.96.4", "A": "arm64", "H": "fake-peer", "PID": "1",
    "HEX": "0" * 64,
}  # fmt: skip
_PLACEHOLDER = re.compile(r"(?<![-\w])[A-Z]+(?![\w])")


def refused(words: list[str]) -> str | None:
    """None when spacetail's parser takes WORDS (the arguments after `spacetail`), else what it
    says. --help and --version count as taken (exit 0)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli.build_parser(words).parse_args(words)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return err.getvalue().strip().splitlines()[-1]
    return None


def concrete(synopsis: str) -> list[list[str]]:
    """A synopsis such as `down [--env] [--[no-]logout]` as the lines a user could type: every
    optional part given, each `--[no-]x` both ways, each placeholder a sample value."""
    variants = [synopsis.replace("--[no-]", "--"), synopsis.replace("--[no-]", "--no-")]
    lines = []
    for text in dict.fromkeys(variants):
        text = text.replace("...", "").replace("[", "").replace("]", "")
        unknown = set(_PLACEHOLDER.findall(text)) - set(SAMPLES)
        assert not unknown, f"give the README's placeholder(s) {unknown} a sample here"
        lines.append(shlex.split(_PLACEHOLDER.sub(lambda m: SAMPLES[m.group()], text)))
    return lines


def test_the_checker_refuses_what_spacetail_refuses() -> None:
    """So that the tests below could fail: each of these is a line spacetail refuses."""
    for line in ('eval "$(spacetail up --evn || echo false)"', "spacetail upp --env",
                 "spacetail up --dir /tmp/x", "spacetail wait --wait-for db:5432"):  # fmt: skip
        (words,) = [shlex.split(c) for c in install_docs.spacetail_calls(line)]
        assert refused(words), line
    assert refused(["--dir", "/tmp/x", "up", "--env"]) is None
    assert install_docs.spacetail_calls(
        'x || spacetail install-tailscale ${M:+--base-url "$M"}  # a comment'
    ) == ["install-tailscale --base-url VALUE", "install-tailscale"]
    assert install_docs.spacetail_calls("command -v spacetail >/dev/null && cd spacetail") == []


def test_every_command_line_of_the_readme_code_blocks_parses() -> None:
    """Blocks without a language are diagrams (docs/architecture.md) or a program's output."""
    found: dict[str, int] = {}
    for language, block in install_docs.code_blocks(install_docs.instruction_pages()):
        if not language:
            continue
        for call in install_docs.spacetail_calls(block):
            found[language] = found.get(language, 0) + 1
            problem = refused(shlex.split(call))
            assert problem is None, f"docs ({language} block): `spacetail {call}`: {problem}"
    # The hooks (YAML), the quick start (sh) and the ProxyCommands (sh, ini) were all read.
    assert found.get("yaml", 0) >= 10 and found.get("sh", 0) >= 3 and found.get("ini") == 1


def test_every_whole_command_in_the_readme_text_parses() -> None:
    """Inline commands such as `spacetail down --logout` or a ProxyCommand in a sentence; a
    bare `spacetail nc` names a command, which must be one."""
    checked = 0
    for span in install_docs.inline_code(install_docs.instruction_pages()):
        for call in install_docs.spacetail_calls(span):
            if call == "--version":  # the program's own flag, not a command
                continue
            if " " not in call:
                assert call in cli.COMMANDS, f"README: `{span}`: no such command"
                continue
            for words in concrete(call):
                problem = refused(words)
                assert problem is None, f"README: `{span}`: {problem}"
                checked += 1
    assert checked >= 20


def _section_rows(title: str, where: str) -> list[list[str]]:
    rows = []
    for line in install_docs.section(title, where).splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_every_synopsis_of_the_commands_table_parses() -> None:
    rows = _section_rows("Commands", "docs/commands.md")[1:]
    assert len(rows) == len(cli.COMMANDS)
    for first, *_ in rows:
        (synopsis,) = re.findall(r"`spacetail ([^`]+)`", first)
        for words in concrete(synopsis):
            assert refused(words) is None, f"README commands table: `spacetail {synopsis}`"


def options_of(command: str) -> set[str]:
    """The option strings COMMAND takes, as its parser has them."""
    parser = cli.build_parser([command])
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices[command]._option_string_actions)


def flags_in(span: str) -> set[str]:
    words = " ".join(" ".join(w) for w in concrete(span)).split()
    return {w.split("=")[0] for w in words if w.startswith("-")}


def test_every_flag_of_the_configuration_table_is_one_up_takes() -> None:
    """The column says `up`'s flag: one that goes elsewhere (`wait --target`, `spacetail --dir`
    before the command) says so, and is checked there."""
    table = _section_rows("Configuration reference", "docs/configuration.md")
    rows = [r for r in table[1:] if r[1]]
    assert len(rows) >= 20
    up, wait = options_of("up"), options_of("wait")
    for variable, column, *_ in rows:
        for span in re.findall(r"`([^`]+)`", column):
            if span.startswith("spacetail "):
                for words in concrete(span.removeprefix("spacetail ")):
                    assert refused(words) is None, f"README: {variable}: `{span}`"
            elif span.startswith("wait "):
                assert flags_in(span) <= wait, f"README: {variable}: `{span}`"
            else:
                assert flags_in(span), f"README: {variable}: `{span}` names no flag"
                assert flags_in(span) <= up, f"README: {variable}: `{span}` is not up's"


def test_the_table_checks_would_see_a_flag_in_the_wrong_place() -> None:
    assert "--dir" not in options_of("up") and "--wait-for" not in options_of("wait")
    assert {"--wait-for", "--progress", "--no-progress"} <= options_of("up")
    assert {"--target", "--peer", "--timeout", "--no-progress"} <= options_of("wait")
    assert flags_in("--[no-]accept-routes") == {"--accept-routes", "--no-accept-routes"}
    assert flags_in("--forward [ADDR:]LPORT=HOST:PORT") == {"--forward"}


def test_the_runtime_dependencies_named_are_the_packages() -> None:
    import tomllib

    pyproject = tomllib.loads((install_docs.REPO / "pyproject.toml").read_text())
    wanted = {re.split(r"[<>=!~ ]", d)[0] for d in pyproject["project"]["dependencies"]}
    text = install_docs.section("Dependencies", "docs/development.md")
    paragraph = text[text.index("Runtime dependencies:") :].split(". ")[0]
    named = re.findall(r"`([\w-]+)`", re.sub(r"\([^)]*\)", "", paragraph))  # not what uses them
    assert set(named) == wanted, paragraph
