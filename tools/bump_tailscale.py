#!/usr/bin/env python3
"""Move spacetail's tailscale pin to the newest stable release, once its checksums hold.

Asks Tailscale's package server (`BASE_URL/?mode=json`) for the newest stable version; if it is
newer than the pin, downloads the static package of every architecture the runner image is
built for with its published `.sha256`, checks them, and only then rewrites the pin in each
place that names it (spacetail/install.py, container/Dockerfile, README.md). Anything that
fails (the server cannot be reached, a listing without the packages, a checksum that does not
match) changes nothing and exits 1 with the URL. Prints the outcome; in GitHub Actions also
writes `version=` and `bumped=true|false` to $GITHUB_OUTPUT.

    python tools/bump_tailscale.py [--base-url URL] [--repo DIR]
"""

from __future__ import annotations

import argparse
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
    Pin("spacetail/install.py", r'^DEFAULT_VERSION = "(\d+\.\d+\.\d+)"$'),
    Pin("container/Dockerfile", r"^ARG TAILSCALE_VERSION=(\d+\.\d+\.\d+)$"),
    Pin("README.md", r"pins tailscale \*\*(\d+\.\d+\.\d+)\*\*"),
)


def _fetch(url: str, limit: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "spacetail-bump"})  # noqa: S310
    try:
        with urllib.request.build_opener().open(request, timeout=TIMEOUT) as response:
            data: bytes = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise BumpError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise BumpError(f"cannot reach {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise BumpError(f"cannot read {url}: {exc}") from None
    if len(data) > limit:
        raise BumpError(f"{url}: larger than {limit} bytes")
    return data


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


def verify(base_url: str, version: str, arch: str) -> str:
    """Download one package and its .sha256; return the digest if they agree."""
    url = f"{base_url}/tailscale_{version}_{arch}.tgz"
    published = _fetch(url + ".sha256", 4096).decode("utf-8", "replace").split()
    expected = published[0].lower() if published else ""
    if not _SHA256.fullmatch(expected):
        raise BumpError(f"{url}.sha256 does not hold a sha256 digest")
    actual = hashlib.sha256(_fetch(url, MAX_PACKAGE)).hexdigest()
    if actual != expected:
        raise BumpError(f"checksum mismatch for {url}: published {expected}, got {actual}")
    return actual


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def current_pins(repo: Path) -> dict[str, str]:
    """Each pin's file and the version it names; every place must name exactly one."""
    found = {}
    for pin in PINS:
        text = (repo / pin.path).read_text(encoding="utf-8")
        versions = set(re.findall(pin.pattern, text, re.M))
        if len(versions) != 1:
            raise BumpError(f"{pin.path}: expected one tailscale pin, found {sorted(versions)}")
        found[pin.path] = versions.pop()
    return found


def rewrite(repo: Path, version: str) -> None:
    """Put VERSION in every pin; all files are read and checked before any is written."""
    texts = {}
    for pin in PINS:
        path = repo / pin.path
        text = path.read_text(encoding="utf-8")

        def swap(match: re.Match[str]) -> str:
            start, end = match.span(1)
            whole = match.group(0)
            return whole[: start - match.start()] + version + whole[end - match.start() :]

        texts[path] = re.sub(pin.pattern, swap, text, flags=re.M)
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")


def bump(repo: Path, base_url: str, log: list[str]) -> tuple[str, bool]:
    base_url = base_url.rstrip("/")
    pins = current_pins(repo)
    if len(set(pins.values())) != 1:
        raise BumpError(f"the pins disagree: {pins}")
    pinned = next(iter(pins.values()))
    newest = newest_stable(base_url)
    if version_key(newest) <= version_key(pinned):
        log.append(f"tailscale {pinned} is pinned; the newest stable is {newest}: nothing to do")
        return pinned, False
    for arch in ARCHES:
        digest = verify(base_url, newest, arch)
        log.append(f"tailscale_{newest}_{arch}.tgz: sha256 {digest} matches the published one")
    rewrite(repo, newest)
    log.append(f"tailscale pin moved from {pinned} to {newest} in {', '.join(pins)}")
    return newest, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="package server folder")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args(argv)
    log: list[str] = []
    try:
        version, bumped = bump(Path(args.repo), args.base_url, log)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
