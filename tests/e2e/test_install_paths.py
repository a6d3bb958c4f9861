"""The ways of bringing spacetail into Spacelift runs, with the hook lines of
terraform/hooks.json taken literally, across plan and apply in separate containers, on Debian's
externally managed (PEP 668) python3 with no spacetail and no tailscale in the image: the
Terraform module's default (spacetail.pyz, built in the session, where its mounted file would
be, its sha256 in the hooks as the module writes it), the Spacelift plugin's manifest (which
carries the pyz), and the opt-in SPACETAIL_PIP_SPEC.

Nothing here reaches the internet: the pyz path asks no registry at all; for SPACETAIL_PIP_SPEC
pip gets spacetail and its dependencies as wheels built from this repository (PIP_NO_INDEX and
PIP_FIND_LINKS, pip's own variables), and
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
from tests import helpers, install_docs, pyz, terraform_module
from tests.e2e.conftest import Service
from tests.e2e.phases import assert_finished_cleanly, fetch
from tests.e2e.spacelift import WORKSPACE, PhaseResult, SpaceliftRun
from tests.mirror import Mirror

pytestmark = pytest.mark.userns

STOCK_PATH = "/usr/local/bin:/usr/bin:/bin"  # the image's own tools; no spacetail, no tailscale
SYSTEM_PYTHON = Path("/usr/bin/python3")
VENV = ".spacetail-venv"
DEADLINE = 90.0  # a phase that builds a virtualenv and installs wheels
PYZ = "spacetail/spacetail.pyz"  # the module's mounted file, under /mnt/workspace
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
def stock_run(spacelift_run: SpaceliftRun, tailscale_mirror: Mirror) -> SpaceliftRun:
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
    run.env.update(
        {
            "PATH": STOCK_PATH,
            # A registry the pyz path must never ask: pip would fail on it.
            "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
            "SPACETAIL_TAILSCALE_MIRROR": tailscale_mirror.base_url,
            "SPACETAIL_TAILSCALE_SHA256": hashlib.sha256(
                tailscale_mirror.files[f"/stable/{PACKAGE}"]
            ).hexdigest(),
        }
    )
    return run


@pytest.fixture
def pip_run(stock_run: SpaceliftRun, wheelhouse: Path) -> SpaceliftRun:
    """The stock run with SPACETAIL_PIP_SPEC and an index of its own (local wheels)."""
    run = stock_run
    wheels = run.workspace / ".wheels"
    shutil.copytree(wheelhouse, wheels)
    for path in [wheels, *wheels.iterdir()]:
        os.chown(path, helpers.SPACELIFT_UID, helpers.SPACELIFT_UID)
    run.env.pop("PIP_INDEX_URL")
    run.env.update(
        {
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": "/mnt/workspace/.wheels",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "SPACETAIL_PIP_SPEC": "spacetail",
        }
    )
    return run


def mount_pyz(run: SpaceliftRun, data: bytes | None = None) -> None:
    """What the module's spacelift_mounted_file puts in the workspace (read-only)."""
    target = run.workspace / PYZ
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(pyz.built().read_bytes() if data is None else data)
    target.chmod(0o444)


def module_hooks() -> dict[str, list[str]]:
    """The context's hooks as the module makes them: hooks.json's pyz lines, with the sum."""
    source = terraform_module.hooks()
    before = [line.replace("@SPACETAIL_PYZ_SHA256@", pyz.sha256()) for line in source["pyz_before"]]
    return {
        **{f"before_{phase}": before for phase in terraform_module.PHASES},
        **{f"after_{phase}": source["pyz_after"] for phase in terraform_module.PHASES},
    }


def plan_and_apply(
    run: SpaceliftRun, hooks: Mapping[str, list[str]], command: str
) -> tuple[PhaseResult, PhaseResult]:
    plan = run.phase("planning", command, before=hooks["before_plan"], after=hooks["after_plan"])
    apply = run.phase("applying", command, before=hooks["before_apply"], after=hooks["after_apply"])
    return plan, apply


def assert_tailscale_installed_once(mirror: Mirror, plan: PhaseResult,
                                    apply: PhaseResult) -> None:  # fmt: skip
    assert plan.hostname != apply.hostname
    for phase in (plan, apply):
        assert phase.status == 0, phase.describe()
        assert "FETCHED-OK" in phase.log, phase.describe()
        assert_finished_cleanly(phase)
    # The first phase downloaded tailscale; the second, in a fresh container, found it.
    assert "sha256 verified (--sha256)" in plan.log, plan.describe()
    assert "already installed" in apply.log, apply.describe()
    assert mirror.package_requests(PACKAGE) == 1


def assert_ran_the_pyz(run: SpaceliftRun, plan: PhaseResult, apply: PhaseResult) -> None:
    """No venv, nothing installed from a registry, nothing of the check left in the env."""
    assert not (run.workspace / VENV).exists()
    saved = run.saved_env()
    assert "spacetail_pyz_sha256" not in saved, saved
    for phase in (plan, apply):
        assert "not running it" not in phase.log, phase.describe()


def assert_installed_once(run: SpaceliftRun, mirror: Mirror, plan: PhaseResult,
                          apply: PhaseResult) -> None:  # fmt: skip
    assert_tailscale_installed_once(mirror, plan, apply)
    venv_python = run.workspace / VENV / "bin" / "python3"
    assert (run.workspace / VENV / "bin" / "spacetail").is_file()
    assert os.path.realpath(venv_python) == os.path.realpath(SYSTEM_PYTHON)
    # The venv's bin was added to PATH once, at its end, and carried to the next phase.
    saved = run.saved_env()
    assert saved.count(f"/mnt/workspace/{VENV}/bin") == 1, saved
    assert f":/mnt/workspace/{VENV}/bin" in saved


def test_module_pyz_hooks_across_plan_and_apply(
    stock_run: SpaceliftRun, tailscale_mirror: Mirror, tailnet_service: Service
) -> None:
    """The module's default: the mounted pyz, checked, run by the image's python3."""
    mount_pyz(stock_run)
    plan, apply = plan_and_apply(stock_run, module_hooks(), fetch(tailnet_service))
    assert_tailscale_installed_once(tailscale_mirror, plan, apply)
    assert_ran_the_pyz(stock_run, plan, apply)


@pytest.mark.parametrize("change", ["changed", "missing"])
def test_a_pyz_that_is_not_the_one_stops_the_phase_before_anything_runs(
    stock_run: SpaceliftRun, tailscale_mirror: Mirror, change: str
) -> None:
    built = pyz.built().read_bytes()
    actual = "none (no such file)"
    if change == "changed":
        changed = built[:-1] + bytes([built[-1] ^ 1])
        mount_pyz(stock_run, changed)
        actual = hashlib.sha256(changed).hexdigest()
    hooks = module_hooks()
    plan = stock_run.phase("planning", f"echo {TERRAFORM_RAN}", before=hooks["before_plan"],
                           after=hooks["after_plan"])  # fmt: skip
    assert plan.status not in (0, None), plan.describe()
    assert TERRAFORM_RAN not in plan.log, plan.describe()
    (line,) = [line for line in plan.log.splitlines() if "not running it" in line]
    assert f"has sha256 {actual}, expected {pyz.sha256()}" in line, plan.describe()
    assert tailscale_mirror.package_requests(PACKAGE) == 0
    assert_finished_cleanly(plan)


def test_pip_spec_hooks_across_plan_and_apply(
    pip_run: SpaceliftRun, tailscale_mirror: Mirror, tailnet_service: Service
) -> None:
    """Opt-in: SPACETAIL_PIP_SPEC, a package of an index of one's own, in a venv."""
    source = terraform_module.hooks()
    hooks = {
        **{f"before_{p}": source["pip"] + source["up"] for p in terraform_module.PHASES},
        **{f"after_{p}": source["down"] for p in terraform_module.PHASES},
    }
    plan, apply = plan_and_apply(pip_run, hooks, fetch(tailnet_service))
    assert_installed_once(pip_run, tailscale_mirror, plan, apply)


def _plugin_run(run: SpaceliftRun, values: dict[str, str]) -> SpaceliftRun:
    """The plugin's context variables, from its parameters, replace the tailnet's key."""
    for name in ("TS_AUTHKEY", "TS_AUTH_KEY"):
        run.env.pop(name, None)
    run.env.update(install_docs.plugin_env(values))
    # The manifest's mounted file: the pyz as base64 text, where the plugin mounts it.
    (mounted,) = [m for m in install_docs.plugin_context()["mounted_files"]
                  if m["path"].endswith(".pyz.b64")]  # fmt: skip
    target = run.workspace / Path(mounted["path"]).relative_to(WORKSPACE)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(mounted["content"])
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
    assert_tailscale_installed_once(tailscale_mirror, plan, apply)
    assert_ran_the_pyz(run, plan, apply)
    assert (run.workspace / PYZ).read_bytes() == pyz.built().read_bytes()
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
