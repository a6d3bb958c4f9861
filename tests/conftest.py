"""Fixtures: the Spacelift user's install of spacetail, per-test homes owned by uid 1983, the
fake and the real tailscale, and a check after every test that it left no process behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import helpers, realbin
from tests.ci_skips import pytest_runtest_makereport  # noqa: F401 (a hook: CI fails on skips)
from tests.mirror import PROXY_VARS, Mirror

# No example database: runs (and the mutation harness's copies) leave no .hypothesis/ behind, and
# every run explores afresh rather than replaying one machine's history.
settings.register_profile("spacetail", database=None)
settings.load_profile("spacetail")


@pytest.fixture(scope="session")
def shared_base() -> Iterator[Path]:
    """A world-traversable folder: pytest's tmp_path is private to root, uid 1983 needs access."""
    base = Path(tempfile.mkdtemp(prefix="spacetail-tests-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def userland(shared_base: Path) -> helpers.Userland:
    return helpers.build_userland(shared_base)


@pytest.fixture(scope="session")
def real_tailscale() -> Path:
    try:
        return realbin.real_tailscale_dir()
    except realbin.Unavailable as exc:
        pytest.skip(f"real tailscale binaries unavailable: {exc}")


# Each test's processes carry "<session>-<test>": the session part keeps two pytest runs on one
# machine (two developers, or a run beside the benchmark) from judging each other's processes.
# The mutation harness names the session, so that it can find what a hung run left behind.
SESSION = os.environ.get("SPACETAIL_TEST_SESSION") or os.urandom(4).hex()


@pytest.fixture
def test_id(request: pytest.FixtureRequest) -> str:
    return f"{SESSION}-{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]}"


@pytest.fixture
def home(shared_base: Path, test_id: str) -> Iterator[Path]:
    """A home folder owned by the Spacelift user, as /mnt/workspace is in a real run."""
    path = Path(tempfile.mkdtemp(prefix=f"h-{test_id[-6:]}-", dir=shared_base))
    if os.getuid() == 0:
        os.chown(path, helpers.SPACELIFT_UID, helpers.SPACELIFT_UID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fake_env(userland: helpers.Userland, home: Path, test_id: str) -> dict[str, str]:
    """Environment with the fake tailscale first on PATH and a key that logs in."""
    env = helpers.base_env(userland, userland.fakes, home, test_id)
    env["TS_AUTHKEY"] = "tskey-auth-ok-" + test_id
    env["FAKE_TAILSCALE_LOGIN_DELAY"] = "0.2"
    return env


@pytest.fixture
def real_env(
    userland: helpers.Userland, real_tailscale: Path, home: Path, test_id: str
) -> dict[str, str]:
    """Environment with the real tailscale 1.96.4 first on PATH."""
    env = helpers.base_env(userland, real_tailscale, home, test_id)
    env["TS_AUTHKEY"] = "tskey-auth-k" + test_id + "-NOTREAL"
    return env


@pytest.fixture(autouse=True)
def no_process_left(test_id: str) -> Iterator[None]:
    """Every process a test starts carries its marker; any still alive afterwards fails it."""
    yield
    leftovers = helpers.processes_with_marker(test_id)
    if leftovers:
        listing = helpers.kill_all(leftovers)
        pytest.fail(f"the test left processes behind:\n{listing}", pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite as a whole fails if any test's process outlived it."""
    leftovers = helpers.processes_with_marker(SESSION + "-", prefix=True)
    if leftovers:
        listing = helpers.kill_all(leftovers)
        print(f"\nspacetail tests left processes behind:\n{listing}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    """A tailscale package mirror on 127.0.0.1 (install-tailscale tests), no proxy in the way."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    served = Mirror()
    served.thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        served.thread.join(timeout=10)
