"""spacetail.pyz built from this checkout by tools/build_pyz.py, once per test process: the file
the Terraform module mounts and the plugin ships (tests/unit/test_pyz.py checks the builder)."""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

from tools import build_pyz


@functools.cache
def built() -> Path:
    """The built spacetail.pyz (beside it spacetail.pyz.sha256), removed when the tests end."""
    folder = Path(tempfile.mkdtemp(prefix="spacetail-pyz-test-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return build_pyz.build(folder, build_pyz.REPO / "requirements" / "pyz.lock")


def sha256() -> str:
    return hashlib.sha256(built().read_bytes()).hexdigest()
