#!/usr/bin/env python3
"""Move spacetail's tailscale pin (version and sha256 sums) to the newest stable release, once
its checksums hold, and the runner image's base to the digest its tag has now.

Asks Tailscale's package server (`BASE_URL/?mode=json`) for the newest stable version; if it is
newer than the pin, downloads the static package of every architecture the runner image is
built for with its published `.sha256`, checks them, and only then rewrites the version and the
sums in each place that names them (spacetail/install/pins.py, container/Dockerfile,
docs/tailscale-version.md).
If the pin is current, checks the pinned sums against the published ones. Then asks the base
image's registry for the digest of its tag and moves container/Dockerfile's BASE_IMAGE to it.
Anything that fails (the server cannot be reached, a listing without the packages, a checksum
that does not match) changes nothing and exits 1 with the URL. Prints the outcome; in GitHub
Actions also writes `version=`, `bumped=true|false`, `base_image=` and `changed=true|false` to
$GITHUB_OUTPUT.

    python tools/bump_tailscale.py [--base-url URL] [--registry URL] [--repo DIR]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_URL = "https://pkgs.tailscale.com/stable"
DEFAULT_REGISTRY = "https://public.ecr.aws"
BASE_REPOSITORY = "spacelift/runner-terraform"
BASE_TAG = "latest"
_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
# The architectures container/Dockerfile is built for (.github/workflows/image.yml).
ARCHES = ("amd64", "arm64")
TIMEOUT = 60.0
MAX_LISTING = 1024 * 1024
MAX_PACKAGE = 256 * 1024 * 1024
_VERSION = re.compile(r"\d{1,4}\.\d{1,4}\.\d{1,6}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BumpError(Exception):
    """Why nothing was changed, with the URL concerned."""


@dataclass(frozen=True)
class Pin:
    """One place that names the version: a file and a pattern whose group 1 is the version."""

    path: str
    pattern: str


PINS = (
    Pin("spacetail/install/pins.py", r'^DEFAULT_VERSION = "(\d+\.\d+\.\d+)"$'),
    Pin("container/Dockerfile", r"^ARG TAILSCALE_VERSION=(\d+\.\d+\.\d+)$"),
    Pin("docs/tailscale-version.md", r"pins tailscale \*\*(\d+\.\d+\.\d+)\*\*"),
)


def sum_pins(arch: str) -> tuple[Pin, ...]:
    """The places that name the sha256 of ARCH's package of the pinned version."""
    return (
        Pin("spacetail/install/pins.py", rf'^    "{arch}": "([0-9a-f]{{64}})",$'),
        Pin("container/Dockerfile", rf"^ARG TAILSCALE_SHA256_{arch.upper()}=([0-9a-f]{{64}})$"),
    )


BASE_PIN = Pin(
    "container/Dockerfile",
    rf"^ARG BASE_IMAGE=public\.ecr\.aws/{BASE_REPOSITORY}:{BASE_TAG}@(sha256:[0-9a-f]{{64}})$",
)


def _fetch(url: str, limit: int, headers: dict[str, str] | None = None) -> bytes:
    return _fetch_with_headers(url, limit, headers)[0]


def _fetch_with_headers(
    url: str, limit: int, headers: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    sent = {"User-Agent": "spacetail-bump", **(headers or {})}
    request = urllib.request.Request(url, headers=sent)  # noqa: S310
    try:
        with urllib.request.build_opener().open(request, timeout=TIMEOUT) as response:
            data: bytes = response.read(limit + 1)
            received = {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        exc.close()
        raise BumpError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise BumpError(f"cannot reach {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise BumpError(f"cannot read {url}: {exc}") from None
    if len(data) > limit:
        raise BumpError(f"{url}: larger than {limit} bytes")
    return data, received


def newest_stable(base_url: str) -> str:
    """The version the package server lists as its current static packages."""
    url = f"{base_url}/?mode=json"
    try:
        listing = json.loads(_fetch(url, MAX_LISTING))
        version = listing["TarballsVersion"]
        tarballs = listing["Tarballs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BumpError(f"{url}: not a package listing ({exc})") from None
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise BumpError(f"{url}: TarballsVersion {version!r} is not a version")
    for arch in ARCHES:
        expected = f"tailscale_{version}_{arch}.tgz"
        if not isinstance(tarballs, dict) or tarballs.get(arch) != expected:
            raise BumpError(f"{url}: no {expected} in the listing")
    return version


def published_sha256(base_url: str, version: str, arch: str) -> str:
    url = f"{base_url}/tailscale_{version}_{arch}.tgz.sha256"
    published = _fetch(url, 4096).decode("utf-8", "replace").split()
    expected = published[0].lower() if published else ""
    if not _SHA256.fullmatch(expected):
        raise BumpError(f"{url} does not hold a sha256 digest")
    return expected


def verify(base_url: str, version: str, arch: str) -> str:
    """Download one package and its .sha256; return the digest if they agree."""
    url = f"{base_url}/tailscale_{version}_{arch}.tgz"
    expected = published_sha256(base_url, version, arch)
    actual = hashlib.sha256(_fetch(url, MAX_PACKAGE)).hexdigest()
    if actual != expected:
        raise BumpError(f"checksum mismatch for {url}: published {expected}, got {actual}")
    return actual


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def base_image_digest(registry: str) -> str:
    """The digest the base image's tag names now (the multi-platform index)."""
    token_url = f"{registry}/token/?scope=repository:{BASE_REPOSITORY}:pull"
    try:
        token = json.loads(_fetch(token_url, MAX_LISTING))["token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BumpError(f"{token_url}: no token ({exc})") from None
    url = f"{registry}/v2/{BASE_REPOSITORY}/manifests/{BASE_TAG}"
    headers = {"Accept": _MANIFEST_TYPES, "Authorization": f"Bearer {token}"}
    _, received = _fetch_with_headers(url, MAX_LISTING, headers)
    digest = received.get("docker-content-digest", "")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise BumpError(f"{url}: no Docker-Content-Digest header")
    return digest


def found(repo: Path, pin: Pin, what: str) -> str:
    """The one value PIN names in its file."""
    text = (repo / pin.path).read_text(encoding="utf-8")
    values: set[str] = set(re.findall(pin.pattern, text, re.M))
    if len(values) != 1:
        raise BumpError(f"{pin.path}: expected one {what}, found {sorted(values)}")
    return values.pop()


def current_pins(repo: Path) -> dict[str, str]:
    """Each pin's file and the version it names; every place must name exactly one."""
    return {pin.path: found(repo, pin, "tailscale pin") for pin in PINS}


def current_sums(repo: Path) -> dict[str, str]:
    """The pinned sha256 of each architecture; the places that name one must agree."""
    sums = {}
    for arch in ARCHES:
        values = {found(repo, pin, f"{arch} sha256 pin") for pin in sum_pins(arch)}
        if len(values) != 1:
            raise BumpError(f"the {arch} sha256 pins disagree: {sorted(values)}")
        sums[arch] = values.pop()
    return sums


def _swap(value: str, match: re.Match[str]) -> str:
    """MATCH's text with its group 1 replaced by VALUE."""
    start, end = match.span(1)
    whole = match.group(0)
    return whole[: start - match.start()] + value + whole[end - match.start() :]


def rewrite(repo: Path, values: list[tuple[Pin, str]]) -> None:
    """Put each value in its pin; all files are read and checked before any is written."""
    texts: dict[Path, str] = {}
    for pin, value in values:
        path = repo / pin.path
        text = texts.get(path) or path.read_text(encoding="utf-8")

        texts[path] = re.sub(pin.pattern, functools.partial(_swap, value), text, flags=re.M)
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")


def bump(repo: Path, base_url: str, log: list[str]) -> tuple[str, bool]:
    base_url = base_url.rstrip("/")
    pins = current_pins(repo)
    if len(set(pins.values())) != 1:
        raise BumpError(f"the pins disagree: {pins}")
    pinned = next(iter(pins.values()))
    sums = current_sums(repo)
    newest = newest_stable(base_url)
    if version_key(newest) <= version_key(pinned):
        for arch in ARCHES:
            published = published_sha256(base_url, pinned, arch)
            if published != sums[arch]:
                raise BumpError(
                    f"tailscale_{pinned}_{arch}.tgz: the pinned sha256 {sums[arch]} is not the "
                    f"published {published}"
                )
        log.append(
            f"tailscale {pinned} is pinned, its sums are the published ones; the newest "
            f"stable is {newest}: nothing to do"
        )
        return pinned, False
    values = [(pin, newest) for pin in PINS]
    for arch in ARCHES:
        digest = verify(base_url, newest, arch)
        log.append(f"tailscale_{newest}_{arch}.tgz: sha256 {digest} matches the published one")
        values += [(pin, digest) for pin in sum_pins(arch)]
    rewrite(repo, values)
    log.append(f"tailscale pin and sums moved from {pinned} to {newest} in {', '.join(pins)}")
    return newest, True


def bump_base_image(repo: Path, registry: str, log: list[str]) -> tuple[str, bool]:
    """Move BASE_IMAGE to the digest its tag names now; return that digest, and whether it
    moved."""
    pinned = found(repo, BASE_PIN, "base image digest")
    digest = base_image_digest(registry.rstrip("/"))
    if digest == pinned:
        log.append(f"{BASE_REPOSITORY}:{BASE_TAG} is still {pinned}: nothing to do")
        return digest, False
    rewrite(repo, [(BASE_PIN, digest)])
    log.append(f"{BASE_REPOSITORY}:{BASE_TAG} moved from {pinned} to {digest}")
    return digest, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="package server folder")
    parser.add_argument("--registry", default=DEFAULT_REGISTRY, help="the base image's registry")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args(argv)
    log: list[str] = []
    try:
        version, bumped = bump(Path(args.repo), args.base_url, log)
        base_image, moved = bump_base_image(Path(args.repo), args.registry, log)
    except BumpError as exc:
        for line in log:
            print(line)
        print(f"bump_tailscale: {exc}; nothing was changed", file=sys.stderr)
        return 1
    for line in log:
        print(line)
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        with open(output, "a", encoding="utf-8") as f:
            f.write(f"version={version}\nbumped={'true' if bumped else 'false'}\n")
            f.write(f"base_image={base_image}\nchanged={'true' if bumped or moved else 'false'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
