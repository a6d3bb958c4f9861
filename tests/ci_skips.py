"""In CI (CI=true) a test that needs a real part and skips because the part is missing is a
failure: a green run must mean the real tailscaled, the containers and the real clients were
there. Outside CI such a test still skips, saying why. Loaded by tests/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

# Markers of the tests that need a real part: the real tailscale binaries, user namespaces (the
# emulated Spacelift containers), a real client or server (PostgreSQL, OpenSSH, ...).
REAL_PARTS = ("real", "userns", "real_client")
# A fixture that fetches the real binaries says so in its skip, marked or not.
REAL_REASONS = ("real tailscale binaries unavailable",)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.skipped or os.environ.get("CI") != "true":
        return report
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    needs_real = any(item.get_closest_marker(name) for name in REAL_PARTS)
    if not needs_real and not any(text in reason for text in REAL_REASONS):
        return report
    report.outcome = "failed"
    report.longrepr = f"CI=true: a missing real part fails the run instead of skipping: {reason}"
    return report
