"""Fixtures the fault tests share (helpers without fixtures live in tests/faultkit.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def shared_tmp(shared_base: Path, test_id: str) -> Iterator[Path]:
    """A folder like /tmp (root's, mode 1777): anyone may create entries, each its owner's."""
    path = shared_base / f"tmp-{test_id[-8:]}"
    path.mkdir()
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sticky_tmp(shared_tmp: Path) -> Path:
    """The same folder like /tmp, by the name the trust tests give it."""
    return shared_tmp
