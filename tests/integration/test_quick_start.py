"""The README's quick start, literally: a clean `git clone` of this repository, a fresh
virtualenv, `pip install .`, and `spacetail --version` answers. Only the repository's URL is
replaced, by this repository on disk (a clone sees only what is committed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from spacetail import __version__
from tests import install_docs


def test_quick_start_from_a_clean_clone(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (install_docs.REPO / ".git").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("git and a git checkout are needed for the quick-start test")
        pytest.skip("not a git checkout, or no git")
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "spacetail").symlink_to(install_docs.REPO)  # clones into ./spacetail, as the URL
    lines = [
        line.replace(install_docs.ORG_URL, str(origin / "spacetail"))
        for line in install_docs.quick_start()
    ]
    work = tmp_path / "newcomer"
    work.mkdir()
    result = subprocess.run(
        ["sh", "-ec", "\n".join(lines)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"spacetail {__version__}"
    venv = work / "spacetail" / ".venv"
    assert (venv / "bin" / "spacetail").is_file()
    # Installed from the clone, not imported from this checkout.
    listing = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import spacetail; print(spacetail.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert str(venv) in listing.stdout
