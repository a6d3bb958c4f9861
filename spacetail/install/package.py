"""One tailscale release package: downloaded with bounds on what a mirror may send and on how
long it may take, checked against a sha256 before anything is unpacked, and only the two
executables taken out of it, written byte by byte (no name, link, owner or mode from the archive
reaches the disk), reading its members one at a time. Which sha256 it must have, and where the
executables are installed, is install/installer.py's business."""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from spacetail import __version__
from spacetail.errors import OperationFailed
from spacetail.install.pins import EXECUTABLES

DEFAULT_BASE_URL = "https://pkgs.tailscale.com/stable"
# Per blocking socket operation, not for the whole download: a slow but live mirror still works.
REQUEST_TIMEOUT = 30.0
# Bounds on what a mirror may send, so a broken or hostile one cannot fill the disk.
# The real amd64 package is about 33 MB and each executable under 40 MB.
MAX_PACKAGE_BYTES = 256 * 1024 * 1024
MAX_CHECKSUM_BYTES = 4096
MAX_EXECUTABLE_BYTES = 192 * 1024 * 1024
# The real package holds a folder, the two executables and a systemd folder of two files. Each
# member read costs time and a TarInfo, so a package of many (empty) members is refused early.
MAX_MEMBERS = 64
# What the members may add up to, by the sizes their headers declare, summed before any member's
# bytes are read: unpacking reads (and inflates) every byte up to the second executable, so this
# bounds its time as MAX_PACKAGE_BYTES bounds the download's. A gzip of zeros inflates about
# 1000-fold, so a package under MAX_PACKAGE_BYTES could otherwise keep a hook unpacking for
# minutes. The real package adds up to about 80 MB (two executables near 40 MB each, two small
# systemd files); 512 MiB is six times that, and room for both executables at their own cap.
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
_CHUNK = 1024 * 1024
_SHA256_RE = __import__("re").compile(r"[0-9a-f]{64}")


def package_name(version: str, arch: str) -> str:
    """The file name of the static package, e.g. ``tailscale_1.96.4_amd64.tgz``."""
    return f"tailscale_{version}_{arch}.tgz"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _network_reason(reason: object) -> str:
    """An OSError's words without its errno prefix, and what they usually mean."""
    if isinstance(reason, socket.gaierror):
        text = (reason.strerror or str(reason)).lower()
        return f"{text} (no network or DNS?)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    # urllib quotes a proxy variable it cannot parse, password included.
    from spacetail.config.proxyurl import mask_in

    return mask_in(str(reason), os.environ)


def _network_advice(url: str) -> str:
    if url.startswith(DEFAULT_BASE_URL + "/"):
        fix = "use --base-url with a mirror of pkgs.tailscale.com, or the spacetail runner image"
    else:
        fix = "check --base-url, or use the spacetail runner image"
    # A proxy variable saved by an earlier phase may point at a proxy that is gone.
    from spacetail.state.proxyenv import NAMES

    proxies = [v for v in NAMES if os.environ.get(v)]
    return f"{proxies[0]} is set: unset it if that proxy is gone, or {fix}" if proxies else fix


class Deadline:
    """When the whole install must have finished, and the words that say so when it has not."""

    def __init__(self, seconds: float, setting: str) -> None:
        self.seconds = seconds
        self.setting = setting
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def timeout(self) -> float:
        """The timeout of one blocking network operation: never past the deadline."""
        return max(0.001, min(REQUEST_TIMEOUT, self.remaining()))

    def check(self, doing: str) -> None:
        if self.remaining() <= 0:
            raise OperationFailed(
                f"gave up after {self.seconds:g} s ({self.setting}) {doing}; "
                "nothing was installed; check --base-url, or raise the limit"
            )


def _open(url: str, deadline: Deadline) -> BinaryIO:
    # The scheme was checked by validate_base_url.
    request = urllib.request.Request(  # noqa: S310
        url, headers={"User-Agent": f"spacetail/{__version__}"}
    )
    # A fresh opener reads the proxy variables as they are now; urlopen's shared one
    # keeps those of its first use in this process.
    opener = urllib.request.build_opener()
    deadline.check(f"before downloading {url}")
    try:
        # Each blocking operation waits at most this long, so none outlasts the deadline.
        response: BinaryIO = opener.open(request, timeout=deadline.timeout())
    except urllib.error.HTTPError as exc:
        exc.close()
        raise OperationFailed(
            f"download of {url} failed: HTTP {exc.code} {exc.reason}; "
            "check --version, --arch and --base-url"
        ) from None
    except urllib.error.URLError as exc:
        deadline.check(f"connecting to {url}")
        reason = _network_reason(exc.reason)
        raise OperationFailed(f"cannot download {url}: {reason}; {_network_advice(url)}") from None
    except (OSError, ValueError) as exc:
        deadline.check(f"connecting to {url}")
        reason = _network_reason(exc)
        raise OperationFailed(f"cannot download {url}: {reason}; {_network_advice(url)}") from None
    return response


def _read_some(response: BinaryIO, deadline: Deadline) -> bytes:
    """What one receive brings, waiting no later than the deadline."""
    # http.client's response reads from a socket file; the wait of the next receive is bounded
    # by what is left of the deadline, not by a timeout fixed when the connection was made.
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(deadline.timeout())
    chunk: bytes = response.read1(_CHUNK)  # type: ignore[attr-defined]
    return chunk


def download(url: str, target: Path, limit: int, deadline: Deadline) -> tuple[int, str]:
    """Stream ``url`` into ``target``; return its size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with _open(url, deadline) as response, target.open("xb") as out:
        try:
            # read1 returns what one receive brought: a mirror that trickles a byte at a time
            # is measured against the deadline after each, not after a full chunk.
            while chunk := _read_some(response, deadline):
                deadline.check(f"downloading {url} ({size + len(chunk)} bytes so far)")
                size += len(chunk)
                if size > limit:
                    raise OperationFailed(
                        f"download of {url} failed: larger than {limit} bytes; "
                        "is --base-url a tailscale package mirror?"
                    )
                digest.update(chunk)
                out.write(chunk)
        except OperationFailed:
            raise
        except (OSError, ValueError) as exc:
            deadline.check(f"downloading {url} ({size} bytes so far)")
            raise OperationFailed(f"download of {url} failed after {size} bytes: {exc}") from None
    return size, digest.hexdigest()


def server_sha256(url: str, target: Path, deadline: Deadline) -> str:
    """The digest a ``.sha256`` file at ``url`` holds. It proves only that a download is whole:
    whoever serves the package serves this file too."""
    download(url, target, MAX_CHECKSUM_BYTES, deadline)
    fields = target.read_text(encoding="utf-8", errors="replace").split()
    value = fields[0].lower() if fields else ""
    if not _SHA256_RE.fullmatch(value):
        raise OperationFailed(f"{url} does not hold a sha256 digest; nothing was installed")
    return value


def _unsafe_name(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or "\\" in name or ".." in parts


def _members(
    tar: tarfile.TarFile, pkg: str, deadline: Deadline | None
) -> Iterator[tarfile.TarInfo]:
    """The archive's members one at a time, none kept: TarFile.next() remembers each member it
    reads (for getmembers), which costs memory for every member of a hostile archive. Their
    declared sizes are summed as their headers come, before their bytes are read; each member's
    bytes are read through within DEADLINE before the next header."""
    total = 0
    for count in itertools.count(1):
        member = tar.next()
        if member is None:
            return
        tar.members.clear()  # type: ignore[attr-defined]  # typeshed omits the list
        if count > MAX_MEMBERS:
            raise OperationFailed(
                f"{pkg} holds more than {MAX_MEMBERS} members, which no tailscale package does; "
                "nothing was installed"
            )
        total += max(0, member.size)
        if total > MAX_UNPACKED_BYTES:
            raise OperationFailed(
                f"{pkg} unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MiB ({member.name!r} "
                f"alone is {member.size} bytes), which no tailscale package does; "
                "nothing was installed"
            )
        yield member
        _read_through(tar, pkg, member, deadline)


def _read_through(
    tar: tarfile.TarFile, pkg: str, member: tarfile.TarInfo, deadline: Deadline | None
) -> None:
    """Inflate MEMBER's bytes a chunk at a time, checking DEADLINE after each, so that the next
    header's read (which skips them) never inflates more than a chunk unchecked."""
    if deadline is None or not member.isreg() or member.size <= 0:
        return
    source = tar.extractfile(member)
    if source is None:
        return
    with source:
        while source.read(_CHUNK):
            deadline.check(f"unpacking {pkg}")


def _check_member(pkg: str, member: tarfile.TarInfo) -> None:
    if not member.isreg():
        raise OperationFailed(
            f"{pkg}: {member.name!r} is not a regular file; nothing was installed"
        )
    if member.size > MAX_EXECUTABLE_BYTES:
        raise OperationFailed(
            f"{pkg}: {member.name!r} is {member.size} bytes, too large for "
            "a tailscale executable; nothing was installed"
        )


def _copy_out(
    tar: tarfile.TarFile, pkg: str, member: tarfile.TarInfo, target: Path, deadline: Deadline | None
) -> str:
    """Write MEMBER's bytes to TARGET (mode 0755), within DEADLINE; return their sha256."""
    source = tar.extractfile(member)
    if source is None:
        raise OperationFailed(f"{pkg}: cannot read {member.name!r}")
    # Write the bytes ourselves rather than tar.extract: no name, link, owner or mode from the
    # archive ever reaches the file system.
    digest = hashlib.sha256()
    with source, target.open("xb") as out:
        while chunk := source.read(_CHUNK):
            if deadline is not None:
                deadline.check(f"unpacking {pkg}")
            digest.update(chunk)
            out.write(chunk)
    target.chmod(0o755)
    return digest.hexdigest()


def unpack(
    archive: Path, version: str, arch: str, staging: Path, deadline: Deadline | None = None
) -> dict[str, str]:
    """Copy the two executables out of ``archive`` into ``staging``, within ``deadline`` (the
    install's, which the download began); return their sha256. Every member's header is read,
    and their sizes bounded, before anything is written."""
    pkg = package_name(version, arch)
    prefix = f"tailscale_{version}_{arch}/"
    wanted = {prefix + name: name for name in EXECUTABLES}
    found: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in _members(tar, pkg, deadline):
                if _unsafe_name(member.name):
                    raise OperationFailed(
                        f"{pkg} holds an unsafe path {member.name!r}; nothing was installed"
                    )
                name = wanted.get(member.name.removeprefix("./"))
                if name is None:
                    continue
                if name in found:
                    raise OperationFailed(
                        f"{pkg} holds {member.name!r} twice; nothing was installed"
                    )
                _check_member(pkg, member)
                found[name] = member
            missing = [prefix + n for n in EXECUTABLES if n not in found]
            if missing:
                raise OperationFailed(
                    f"{pkg} does not hold {', '.join(missing)}; nothing was installed"
                )
            return {
                name: _copy_out(tar, pkg, m, staging / name, deadline) for name, m in found.items()
            }
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise OperationFailed(f"{pkg} cannot be unpacked: {exc}; nothing was installed") from None
