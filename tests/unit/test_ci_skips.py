"""With CI=true, a test needing a real part that skips fails the run; other skips stay skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

SAMPLE = """
import pytest

@pytest.mark.real
def test_needs_real_binaries():
    pytest.skip("real tailscale binaries unavailable: no network")

@pytest.mark.userns
@pytest.mark.skipif(True, reason="unshare: operation not permitted")
def test_needs_containers():
    pass

def test_unmarked_but_fetching_the_binaries():
    pytest.skip("real tailscale binaries unavailable: no network")

def test_optional_tool():
    pytest.skip("no bash here")
"""


def run_sample(tmp_path: Path, ci: str | None) -> tuple[int, str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.ci_skips", "-p", "no:cacheprovider",
         "-W", "ignore::pytest.PytestUnknownMarkWarning", "-o", "addopts=", "-rA",
         "--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout.splitlines()[-1]


def test_in_ci_real_part_skips_fail(tmp_path: Path) -> None:
    code, summary = run_sample(tmp_path, "true")
    # A skip in the test body fails it; a skip mark (setup) becomes an error: both fail the run.
    assert code == 1 and "2 failed, 1 skipped, 1 error" in summary, summary


def test_outside_ci_they_skip(tmp_path: Path) -> None:
    for ci in (None, "false"):
        code, summary = run_sample(tmp_path, ci)
        assert code == 0 and "4 skipped" in summary, summary
