"""install-tailscale against hostile or broken mirrors: an archive of many members cannot make it
use memory (or time) for each of them."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from spacetail import package
from spacetail.errors import OperationFailed
from tests.faults.test_faults import figure

VERSION = "1.90.0"
ARCH = "amd64"
PKG = f"tailscale_{VERSION}_{ARCH}.tgz"


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
        for name in package.EXECUTABLES:
            data = f"#!/bin/sh\necho {name}\n".encode()
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    staging = tmp_path / "out"
    staging.mkdir()
    hashes = package.unpack(archive, VERSION, ARCH, staging)
    assert hashes == {
        name: hashlib.sha256(f"#!/bin/sh\necho {name}\n".encode()).hexdigest()
        for name in package.EXECUTABLES
    }
