"""What the e2e runs share: the README's hook lines, a phase command that needs the tailnet, and
what a phase that finished cleanly looks like."""

from __future__ import annotations

import shlex
import shutil

from tests.e2e.conftest import Service
from tests.e2e.spacelift import PhaseResult
from tests.install_docs import readme_hooks

UP = readme_hooks()["before_plan"]
DOWN = readme_hooks()["after_plan"]
QUIET_WITHIN = 2.0  # README: the manager stops within 2 s of the shell's exit, logout included
EOF_WITHIN = 1.0  # seconds from the phase shell's exit until its output pipe is closed


def fetch(service: Service) -> str:
    """A phase command that needs the tailnet: the service's name resolves only in the proxy."""
    url = shlex.quote(service.url)
    if shutil.which("curl"):
        get = f"curl -fsS --max-time 10 {url}"
    else:
        code = (
            "import sys, urllib.request as u; "
            "print(u.urlopen(sys.argv[1], timeout=10).read().decode())"
        )
        get = f"python3 -c {shlex.quote(code)} {url}"
    return f'body=$({get}) && [ "$body" = {shlex.quote(service.body)} ] && echo FETCHED-OK'


def assert_finished_cleanly(result: PhaseResult) -> None:
    """The container emptied itself soon after the shell exited: nothing for the worker to kill."""
    assert result.leftovers == [], result.describe()
    assert result.quiet_after is not None, result.describe()
    assert result.quiet_after <= QUIET_WITHIN, result.describe()
    # Nothing spacetail started kept the phase's output pipe open (a CI log would hang on it).
    assert result.log_eof_after is not None, result.describe()
    assert result.log_eof_after <= EOF_WITHIN, result.describe()
