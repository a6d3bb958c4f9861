"""The GitHub workflows' supply chain: actions pinned by commit, no persisted credentials,
least permissions, provenance for the image, and zizmor's offline audit clean."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_container_files import find_tool

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
ALL = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def load(name: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def steps(name: str) -> list[dict[str, Any]]:
    return [step for job in load(name)["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("name", ALL)
def test_every_action_is_pinned_to_a_commit_with_its_version_named(name: str) -> None:
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    uses = re.findall(r"^\s*(?:- )?uses:\s*(.+)$", text, re.M)
    assert uses, name
    for line in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*", line.strip()), line


@pytest.mark.parametrize("name", ALL)
def test_checkout_does_not_persist_credentials(name: str) -> None:
    for step in steps(name):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, (name, step)


@pytest.mark.parametrize("name", ALL)
def test_least_permissions_per_job(name: str) -> None:
    data = load(name)
    assert data["permissions"] == {}, "the workflow grants nothing; each job asks for its own"
    for job_name, job in data["jobs"].items():
        assert "permissions" in job, f"{name}: job {job_name} names no permissions"
        writes = {k for k, v in job["permissions"].items() if v == "write"}
        allowed = {
            "image.yml": {"packages", "id-token", "attestations"},
            "release.yml": {"id-token"},
            "bump-tailscale.yml": {"contents", "pull-requests"},
        }.get(name, set())
        assert writes <= allowed, (name, job_name, writes)


def test_image_is_attested() -> None:
    build = next(s for s in steps("image.yml") if s.get("id") == "build")
    assert build["with"]["provenance"] == "mode=max"
    assert build["with"]["sbom"] is True
    attest = next(
        s for s in steps("image.yml") if "attest-build-provenance@" in str(s.get("uses", ""))
    )
    assert attest["with"]["subject-digest"] == "${{ steps.build.outputs.digest }}"
    assert attest["with"]["push-to-registry"] is True


def test_zizmor_finds_nothing() -> None:
    zizmor = find_tool("zizmor")
    if zizmor is None:
        pytest.skip("zizmor is not installed (pip install zizmor)")
    result = subprocess.run(
        [zizmor, "--offline", "--no-progress", ".github/workflows"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout + result.stderr
