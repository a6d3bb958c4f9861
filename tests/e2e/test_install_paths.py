"""The ways of installing spacetail in Spacelift, run as users paste them: the README's
stock-image hooks and the Spacelift plugin's hooks (from the generated plugin.yaml), taken
literally, across plan and apply in separate containers, on Debian's externally managed
(PEP 668) python3 with no spacetail and no tailscale in the image.

Nothing here reaches the internet: pip gets spacetail and its dependencies as wheels built
from this repository (PIP_NO_INDEX and PIP_FIND_LINKS, pip's own variables), and
`spacetail install-tailscale` gets tailscale from the loopback mirror (SPACETAIL_TAILSCALE_MIRROR,
which install-tailscale reads). The mirror's package holds the fake tailscale (tests/fakes/bin),
as two-line wrappers, so its sum is not the pinned one: the run gives it in
SPACETAIL_TAILSCALE_SHA256, as a context would for a package of its own.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from spacetail.install import installer, package, pins
from tests import helpers, install_docs, terraform_module
from tests.e2e.conftest import Service
from tests.e2e.phases import assert_finished_cleanly, fetch
from tests.e2e.spacelift import PhaseResult, SpaceliftRun
from tests.mirror import Mirror

pytestmark = pytest.mark.userns

STOCK_PATH = "/usr/local/bin:/usr/bin:/bin"  # the image's own tools; no spacetail, no tailscale
SYSTEM_PYTHON = Path("/usr/bin/python3")
VENV = ".spacetail-venv"
DEADLINE = 90.0  # a phase that builds a virtualenv and installs wheels
TERRAFORM_RAN = "TERRAFORM-RAN"
PACKAGE = package.package_name(pins.DEFAULT_VERSION, installer.tailscale_arch())


def _require(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def wheelhouse(shared_base: Path) -> Path:
    """spacetail's wheel, built from this repository, and its dependencies' wheels."""
    target = shared_base / "wheelhouse"
    if not target.is_dir():
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(target), str(helpers.REPO)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(p.name.split("-")[0] for p in target.glob("*.whl"))
    assert {"spacetail", "filelock", "platformdirs"} <= set(names), names
    return target


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o755
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def tailscale_mirror(mirror: Mirror, userland: helpers.Userland) -> Mirror:
    """The pinned version's package, holding wrappers that run the fake tailscale."""
    version, arch = pins.DEFAULT_VERSION, installer.tailscale_arch()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in pins.EXECUTABLES:
            wrapper = f'#!/bin/sh\nexec /mnt/userland/fakes/{name} "$@"\n'
            _add(tar, f"tailscale_{version}_{arch}/{name}", wrapper.encode())
    mirror.publish(version, arch, buffer.getvalue())
    return mirror


@pytest.fixture
def stock_run(
    spacelift_run: SpaceliftRun, wheelhouse: Path, tailscale_mirror: Mirror
) -> SpaceliftRun:
    """A run on a stock image: Debian's python3, nothing of ours on PATH."""
    _require(
        (SYSTEM_PYTHON.parent.parent / "lib").is_dir()
        and any(SYSTEM_PYTHON.parent.parent.glob("lib/python3*/EXTERNALLY-MANAGED")),
        "the stock-image tests need Debian's externally managed /usr/bin/python3",
    )
    check = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import ensurepip, venv"], capture_output=True, check=False
    )
    _require(
        check.returncode == 0, "/usr/bin/python3 cannot make a venv: apt-get install python3-venv"
    )
    run = spacelift_run
    run.deadline = DEADLINE
    wheels = run.workspace / ".wheels"
    shutil.copytree(wheelhouse, wheels)
    for path in [wheels, *wheels.iterdir()]:
        os.chown(path, helpers.SPACELIFT_UID, helpers.SPACELIFT_UID)
    run.env.update(
        {
            "PATH": STOCK_PATH,
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": "/mnt/workspace/.wheels",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "SPACETAIL_TAILSCALE_MIRROR": tailscale_mirror.base_url,
            "SPACETAIL_TAILSCALE_SHA256": hashlib.sha256(
                tailscale_mirror.files[f"/stable/{PACKAGE}"]
            ).hexdigest(),
        }
    )
    return run


def plan_and_apply(
    run: SpaceliftRun, hooks: Mapping[str, list[str]], command: str
) -> tuple[PhaseResult, PhaseResult]:
    plan = run.phase("planning", command, before=hooks["before_plan"], after=hooks["after_plan"])
    apply = run.phase("applying", command, before=hooks["before_apply"], after=hooks["after_apply"])
    return plan, apply


def assert_installed_once(run: SpaceliftRun, mirror: Mirror, plan: PhaseResult,
                          apply: PhaseResult) -> None:  # fmt: skip
    assert plan.hostname != apply.hostname
    for phase in (plan, apply):
        assert phase.status == 0, phase.describe()
        assert "FETCHED-OK" in phase.log, phase.describe()
        assert_finished_cleanly(phase)
    venv_python = run.workspace / VENV / "bin" / "python3"
    assert (run.workspace / VENV / "bin" / "spacetail").is_file()
    assert os.path.realpath(venv_python) == os.path.realpath(SYSTEM_PYTHON)
    # The first phase downloaded tailscale; the second, in a fresh container, found it.
    assert "sha256 verified (--sha256)" in plan.log, plan.describe()
    assert "already installed" in apply.log, apply.describe()
    assert mirror.package_requests(PACKAGE) == 1
    # The venv's bin was added to PATH once, at its end, and carried to the next phase.
    saved = run.saved_env()
    assert saved.count(f"/mnt/workspace/{VENV}/bin") == 1, saved
    assert f":/mnt/workspace/{VENV}/bin" in saved


def test_readme_stock_image_hooks_across_plan_and_apply(
    stock_run: SpaceliftRun, tailscale_mirror: Mirror, tailnet_service: Service
) -> None:
    hooks = install_docs.section_hooks("Without a custom image")
    assert hooks["before_plan"] == (
        terraform_module.hooks()["install"] + terraform_module.hooks()["up"]
    )
    plan, apply = plan_and_apply(stock_run, hooks, fetch(tailnet_service))
    assert_installed_once(stock_run, tailscale_mirror, plan, apply)


def _plugin_run(run: SpaceliftRun, values: dict[str, str]) -> SpaceliftRun:
    """The plugin's context variables, from its parameters, replace the tailnet's key."""
    for name in ("TS_AUTHKEY", "TS_AUTH_KEY"):
        run.env.pop(name, None)
    run.env.update(install_docs.plugin_env(values))
    return run


def test_plugin_hooks_across_plan_and_apply(
    stock_run: SpaceliftRun,
    tailscale_mirror: Mirror,
    tailnet_service: Service,
    test_id: str,
) -> None:
    run = _plugin_run(stock_run, {"auth_key": f"tskey-auth-ok-{test_id}", "tags": "tag:ci"})
    hooks = install_docs.plugin_context()["hooks"]
    plan, apply = plan_and_apply(run, hooks, fetch(tailnet_service))
    assert_installed_once(run, tailscale_mirror, plan, apply)
    for phase in (plan, apply):
        assert "connected to the tailnet" in phase.log, phase.describe()
        assert f"tskey-auth-ok-{test_id}" not in phase.log


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({}, "error: TS_AUTHKEY: no credentials; set TS_AUTHKEY"),
        (
            {"oauth_client_secret": "tskey-client-ok-x"},
            "error: TS_CLIENT_SECRET: an OAuth client secret needs tags",
        ),
        ({"client_id": "k1client"}, "error: TS_CLIENT_ID: workload identity needs tags"),
        pytest.param(
            {
                "auth_key": "tskey-auth-ok-x",
                "oauth_client_secret": "tskey-client-ok-x",
                "tags": "tag:ci",
            },
            "error: TS_AUTHKEY: set together with TS_CLIENT_SECRET",
        ),
    ],
    ids=["no-credential", "oauth-without-tags", "wif-without-tags", "two-credentials"],
)
def test_plugin_left_empty_or_contradictory_fails_before_terraform(
    stock_run: SpaceliftRun, values: dict[str, str], error: str
) -> None:
    run = _plugin_run(stock_run, values)
    hooks = install_docs.plugin_context()["hooks"]
    plan = run.phase(
        "planning", f"echo {TERRAFORM_RAN}", before=hooks["before_plan"], after=hooks["after_plan"]
    )
    assert plan.status not in (0, None), plan.describe()
    assert TERRAFORM_RAN not in plan.log, plan.describe()
    errors = [line for line in plan.log.splitlines() if "error:" in line]
    assert len(errors) == 1, plan.describe()
    assert error in errors[0], plan.describe()
    assert "tskey-client-ok-x" not in plan.log
    assert_finished_cleanly(plan)
