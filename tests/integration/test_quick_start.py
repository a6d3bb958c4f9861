"""The README's "Try it" install lines, literally, in a clean `git clone` of this repository (a
clone sees only what is committed): a fresh virtualenv, `pip install .`, and `spacetail
--version` answers."""

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
    # A newcomer's shell: no virtualenv active, nothing of this checkout on the import path.
    newcomer_env = {
        k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV") and k != "PYTHONPATH"
    }
    work = tmp_path / "newcomer"
    work.mkdir()
    subprocess.run(
        ["git", "clone", "--quiet", str(install_docs.REPO), "spacetail"],
        cwd=work,
        capture_output=True,
        timeout=120,
        check=True,
    )
    result = subprocess.run(
        ["sh", "-ec", "\n".join(install_docs.quick_start())],
        cwd=work / "spacetail",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=newcomer_env,
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
        env=newcomer_env,
    )
    assert str(venv) in listing.stdout
