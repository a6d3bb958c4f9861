"""tools/bump_tailscale.py against the loopback package mirror: it moves every pin only after
each package's checksum holds, and changes nothing (exit 1, with the URL) when it cannot."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spacetail import install
from tests import helpers
from tests.mirror import Mirror, sha256_line

REPO = helpers.REPO
TOOL = REPO / "tools" / "bump_tailscale.py"
PINNED_FILES = ("spacetail/install.py", "container/Dockerfile", "README.md")
NEW = "1.104.1"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the files that name the pin."""
    for name in PINNED_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def snapshot(repo: Path) -> dict[str, str]:
    return {name: (repo / name).read_text(encoding="utf-8") for name in PINNED_FILES}


def bump(repo: Path, base_url: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    output = tmp_path / "github_output"
    output.write_text("")
    result = subprocess.run(
        [sys.executable, str(TOOL), "--base-url", base_url, "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GITHUB_OUTPUT": str(output)},
    )
    return result, output.read_text()


def publish(mirror: Mirror, version: str) -> None:
    mirror.publish_listing(version)
    for arch in ("amd64", "arm64"):
        mirror.publish(version, arch, f"package {version} {arch}".encode())


def test_the_repository_names_one_pin_everywhere() -> None:
    spec = importlib.util.spec_from_file_location("bump_tailscale", TOOL)
    assert spec is not None and spec.loader is not None
    bump_tailscale = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bump_tailscale  # its dataclasses look their module up there
    spec.loader.exec_module(bump_tailscale)
    assert bump_tailscale.current_pins(REPO) == dict.fromkeys(PINNED_FILES, install.DEFAULT_VERSION)


def test_newer_release_moves_every_pin(mirror: Mirror, repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    publish(mirror, NEW)
    result, output = bump(repo, mirror.base_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert output == f"version={NEW}\nbumped=true\n"
    after = snapshot(repo)
    for name in PINNED_FILES:
        assert install.DEFAULT_VERSION not in after[name], name
        assert after[name] == before[name].replace(install.DEFAULT_VERSION, NEW), name
    assert mirror.requests["/stable/"] == 1
    for arch in ("amd64", "arm64"):
        assert mirror.package_requests(f"tailscale_{NEW}_{arch}.tgz") == 1
    assert "sha256" in result.stdout and f"to {NEW}" in result.stdout


def test_current_pin_changes_nothing(mirror: Mirror, repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    publish(mirror, install.DEFAULT_VERSION)
    result, output = bump(repo, mirror.base_url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert output == f"version={install.DEFAULT_VERSION}\nbumped=false\n"
    assert "nothing to do" in result.stdout
    assert snapshot(repo) == before
    assert sum(n for path, n in mirror.requests.items() if path.endswith(".tgz")) == 0


def test_checksum_mismatch_changes_nothing(mirror: Mirror, repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    publish(mirror, NEW)
    mirror.publish(NEW, "arm64", b"tampered", sha256_line(b"the real package"))
    result, output = bump(repo, mirror.base_url, tmp_path)
    assert result.returncode == 1
    url = f"{mirror.base_url}/tailscale_{NEW}_arm64.tgz"
    assert f"checksum mismatch for {url}" in result.stderr
    assert result.stderr.endswith("nothing was changed\n")
    assert snapshot(repo) == before
    assert output == ""


def test_unreachable_server_changes_nothing(repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    base = f"http://127.0.0.1:{helpers.free_port()}/stable"
    result, output = bump(repo, base, tmp_path)
    assert result.returncode == 1
    assert f"cannot reach {base}/?mode=json" in result.stderr
    assert snapshot(repo) == before
    assert output == ""


def test_listing_without_the_packages_changes_nothing(
    mirror: Mirror, repo: Path, tmp_path: Path
) -> None:
    before = snapshot(repo)
    mirror.publish_listing(NEW, arches=("amd64",))
    result, _ = bump(repo, mirror.base_url, tmp_path)
    assert result.returncode == 1
    assert f"no tailscale_{NEW}_arm64.tgz in the listing" in result.stderr
    assert snapshot(repo) == before
