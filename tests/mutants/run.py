"""Apply each deliberate bug of catalog.py, one at a time, to a temporary copy of the repository
and run only the tests that guard it: every bug must make them fail ("killed").

    python -m tests.mutants [NAME ...]       # all, or the named ones
    python -m tests.mutants --list
    python -m tests.mutants --baseline [NAME ...]   # the guarding tests pass without the bugs
    python -m tests.mutants --check [NAME ...]      # only whether each bug still fits the code

Before a bug's tests run, the mutated tree must still type-check (`mypy --strict spacetail`,
its cache warmed once on the unmutated copy) and its module must import: a bug that does not
(a patch naming an attribute the code no longer has) would "die" of an AttributeError instead
of its bug, so it is "stale", never "killed".

Prints a table (bug, promise, killed/survived, time) and exits 1 if a bug survived, a patch no
longer applies (its function is gone, or the old text is not in it exactly once, or the patched
tree no longer type-checks or imports), or the tests could not run. The working tree is never
touched."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests import helpers
from tests.mutants.catalog import MUTANTS, Mutant

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 600.0  # per bug: a bug that hangs its tests counts as killed, and is stopped
SKIP = shutil.ignore_patterns(
    ".git", ".tox", ".ci-venv", "__pycache__", ".hypothesis", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", "*.egg-info", "build", "dist",
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    verdict: str  # killed, survived, stale, error; with --baseline: passes, fails
    seconds: float
    detail: str = ""


def function_span(source: str, qualname: str) -> tuple[int, int] | None:
    """Character offsets of the def named QUALNAME ("Class.method" or "function")."""
    body: list[ast.stmt] = ast.parse(source).body
    node: ast.stmt | None = None
    for part in qualname.split("."):
        node = next(
            (
                n
                for n in body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and n.name == part
            ),
            None,
        )
        if node is None:
            return None
        body = node.body
    assert node is not None and node.end_lineno is not None
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts[node.lineno - 1], starts[node.end_lineno]


def patched(source: str, mutant: Mutant) -> str:
    """SOURCE with the bug in; ValueError saying why when the patch no longer fits."""
    span = function_span(source, mutant.function)
    if span is None:
        raise ValueError(f"{mutant.function} not found in {mutant.file}")
    start, end = span
    found = source[start:end].count(mutant.old)
    if found != 1:
        raise ValueError(f"old text found {found} times in {mutant.file}:{mutant.function}")
    text = source[:start] + source[start:end].replace(mutant.old, mutant.new) + source[end:]
    try:
        compile(text, mutant.file, "exec")
    except SyntaxError as exc:
        raise ValueError(f"the patched {mutant.file} does not compile: {exc}") from None
    return text


def _stop_leftovers(proc: subprocess.Popen[str], session: str) -> None:
    """After a timeout: the test run's process group, then whatever its tests started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    helpers.kill_all(helpers.processes_with_marker(session + "-", prefix=True))


def run_tests(copy: Path, mutant: Mutant, env: dict[str, str]) -> tuple[str, str]:
    """(verdict, detail) for the guarding tests of MUTANT, run in COPY."""
    session = "mut" + os.urandom(3).hex()
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-header",
            "-o", "addopts=--strict-markers -rfEs", *mutant.tests]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=copy, env={**env, "SPACETAIL_TEST_SESSION": session},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        _stop_leftovers(proc, session)
        return "killed", f"the tests hung past {TIMEOUT:.0f}s"
    last = "\n".join(output.strip().splitlines()[-6:])
    if proc.returncode == 1:
        failed = [x for x in output.splitlines() if x.startswith(("FAILED", "ERROR"))]
        return "killed", (failed[0] if failed else last)
    if proc.returncode == 0:
        return ("survived", last)
    return "error", f"pytest exited {proc.returncode}:\n{last}"


def module_of(file: str) -> str:
    """The dotted module of a repository path: spacetail/log.py is spacetail.log."""
    return file.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def type_errors(copy: Path, env: dict[str, str]) -> str | None:
    """mypy's complaints about COPY's package, or None when it type-checks. Its cache lives in
    the copy: the first run (on the unmutated tree) warms it, each later one rechecks only the
    mutated module and what depends on it."""
    argv = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(copy / ".mypy_cache"),
            "--no-error-summary", "spacetail"]  # fmt: skip
    out = subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True, check=False)
    if out.returncode == 0:
        return None
    return (out.stdout + out.stderr).strip() or f"mypy exited {out.returncode}"


def stale_reason(copy: Path, mutant: Mutant, env: dict[str, str]) -> str | None:
    """Why the mutated copy cannot be judged by its tests (it no longer type-checks, or its
    module no longer imports), or None."""
    errors = type_errors(copy, env)
    if errors is not None:
        lines = errors.splitlines()
        return "the patched tree does not type-check: " + "\n".join(lines[:5])
    module = module_of(mutant.file)
    argv = [sys.executable, "-c", f"import {module}"]
    out = subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return f"the patched {module} does not import: {last}"
    return None


def check_import(copy: Path, env: dict[str, str]) -> None:
    """The tests must import the copy's spacetail, not an installed one."""
    out = subprocess.run(
        [sys.executable, "-c", "import spacetail; print(spacetail.__file__)"],
        cwd=copy, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    if not Path(out.stdout.strip()).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"mutants: the tests would import {out.stdout.strip()}, not the copy")


def run_all(selected: list[Mutant], baseline: bool = False, check: bool = False) -> list[Outcome]:
    """Each bug in turn; with BASELINE, the same tests without the bug (they must pass); with
    CHECK, no test at all: whether each bug still fits, type-checks and imports ("fits")."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="spacetail-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=SKIP)
        env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
        check_import(copy, env)
        errors = type_errors(copy, env)  # warms the cache; the unmutated tree must pass
        if errors is not None:
            raise SystemExit(f"mutants: the tree does not type-check without a bug:\n{errors}")
        for mutant in selected:
            outcome = _one(copy, mutant, env, baseline=baseline, check=check)
            outcomes.append(outcome)
            line = outcome.detail.splitlines()[-1] if outcome.detail else ""
            print(f"{mutant.name}: {outcome.verdict} in {outcome.seconds:.1f}s: {line}", flush=True)
    return outcomes


def _one(
    copy: Path, mutant: Mutant, env: dict[str, str], *, baseline: bool, check: bool
) -> Outcome:
    """One bug: patched in, checked, its tests run, the file restored whatever happens."""
    target = copy / mutant.file
    try:
        original = target.read_text()
    except FileNotFoundError:  # the code moved away from the bug: stale, not a crash of the run
        return Outcome(mutant, "stale", 0.0, f"{mutant.file}: no such file")
    started = time.monotonic()
    try:
        text = patched(original, mutant)
    except (ValueError, SyntaxError) as exc:
        return Outcome(mutant, "stale", 0.0, str(exc))
    try:
        if not baseline:
            target.write_text(text)
            stale = stale_reason(copy, mutant, env)
            if stale is not None:
                return Outcome(mutant, "stale", time.monotonic() - started, stale)
        if check:
            return Outcome(mutant, "fits", time.monotonic() - started)
        verdict, detail = run_tests(copy, mutant, env)
        if baseline:  # without the bug the guarding tests must pass
            verdict = {"survived": "passes", "killed": "fails"}.get(verdict, verdict)
    finally:
        target.write_text(original)
    return Outcome(mutant, verdict, time.monotonic() - started, detail)


def table(outcomes: list[Outcome]) -> str:
    rows = [("bug", "promise it breaks", "result", "time")]
    rows += [(o.mutant.name, o.mutant.promise, o.verdict, f"{o.seconds:.1f}s") for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in rows]  # fmt: skip
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(args: list[str]) -> int:
    if "--list" in args:
        for m in MUTANTS:
            print(f"{m.name}: {m.promise} ({m.file}:{m.function}) -> {' '.join(m.tests)}")
        return 0
    modes = {"--baseline", "--check"}
    unknown = sorted(set(args) - {m.name for m in MUTANTS} - modes)
    if unknown:
        print(f"mutants: unknown bug(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    baseline, check = "--baseline" in args, "--check" in args
    args = [a for a in args if a not in modes]
    selected = [m for m in MUTANTS if not args or m.name in args]
    started = time.monotonic()
    outcomes = run_all(selected, baseline, check)
    print("\n" + table(outcomes))
    good = "passes" if baseline else "fits" if check else "killed"
    bad = [o for o in outcomes if o.verdict != good]
    for o in bad:
        print(f"\n{o.mutant.name} {o.verdict}:\n{o.detail}")
    stale = sum(o.verdict == "stale" for o in outcomes)
    if stale:
        print(f"\n{stale} stale bug(s): move file/function/old to where the code lives now")
    what = ("test selections pass without their bug" if baseline
            else "bugs fit the code" if check else "bugs killed")  # fmt: skip
    print(f"\n{len(outcomes) - len(bad)} of {len(outcomes)} {what} "
          f"in {time.monotonic() - started:.0f}s")  # fmt: skip
    return 1 if bad else 0
