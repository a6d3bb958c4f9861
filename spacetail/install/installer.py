"""Install a pinned tailscale static build where spacetail can find it: which version and
architecture, which sha256 the package must have (pinned here, given, or knowingly the server's),
where (a versioned cache, or a folder of the user's), one install at a time, never half written,
never past a deadline. Downloading and unpacking the package is install/package.py's; the pin and
where installs are found again are install/pins.py's."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import filelock

from spacetail.errors import ConfigError, OperationFailed
from spacetail.install.package import (
    DEFAULT_BASE_URL,
    MAX_PACKAGE_BYTES,
    Deadline,
    download,
    package_name,
    server_sha256,
    sha256_file,
    unpack,
)
from spacetail.install.pins import (
    DEFAULT_VERSION,
    EXECUTABLES,
    PINNED_SHA256,
    VERSION_RE,
    default_install_dir,
)
from spacetail.state.paths import open_regular

SUPPORTED_ARCHES = ("386", "amd64", "arm", "arm64")

# How long install-tailscale may take in all: a hook must never hang on a slow mirror. The
# real package is about 35 MB, so this allows about 120 kB/s.
DEFAULT_TIMEOUT = 300.0
TIMEOUT_SETTING = "--timeout, SPACETAIL_INSTALL_TIMEOUT"
# How long to wait for another spacetail that is installing into the same folder (and never
# past the deadline).
LOCK_TIMEOUT = 600.0

_MARKER = ".spacetail-install.json"
_MARKER_MAX_BYTES = 64 * 1024  # a version, an arch and two digests
_PARTIAL_PREFIX = ".partial-"
_LOCK_NAME = ".install.lock"
_CHUNK = 1024 * 1024
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_MACHINES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv8l": "arm",
    "armv7l": "arm",
    "armv6l": "arm",
    "arm": "arm",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
}


def _stderr(line: str) -> None:
    # The CLI passes its own log, which adds this prefix; the lines themselves carry none.
    print(f"spacetail: {line}", file=sys.stderr, flush=True)


def validate_version(version: str, name: str = "--version") -> str:
    """Return ``version`` if it looks like a tailscale release number, else raise ConfigError."""
    if not VERSION_RE.fullmatch(version):
        raise ConfigError(f'{name}: "{version}" is not a tailscale version like {DEFAULT_VERSION}')
    return version


@dataclass(frozen=True)
class Checksum:
    """The sha256 a package must have, or None for the server's own, and where it came from."""

    value: str | None
    source: str


def expected_checksum(
    version: str, arch: str, sha256: str | None = None, *, trust_server: bool = False
) -> Checksum:
    """Which sha256 the package of VERSION and ARCH must have: the one given, else the pin, else
    (only when asked) whatever the server's .sha256 says. Raises ConfigError otherwise."""
    if sha256 is not None:
        if not _SHA256_RE.fullmatch(sha256):
            raise ConfigError(f'--sha256: "{sha256}" is not a sha256 (64 hexadecimal digits)')
        if trust_server:
            raise ConfigError(
                "--trust-server-checksum: set together with --sha256; use one of them"
            )
        return Checksum(sha256.lower(), "--sha256")
    if version == DEFAULT_VERSION and arch in PINNED_SHA256:
        return Checksum(PINNED_SHA256[arch], "pinned")
    if trust_server:
        return Checksum(None, "the server's .sha256 only")
    raise ConfigError(
        f"--sha256: spacetail pins no sha256 for {package_name(version, arch)}; pass --sha256 "
        "with the sum Tailscale publishes for it, or --trust-server-checksum to take the "
        "server's own .sha256 (which proves only that the download is whole)"
    )


def validate_base_url(base_url: str) -> str:
    """Return ``base_url`` without a trailing slash if it is an http(s) URL, else raise."""
    try:
        parsed = urllib.parse.urlsplit(base_url)
        valid = parsed.scheme in ("http", "https") and bool(parsed.hostname)
        valid = valid and not parsed.query and not parsed.fragment and parsed.port != 0
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            f'--base-url: "{base_url}" is not an http(s) URL of a folder like {DEFAULT_BASE_URL}'
        )
    return base_url.rstrip("/")


def tailscale_arch(arch: str | None = None) -> str:
    """Map ``arch`` (or this machine's ``platform.machine()``) to tailscale's package name."""
    choices = ", ".join(SUPPORTED_ARCHES)
    if arch is not None:
        if arch in SUPPORTED_ARCHES:
            return arch
        mapped = _MACHINES.get(arch.lower())
        if mapped is None:
            raise ConfigError(
                f'--arch: "{arch}" is not a tailscale architecture; use one of {choices}'
            )
        return mapped
    machine = platform.machine()
    mapped = _MACHINES.get(machine.lower())
    if mapped is None:
        raise ConfigError(
            f'--arch: this machine is "{machine}", which has no tailscale static build that '
            f"spacetail knows; pass --arch with one of {choices}"
        )
    return mapped


def package_urls(version: str, base_url: str, arch: str) -> tuple[str, str]:
    """The URLs of the package and of its ``.sha256`` file."""
    url = f"{validate_base_url(base_url)}/{package_name(validate_version(version), arch)}"
    return url, url + ".sha256"


def _read_marker(folder: Path) -> dict[str, object] | None:
    # A marker that is not a regular file (a FIFO would block the install for ever), is too
    # large, or nests too deep is no marker: the folder is installed again.
    try:
        with open(open_regular(folder / _MARKER, os.O_RDONLY), "rb") as f:
            data = json.loads(f.read(_MARKER_MAX_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _verified(folder: Path, version: str, arch: str) -> bool:
    """Whether ``folder`` holds this version and arch, its executables unchanged since install."""
    marker = _read_marker(folder)
    if marker is None or marker.get("version") != version or marker.get("arch") != arch:
        return False
    hashes = marker.get("sha256")
    if not isinstance(hashes, dict):
        return False
    for name in EXECUTABLES:
        path = folder / name
        try:
            if not path.is_file() or path.is_symlink() or not os.access(path, os.X_OK):
                return False
            if hashes.get(name) != sha256_file(path):
                return False
        except OSError:
            return False
    return True


def _remove_partials(dest: Path) -> None:
    # Only called with the install lock held, so no other install is using these.
    for child in dest.iterdir():
        if child.name.startswith(_PARTIAL_PREFIX) and child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)


def _replace(staging: Path, final: Path, dest: Path) -> None:
    """Put ``staging`` at ``final`` with renames, so ``final`` is never half written."""
    if not final.exists() and not final.is_symlink():
        os.rename(staging, final)
        return
    old = Path(tempfile.mkdtemp(prefix=_PARTIAL_PREFIX, dir=dest))
    # A running tailscaled keeps its open executable; the stale folder goes after the swap.
    os.rename(final, old / "old")
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def _replace_files(staging: Path, dest: Path) -> None:
    """Move the executables, then the marker, from ``staging`` into ``dest`` (a PATH folder
    such as ~/.local/bin that holds other files); each rename is atomic, the marker comes last
    so a half-done install is never taken for a finished one."""
    (dest / _MARKER).unlink(missing_ok=True)
    for name in (*EXECUTABLES, _MARKER):
        os.replace(staging / name, dest / name)


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def _lock(dest: Path, deadline: Deadline, log: Callable[[str], None]) -> filelock.BaseFileLock:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperationFailed(f"cannot create install folder {dest}: {exc}") from None
    wait = max(0.0, min(LOCK_TIMEOUT, deadline.remaining()))
    lock = filelock.FileLock(dest / _LOCK_NAME, timeout=wait)
    try:
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            log(f"waiting for another spacetail installing into {dest}")
            lock.acquire()
    except filelock.Timeout:
        deadline.check(f"waiting for another spacetail installing into {dest}")
        raise OperationFailed(
            f"another spacetail held the install lock {dest / _LOCK_NAME} for "
            f"{wait:.0f} s; try again or pick another install folder"
        ) from None
    except OSError as exc:
        raise OperationFailed(f"cannot lock install folder {dest}: {exc}") from None
    return lock


@dataclass(frozen=True)
class _Job:
    """One install: what to fetch, what it must hash to, by when."""

    version: str
    base_url: str
    arch: str
    checksum: Checksum
    deadline: Deadline


def _fetch(job: _Job, staging: Path) -> tuple[Path, int]:
    """Download and verify the package into ``staging``; unpack the executables and the
    marker into ``staging/out``. Return that folder and the package's size."""
    version, arch = job.version, job.arch
    url, sha_url = package_urls(version, job.base_url, arch)
    pkg = package_name(version, arch)
    folder = staging / "download"
    folder.mkdir()
    expected = job.checksum.value
    if expected is None:
        expected = server_sha256(sha_url, folder / (pkg + ".sha256"), job.deadline)
    archive = folder / pkg
    size, actual = download(url, archive, MAX_PACKAGE_BYTES, job.deadline)
    if actual != expected:
        raise OperationFailed(
            f"checksum mismatch for {pkg}: expected {expected} ({job.checksum.source}), "
            f"got {actual}; nothing was installed"
        )
    out = staging / "out"
    out.mkdir()
    hashes = unpack(archive, version, arch, out, job.deadline)
    marker = {"version": version, "arch": arch, "package_sha256": actual, "sha256": hashes}
    (out / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    # Readable by other users: a root-run install may serve the unprivileged runner.
    (out / _MARKER).chmod(0o644)
    out.chmod(0o755)
    return out, size


def _install(job: _Job, dest: Path, final: Path, *, log: Callable[[str], None]) -> Path:
    """Install into ``final``: ``dest/version`` (a cache) or ``dest`` itself (a PATH folder)."""
    version, base_url, arch = job.version, job.base_url, job.arch
    if _verified(final, version, arch):
        log(f"tailscale {version} ({arch}) already installed in {final}")
        return final
    lock = _lock(dest, job.deadline, log)
    try:
        # Another process may have finished the same install while this one waited.
        if _verified(final, version, arch):
            log(f"tailscale {version} ({arch}) already installed in {final}")
            return final
        _remove_partials(dest)
        staging = Path(tempfile.mkdtemp(prefix=_PARTIAL_PREFIX, dir=dest))
        try:
            url = package_urls(version, base_url, arch)[0]
            log(f"downloading tailscale {version} ({arch}) from {url}")
            out, size = _fetch(job, staging)
            if final == dest:
                _replace_files(out, dest)
            else:
                _replace(out, final, dest)
        except OSError as exc:
            raise OperationFailed(
                f"cannot install tailscale {version} into {final}: {exc}; nothing was installed"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    log(
        f"downloaded tailscale {version} ({arch}, {_megabytes(size)}), "
        f"sha256 verified ({job.checksum.source}), installed in {final}"
    )
    return final


def _job(
    version: str,
    base_url: str,
    arch: str | None,
    *,
    sha256: str | None,
    trust_server: bool,
    timeout: float,
) -> _Job:
    version = validate_version(version)
    arch = tailscale_arch(arch)
    return _Job(
        version,
        validate_base_url(base_url),
        arch,
        expected_checksum(version, arch, sha256, trust_server=trust_server),
        Deadline(timeout, TIMEOUT_SETTING),
    )


def install_cached(
    version: str,
    base_url: str,
    root: Path | None = None,
    arch: str | None = None,
    *,
    sha256: str | None = None,
    trust_server: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Install tailscale ``version`` into the versioned cache ``root/version`` (default root:
    default_install_dir(), where ``up`` finds it with find_installed) and return that folder.

    Downloads the static package from ``base_url`` and checks its digest before unpacking
    against ``sha256``, else the pin (PINNED_SHA256), else, with ``trust_server`` only, the
    ``.sha256`` the same server sends. Unpacks only ``tailscale`` and ``tailscaled``. A folder
    already installed and still matching its recorded digests is reused. Gives up after
    ``timeout`` seconds in all.
    """
    job = _job(version, base_url, arch, sha256=sha256, trust_server=trust_server, timeout=timeout)
    root = Path(default_install_dir() if root is None else root).absolute()
    return _install(job, root, root / job.version, log=log)


def install_tailscale(
    version: str,
    base_url: str,
    dest: Path | None = None,
    arch: str | None = None,
    *,
    sha256: str | None = None,
    trust_server: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """Install tailscale ``version`` and return the folder that holds ``tailscale`` and
    ``tailscaled``.

    Without ``dest`` (or with dest = default_install_dir()) that is the versioned cache, as
    install_cached. With ``dest`` (``--dest ~/.local/bin``) the two executables go IN dest, next
    to what is there, with a hidden marker recording their digests.
    """
    if dest is None or Path(dest).absolute() == default_install_dir().absolute():
        return install_cached(
            version, base_url, None, arch, sha256=sha256, trust_server=trust_server,
            timeout=timeout, log=log,
        )  # fmt: skip
    job = _job(version, base_url, arch, sha256=sha256, trust_server=trust_server, timeout=timeout)
    dest = Path(dest).absolute()
    return _install(job, dest, dest, log=log)


def install_from_settings(
    raw: Mapping[str, tuple[str, str]],
    dest: Path | None,
    arch: str | None,
    *,
    log: Callable[[str], None] = _stderr,
) -> Path:
    """install_tailscale with the settings of settings.INSTALL: key -> (name, raw text), a
    flag or else its variable (an empty one is unset)."""
    from spacetail.config.loader import MAX_DURATION, parse_bool, parse_seconds

    def text(key: str) -> tuple[str, str]:
        name, value = raw[key]
        return name, value.strip()

    name, version = text("version")
    version = validate_version(version, name) if version else DEFAULT_VERSION
    base_url = text("base-url")[1] or DEFAULT_BASE_URL
    sha256 = text("sha256")[1] or None
    name, trust = text("trust-server-checksum")
    name_t, timeout_text = text("timeout")
    timeout = (
        parse_seconds(name_t, timeout_text, maximum=MAX_DURATION)
        if timeout_text
        else DEFAULT_TIMEOUT
    )
    return install_tailscale(
        version, base_url, dest, arch, sha256=sha256, trust_server=parse_bool(name, trust),
        timeout=timeout, log=log,
    )  # fmt: skip
