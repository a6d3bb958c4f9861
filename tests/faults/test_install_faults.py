"""install-tailscale against hostile or broken mirrors: one that trickles a byte at a time or
never answers cannot keep a hook running past the install's deadline, an archive of many
members cannot make it use memory (or time) for each of them, and a small package that inflates
to gigabytes cannot keep it unpacking past its deadline."""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacetail.errors import OperationFailed
from spacetail.install import package, pins
from tests import helpers
from tests.faultkit import figure
from tests.mirror import Mirror

VERSION = "1.90.0"
ARCH = "amd64"
PKG = f"tailscale_{VERSION}_{ARCH}.tgz"


class SlowMirror:
    """An HTTP server on 127.0.0.1 that answers every request with a large Content-Length and
    then one byte every ``interval`` seconds (or, with ``interval=None``, never answers)."""

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            if self.interval is None:
                self.stop.wait(30)
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            # Bounded: the server stops by itself whatever the client does.
            for _ in range(int(30 / self.interval)):
                if self.stop.wait(self.interval):
                    return
                try:
                    conn.sendall(b"x")
                except OSError:
                    return
                self.sent += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.fixture
def slow_mirror(request: pytest.FixtureRequest) -> Iterator[SlowMirror]:
    mirror = SlowMirror(request.param)
    try:
        yield mirror
    finally:
        mirror.close()


@pytest.mark.parametrize(
    ("slow_mirror", "doing"),
    [(0.2, "downloading"), (None, "connecting to")],
    indirect=["slow_mirror"],
    ids=["a-byte-every-0.2s", "never-answers"],
)
def test_a_slow_mirror_cannot_keep_install_running_past_its_deadline(
    slow_mirror: SlowMirror, doing: str, tmp_path: Path
) -> None:
    """The issue's mirror sent a byte every 5 s and kept install-tailscale running past 45 s
    (each byte reset the per-read timeout). Here the deadline is 1 s: the command ends within
    it and a little, exit 1, nothing installed, one line naming the limit and its setting."""
    base = f"http://127.0.0.1:{slow_mirror.port}/stable"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "spacetail", "install-tailscale", "--version", VERSION,
         "--sha256", "0" * 64, "--base-url", base, "--timeout", "1s"],
        env=env, capture_output=True, text=True, timeout=30, check=False, cwd=helpers.REPO,
    )  # fmt: skip
    took = time.monotonic() - start
    figure(f"install_deadline_1s_{doing.split(maxsplit=1)[0]}", took, "s")
    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        f"spacetail: error: gave up after 1 s (--timeout, SPACETAIL_INSTALL_TIMEOUT) {doing} "
        f"{base}/{PKG}"
    ), result.stderr
    assert last.endswith("nothing was installed; check --base-url, or raise the limit")
    # The interpreter's start and the error's way out, on 2 shared cores.
    assert took < 4.0, result.stderr
    assert not list((tmp_path / "spacetail" / "tailscale").glob(VERSION))


def many_empty_members(count: int) -> bytes:
    """A gzipped tar of COUNT empty regular files, built from one repeated header (fast)."""
    info = tarfile.TarInfo("x")
    info.size = 0
    header = info.tobuf(tarfile.USTAR_FORMAT)
    assert len(header) == 512
    return gzip.compress(header * count + b"\0" * 1024, compresslevel=1)


def test_an_archive_of_many_members_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """The issue's archive of 500,000 empty members took 263 MB and 9 s: every member was
    read into a list first. 200,000 here: the members are read one at a time, none kept, and
    the archive is refused once it holds more than any tailscale package."""
    archive = tmp_path / PKG
    archive.write_bytes(many_empty_members(200_000))
    staging = tmp_path / "out"
    staging.mkdir()
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(OperationFailed) as excinfo:
            package.unpack(archive, VERSION, ARCH, staging)
        took = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    figure("unpack_200k_members_peak", peak / 1e6, " MB")
    figure("unpack_200k_members_time", took, "s")
    assert str(excinfo.value) == (
        f"{PKG} holds more than {package.MAX_MEMBERS} members, which no tailscale package "
        "does; nothing was installed"
    )
    assert peak < 2_000_000
    assert list(staging.iterdir()) == []


def test_many_members_within_the_bound_still_unpack(tmp_path: Path) -> None:
    """The bound is on members read, and a real package (a folder, two executables, a systemd
    folder of two files) is far below it."""
    prefix = f"tailscale_{VERSION}_{ARCH}"
    archive = tmp_path / PKG
    with tarfile.open(archive, "w:gz") as tar:
        for i in range(package.MAX_MEMBERS - 2):
            tar.addfile(tarfile.TarInfo(f"{prefix}/doc/{i}"))
        for name in pins.EXECUTABLES:
            data = f"#!/bin/sh\necho {name}\n".encode()
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    staging = tmp_path / "out"
    staging.mkdir()
    hashes = package.unpack(archive, VERSION, ARCH, staging)
    assert hashes == {
        name: hashlib.sha256(f"#!/bin/sh\necho {name}\n".encode()).hexdigest()
        for name in pins.EXECUTABLES
    }


def crc32_of_zeros(crc: int, count: int) -> int:
    """zlib.crc32 of COUNT more zero bytes after CRC, without the bytes: the register's shift by
    one zero bit is linear over GF(2), so its power for COUNT bytes comes by squaring (zlib's
    crc32_combine)."""

    def times(matrix: list[int], vector: int) -> int:
        out = 0
        for column in matrix:
            if not vector:
                break
            if vector & 1:
                out ^= column
            vector >>= 1
        return out

    def square(matrix: list[int]) -> list[int]:
        return [times(matrix, column) for column in matrix]

    op = [0xEDB88320] + [1 << i for i in range(31)]  # one zero bit
    for _ in range(3):
        op = square(op)  # one zero byte
    register = crc ^ 0xFFFFFFFF
    while count:
        if count & 1:
            register = times(op, register)
        op = square(op)
        count >>= 1
    return register ^ 0xFFFFFFFF


def inflating_package(mib: int) -> bytes:
    """A valid package whose first member is MIB MiB of zeros, then the two executables: a
    compressed MiB of zeros (about 1 KB, flushed in full, so it refers to nothing before it)
    repeated MIB times, so that building 6,000 MiB takes milliseconds, not a minute."""
    prefix = f"tailscale_{VERSION}_{ARCH}"
    zeros = tarfile.TarInfo(f"{prefix}/zeros")
    zeros.size = mib << 20
    head = zeros.tobuf(tarfile.USTAR_FORMAT)
    tail = b""
    for name in pins.EXECUTABLES:
        data = f"#!/bin/sh\necho {name}\n".encode()
        info = tarfile.TarInfo(f"{prefix}/{name}")
        info.size = len(data)
        tail += info.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)
    tail += b"\0" * 1024
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    body += (packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)) * mib
    body += packer.compress(tail) + packer.flush()
    crc = zlib.crc32(tail, crc32_of_zeros(zlib.crc32(head), mib << 20))
    size = len(head) + (mib << 20) + len(tail)
    return b"\x1f\x8b\x08\0\0\0\0\0\0\xff" + body + struct.pack("<II", crc, size & 0xFFFFFFFF)


def test_the_zero_bytes_package_is_what_it_says() -> None:
    """The builder's arithmetic, on a size small enough to inflate here."""
    assert crc32_of_zeros(zlib.crc32(b"x"), 100_000) == zlib.crc32(bytes(100_000), zlib.crc32(b"x"))
    with tarfile.open(fileobj=io.BytesIO(inflating_package(3)), mode="r:gz") as tar:
        names = [(m.name.split("/")[-1], m.size) for m in tar]
    assert names == [("zeros", 3 << 20), ("tailscale", 25), ("tailscaled", 26)]


def install(
    mirror: Mirror, tmp_path: Path, sha256: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "spacetail", "install-tailscale", "--version", VERSION,
         "--sha256", sha256, "--base-url", mirror.base_url, "--timeout", "1s"],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=helpers.REPO,
    )  # fmt: skip
    return result, time.monotonic() - start


def test_a_package_that_inflates_to_gigabytes_is_refused_before_unpacking(
    mirror: Mirror, tmp_path: Path
) -> None:
    """Issue 28 item 6: a 6.3 MB package holding a 6,000 MiB member of zeros, with a matching
    --sha256 and --timeout 1s, was installed after 15.0 s (the deadline stopped at the
    download). The members' declared sizes add up past the bound at the first header: refused
    before a byte is inflated or written."""
    data = inflating_package(6000)
    mirror.publish(VERSION, ARCH, data)
    result, took = install(mirror, tmp_path, hashlib.sha256(data).hexdigest())
    figure("install_6000MiB_member_package_MB", len(data) / 1e6, " MB")
    figure("install_6000MiB_member_refused", took, "s")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"spacetail: error: {PKG} unpacks to more than 512 MiB ('tailscale_{VERSION}_{ARCH}/zeros' "
        f"alone is {6000 << 20} bytes), which no tailscale package does; nothing was installed"
    ), result.stderr
    assert took < 4.0  # the interpreter's start and a 6 MB download, on 2 shared cores
    assert not list((tmp_path / "spacetail" / "tailscale").glob(VERSION))


def test_unpacking_within_the_bound_keeps_the_installs_deadline(tmp_path: Path) -> None:
    """Under the bound (500 MiB of zeros: about a second's inflating), the install's deadline
    still holds while unpacking: it gives up within a chunk of it, nothing written."""
    archive = tmp_path / PKG
    archive.write_bytes(inflating_package(500))
    staging = tmp_path / "out"
    staging.mkdir()
    start = time.monotonic()
    with pytest.raises(OperationFailed) as excinfo:
        package.unpack(archive, VERSION, ARCH, staging, package.Deadline(0.1, "--timeout"))
    took = time.monotonic() - start
    figure("unpack_500MiB_deadline_0.1s", took, "s")
    assert str(excinfo.value) == (
        f"gave up after 0.1 s (--timeout) unpacking {PKG}; nothing was installed; check "
        "--base-url, or raise the limit"
    )
    assert took < 0.5
    assert list(staging.iterdir()) == []
