"""The documented hook lines, taken from docs/other-install-paths.md itself, cannot pass
silently: a phase whose image lacks spacetail, or whose hook has a mistyped flag, fails before
its command runs.

`eval "$(cmd)"` succeeds when cmd is missing (command not found prints nothing on stdout, and
`eval ""` succeeds); the README's `|| echo false` turns that into a failing eval. Each test
also runs the bare form to show that the scenario does reach the command without it.
"""

from __future__ import annotations

import pytest

from tests import install_docs
from tests.e2e.spacelift import USERLAND, SpaceliftRun
from tests.install_docs import readme_hooks

pytestmark = pytest.mark.userns

BARE_UP = 'eval "$(spacetail up --env)"'
BARE_DOWN = 'eval "$(spacetail down --env)"'


def test_every_hook_line_of_the_readme_is_guarded() -> None:
    hooks = readme_hooks()
    phases = install_docs.PHASES
    assert sorted(hooks) == sorted(f"{w}_{p}" for w in ("before", "after") for p in phases)
    assert set(hooks.values()) == {
        'eval "$(spacetail up --env || echo false)"',
        'eval "$(spacetail down --env || echo false)"',
    }
    assert {hooks[f"before_{p}"] for p in phases} == {hooks["before_init"]}
    # The own-index section and the README's "Try it" use the same lines.
    stock = install_docs.section_hooks(
        "From a package index of your own", "docs/other-install-paths.md"
    )
    assert all(lines[-1] == hooks["before_init"] for k, lines in stock.items() if "before" in k)
    assert all(lines == [hooks["after_init"]] for k, lines in stock.items() if "after" in k)
    assert hooks["before_init"] in install_docs.section("Try it", "README.md")


def _without_spacetail(run: SpaceliftRun) -> None:
    # The image's PATH, less the folder that holds spacetail (the fake tailscale stays).
    run.env["PATH"] = f"{USERLAND}/fakes:/usr/local/bin:/usr/bin:/bin"


def test_a_phase_without_spacetail_on_path_stops_before_its_command(
    spacelift_run: SpaceliftRun,
) -> None:
    run = spacelift_run
    hooks = readme_hooks()
    _without_spacetail(run)
    result = run.phase(
        "planning", "echo COMMAND-RAN", before=[hooks["before_plan"]], after=[hooks["after_plan"]]
    )
    assert result.status not in (0, None), result.describe()
    assert "COMMAND-RAN" not in result.log, result.describe()
    assert "spacetail" in result.log and "not found" in result.log, result.describe()


def test_without_the_guard_the_same_phase_runs_its_command_off_the_tailnet(
    spacelift_run: SpaceliftRun,
) -> None:
    run = spacelift_run
    _without_spacetail(run)
    result = run.phase("planning", "echo COMMAND-RAN", before=[BARE_UP], after=[BARE_DOWN])
    assert result.status == 0, result.describe()
    assert "COMMAND-RAN" in result.log, result.describe()


@pytest.mark.parametrize("typo", ["up --env --bogus-flag", "up --evn", "upp --env"])
def test_a_mistyped_hook_stops_the_phase(spacelift_run: SpaceliftRun, typo: str) -> None:
    run = spacelift_run
    line = readme_hooks()["before_apply"]
    assert "up --env" in line
    result = run.phase(
        "applying",
        "echo COMMAND-RAN",
        before=[line.replace("up --env", typo, 1)],
        after=[readme_hooks()["after_apply"]],
    )
    assert result.status not in (0, None), result.describe()
    assert "COMMAND-RAN" not in result.log, result.describe()
    assert "usage: spacetail" in result.log or "invalid choice" in result.log, result.describe()


def test_a_mistyped_flag_without_the_guard_runs_the_command(spacelift_run: SpaceliftRun) -> None:
    run = spacelift_run
    result = run.phase(
        "applying", "echo COMMAND-RAN", before=['eval "$(spacetail up --evn)"'], after=[BARE_DOWN]
    )
    assert result.status == 0, result.describe()
    assert "COMMAND-RAN" in result.log, result.describe()
