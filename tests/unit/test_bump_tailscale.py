"""tools/bump_tailscale.py against the loopback package mirror (which doubles as the base image's
registry): it moves the version and the sums together, only after each package's checksum
holds; checks the pinned sums while the pin is current; moves the base image's digest; and
changes nothing (exit 1, with the URL) when it cannot."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from spacetail.install import pins
from tests import helpers
from tests.mirror import Mirror, sha256_line

REPO = helpers.REPO
TOOL = REPO / "tools" / "bump_tailscale.py"
PINNED_FILES = ("spacetail/install/pins.py", "container/Dockerfile", "docs/tailscale-version.md")
NEW = "1.104.1"
ARCHES = ("amd64", "arm64")
IMAGE = "spacelift/runner-terraform"


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bump_tailscale", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def pinned_digest() -> str:
    text = (REPO / "container" / "Dockerfile").read_text(encoding="utf-8")
    return text.split("runner-terraform:latest@", 1)[1].split()[0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the files that name the pins."""
    for name in PINNED_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def snapshot(repo: Path) -> dict[str, str]:
    return {name: (repo / name).read_text(encoding="utf-8") for name in PINNED_FILES}


def bump(
    repo: Path, mirror_or_url: Mirror | str, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], str]:
    if isinstance(mirror_or_url, Mirror):
        base_url = mirror_or_url.base_url
        registry = f"http://127.0.0.1:{mirror_or_url.port}"
    else:
        base_url = registry = mirror_or_url
    output = tmp_path / "github_output"
    output.write_text("")
    result = subprocess.run(
        [sys.executable, str(TOOL), "--base-url", base_url, "--registry", registry,
         "--repo", str(repo)],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "GITHUB_OUTPUT": str(output)},
    )  # fmt: skip
    return result, output.read_text()


def publish(mirror: Mirror, version: str) -> dict[str, str]:
    """The listing and both packages of VERSION; return their sums by arch."""
    mirror.publish_listing(version)
    sums = {}
    for arch in ARCHES:
        package = f"package {version} {arch}".encode()
        mirror.publish(version, arch, package)
        sums[arch] = hashlib.sha256(package).hexdigest()
    return sums


def publish_current(mirror: Mirror, digest: str | None = None) -> None:
    """The pinned version as the newest, with its published sums, and the base image as
    pinned (or at DIGEST)."""
    mirror.publish_listing(pins.DEFAULT_VERSION)
    for arch in ARCHES:
        name = f"/stable/tailscale_{pins.DEFAULT_VERSION}_{arch}.tgz.sha256"
        mirror.files[name] = pins.PINNED_SHA256[arch].encode() + b"\n"
    mirror.publish_image(IMAGE, "latest", digest or pinned_digest())


def test_the_repository_names_one_pin_everywhere() -> None:
    bump_tailscale = tool()
    assert bump_tailscale.current_pins(REPO) == dict.fromkeys(PINNED_FILES, pins.DEFAULT_VERSION)
    assert bump_tailscale.current_sums(REPO) == pins.PINNED_SHA256
    assert bump_tailscale.found(REPO, bump_tailscale.BASE_PIN, "digest") == pinned_digest()


def test_newer_release_moves_the_version_and_the_sums(
    mirror: Mirror, repo: Path, tmp_path: Path
) -> None:
    before = snapshot(repo)
    sums = publish(mirror, NEW)
    mirror.publish_image(IMAGE, "latest", pinned_digest())
    result, output = bump(repo, mirror, tmp_path)
    assert result.returncode == 0, result.stderr
    assert output == (f"version={NEW}\nbumped=true\nbase_image={pinned_digest()}\nchanged=true\n")
    after = snapshot(repo)
    for name in PINNED_FILES:
        expected = before[name].replace(pins.DEFAULT_VERSION, NEW)
        for arch in ARCHES:
            expected = expected.replace(pins.PINNED_SHA256[arch], sums[arch])
        assert after[name] == expected, name
        assert pins.DEFAULT_VERSION not in after[name], name
    for arch in ARCHES:
        assert after["spacetail/install/pins.py"].count(sums[arch]) == 1
        assert after["container/Dockerfile"].count(sums[arch]) == 1
    assert mirror.requests["/stable/"] == 1
    for arch in ARCHES:
        assert mirror.package_requests(f"tailscale_{NEW}_{arch}.tgz") == 1
    assert "sha256" in result.stdout and f"to {NEW}" in result.stdout


def test_current_pin_with_its_published_sums_changes_nothing(
    mirror: Mirror, repo: Path, tmp_path: Path
) -> None:
    before = snapshot(repo)
    publish_current(mirror)
    result, output = bump(repo, mirror, tmp_path)
    assert result.returncode == 0, result.stderr
    assert output == (
        f"version={pins.DEFAULT_VERSION}\nbumped=false\nbase_image={pinned_digest()}\n"
        "changed=false\n"
    )
    assert "its sums are the published ones" in result.stdout
    assert "nothing to do" in result.stdout
    assert snapshot(repo) == before
    assert sum(n for path, n in mirror.requests.items() if path.endswith(".tgz")) == 0


def test_a_pinned_sum_that_is_not_the_published_one_fails(
    mirror: Mirror, repo: Path, tmp_path: Path
) -> None:
    before = snapshot(repo)
    publish_current(mirror)
    name = f"/stable/tailscale_{pins.DEFAULT_VERSION}_arm64.tgz.sha256"
    mirror.files[name] = b"1" * 64 + b"\n"
    result, output = bump(repo, mirror, tmp_path)
    assert result.returncode == 1
    assert (
        f"tailscale_{pins.DEFAULT_VERSION}_arm64.tgz: the pinned sha256 "
        f"{pins.PINNED_SHA256['arm64']} is not the published {'1' * 64}"
    ) in result.stderr
    assert snapshot(repo) == before
    assert output == ""


def test_the_base_image_moves_to_its_tags_digest(
    mirror: Mirror, repo: Path, tmp_path: Path
) -> None:
    before = snapshot(repo)
    new_digest = "sha256:" + "ab" * 32
    publish_current(mirror, new_digest)
    result, output = bump(repo, mirror, tmp_path)
    assert result.returncode == 0, result.stderr
    assert output.endswith(f"bumped=false\nbase_image={new_digest}\nchanged=true\n")
    after = snapshot(repo)
    assert after["container/Dockerfile"] == before["container/Dockerfile"].replace(
        pinned_digest(), new_digest
    )
    assert after["spacetail/install/pins.py"] == before["spacetail/install/pins.py"]
    assert f"moved from {pinned_digest()} to {new_digest}" in result.stdout


def test_a_registry_without_a_digest_changes_nothing(
    mirror: Mirror, repo: Path, tmp_path: Path
) -> None:
    before = snapshot(repo)
    publish_current(mirror)
    mirror.headers.clear()
    result, _ = bump(repo, mirror, tmp_path)
    assert result.returncode == 1
    assert f"/v2/{IMAGE}/manifests/latest: no Docker-Content-Digest header" in result.stderr
    assert snapshot(repo) == before


def test_checksum_mismatch_changes_nothing(mirror: Mirror, repo: Path, tmp_path: Path) -> None:
    before = snapshot(repo)
    publish(mirror, NEW)
    mirror.publish(NEW, "arm64", b"tampered", sha256_line(b"the real package"))
    result, output = bump(repo, mirror, tmp_path)
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
    result, _ = bump(repo, mirror, tmp_path)
    assert result.returncode == 1
    assert f"no tailscale_{NEW}_arm64.tgz in the listing" in result.stderr
    assert snapshot(repo) == before
