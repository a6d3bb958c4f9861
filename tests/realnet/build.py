"""The real tailnet's binaries, built from their Go modules and cached per version outside the
checkout (``${XDG_CACHE_HOME:-$HOME/.cache}/spacetail-ci/``), so a second run builds nothing:

- ``tailscale-<DEFAULT_VERSION>/``: tailscale and tailscaled, the version spacetail installs
  (read from ``spacetail/install/pins.py``, the one source of truth);
- ``headscale-<HEADSCALE_VERSION>/``: the control server, built with its own go.mod (so its
  tailscale.com version stays its own), not as a library of ours;
- ``realnet-<digest of the sources>/``: this folder's Go program (tsnet at DEFAULT_VERSION).

Modules are fetched with ``go mod download`` and built inside the module's own folder, which is
what ``go install MODULE@VERSION`` does, minus its lookup of the module's deprecation (the list
of versions), which some module proxies refuse. CGO is off; only the needed packages build."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from spacetail.install.pins import DEFAULT_VERSION

HEADSCALE_MODULE = "github.com/juanfont/headscale"
HEADSCALE_VERSION = "v0.29.2"
TAILSCALE_MODULE = "tailscale.com"
HERE = Path(__file__).resolve().parent
BUILD_TIMEOUT = 3600.0


class BuildError(Exception):
    """A build that cannot be done: the message is one line saying which and why."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spacetail-ci"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError("go is not on PATH: the real tailnet is built from Go modules (Go 1.26)")
    return go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never fetch another toolchain: a version that needs a newer Go says so and fails.
    env.update({"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"})
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _run_go(args: list[str], cwd: Path | None, what: str) -> str:
    try:
        result = subprocess.run(
            [_go(), *args],
            cwd=cwd,
            env=_go_env(),
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what}: go {args[0]} took more than {BUILD_TIMEOUT:.0f} s") from None
    if result.returncode != 0:
        raise BuildError(f"{what}: {_last_line(result.stderr or result.stdout)}")
    return result.stdout


def _module_dir(module: str, version: str) -> Path:
    what = f"download {module}@{version}"
    info = json.loads(_run_go(["mod", "download", "-json", f"{module}@{version}"], None, what))
    if info.get("Error"):
        raise BuildError(f"{what}: {info['Error']}")
    return Path(info["Dir"])


def _publish(folder: Path, build: Path) -> None:
    """Make the built folder the cached one, readable and runnable by every user (the tests run
    tailscaled as uid 1983)."""
    for child in build.iterdir():
        child.chmod(0o755)
    build.chmod(0o755)
    if folder.exists():
        shutil.rmtree(folder)
    build.rename(folder)


def _build(
    folder: Path,
    names: tuple[str, ...],
    what: str,
    build_in: Path,
    pkgs: list[str],
    ldflags: str = "",
) -> Path:
    if all((folder / n).is_file() for n in names):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        out = str(staging) + "/" if len(pkgs) > 1 else str(staging / names[0])
        flags = ["-trimpath", *([f"-ldflags={ldflags}"] if ldflags else [])]
        _run_go(["build", *flags, "-o", out, *pkgs], build_in, what)
        missing = [n for n in names if not (staging / n).is_file()]
        if missing:
            raise BuildError(f"{what}: go build made no {', '.join(missing)}")
        _publish(folder, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _reports(folder: Path, version: str) -> bool:
    """Whether FOLDER's tailscale says it is VERSION, as a released build does."""
    try:
        out = subprocess.run(
            [str(folder / "tailscale"), "version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except OSError:
        return False
    return out.split("\n", 1)[0].strip() == version


def tailscale(version: str = DEFAULT_VERSION) -> Path:
    folder = cache_root() / f"tailscale-{version}"
    if (folder / "tailscaled").is_file() and _reports(folder, version):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    src = _module_dir(TAILSCALE_MODULE, f"v{version}")
    # A module build has no VCS stamp: without these, `tailscale version` says
    # "<version>-ERR-BuildInfo"; a released build says the version, as build_dist.sh stamps it.
    stamps = " ".join(
        f"-X tailscale.com/version.{v}={version}" for v in ("longStamp", "shortStamp")
    )
    pkgs = ["./cmd/tailscale", "./cmd/tailscaled"]
    return _build(folder, ("tailscale", "tailscaled"), f"tailscale {version}", src, pkgs, stamps)


def headscale(version: str = HEADSCALE_VERSION) -> Path:
    folder = cache_root() / f"headscale-{version}"
    if (folder / "headscale").is_file():
        return folder
    src = _module_dir(HEADSCALE_MODULE, version)
    return _build(folder, ("headscale",), f"headscale {version}", src, ["./cmd/headscale"])


def source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted([*HERE.glob("*.go"), HERE / "go.mod", HERE / "go.sum"]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def realnet() -> Path:
    folder = cache_root() / f"realnet-{source_digest()}"
    return _build(folder, ("realnet",), "the realnet Go program", HERE, ["."])


def build_all() -> dict[str, Path]:
    """Every binary of the real tailnet, built once per version; raises BuildError. One build at
    a time per cache (an flock), so two runs never race on a folder."""
    import fcntl

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return {"tailscale": tailscale(), "headscale": headscale(), "realnet": realnet()}


def main() -> int:
    started = time.monotonic()
    try:
        folders = build_all()
    except BuildError as exc:
        print(f"realnet build failed: {exc}", flush=True)
        return 1
    took = time.monotonic() - started
    print(json.dumps({k: str(v) for k, v in folders.items()} | {"seconds": round(took, 1)}))
    return 0
