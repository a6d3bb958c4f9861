"""spacetail.pyz (tools/build_pyz.py, `tox -e pyz`): one file holding spacetail and its locked
dependencies, byte-identical from one build of a commit to the next, under Spacelift's
mounted-file limit, running on a bare python3 of every version the package supports."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests import pyz
from tools import build_pyz

REPO = build_pyz.REPO
LOCK = REPO / "requirements" / "pyz.lock"


def locked() -> dict[str, str]:
    """The lock file's pins: name -> version; every pin carries a sha256."""
    text = LOCK.read_text("utf-8").replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        match = re.fullmatch(r"([a-z0-9-]+)==(\S+)\s+--hash=sha256:([0-9a-f]{64})", line)
        assert match, f"requirements/pyz.lock: not NAME==VERSION --hash=sha256:...: {line!r}"
        pins[match.group(1)] = match.group(2)
    return pins


def test_the_lock_pins_every_dependency_within_the_packages_ranges() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    wanted = {Requirement(d).name: Requirement(d) for d in project["dependencies"]}
    pins = locked()
    assert set(pins) == set(wanted)
    for name, version in pins.items():
        assert Version(version) in wanted[name].specifier, (name, version)


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    first = build_pyz.build(tmp_path / "a", LOCK)
    second = build_pyz.build(tmp_path / "b", LOCK)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() == pyz.built().read_bytes()


def test_the_pyz_and_its_sum(tmp_path: Path) -> None:
    built = pyz.built()
    assert built.name == "spacetail.pyz"
    assert built.stat().st_size <= build_pyz.MAX_BYTES <= 2_000_000
    assert built.stat().st_mode & 0o777 == 0o755
    digest = hashlib.sha256(built.read_bytes()).hexdigest()
    assert (built.parent / "spacetail.pyz.sha256").read_text() == f"{digest}  spacetail.pyz\n"
    assert built.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_members_are_fixed_and_complete() -> None:
    with zipfile.ZipFile(pyz.built()) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        main = zf.read("__main__.py").decode()
    assert names == sorted(names)
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos)
    assert all(i.external_attr >> 16 == 0o100644 for i in infos)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "from spacetail.cli import main" in main
    own = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "spacetail").rglob("*")
        if (p.suffix == ".py" or p.name == "py.typed") and "__pycache__" not in p.parts
    }
    assert {n for n in names if n.startswith("spacetail/")} == own
    for name in locked():
        assert f"{name}/__init__.py" in names or f"{name}.py" in names, name
    # Nothing of pip's own record of this install, which could name the machine.
    assert not [n for n in names if n.rsplit("/", 1)[-1] in build_pyz.SKIP_NAMES]


def test_sub_packages_are_included(tmp_path: Path) -> None:
    """The package is being split into sub-packages: every .py under spacetail/ goes in."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "spacetail", repo / "spacetail",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    nested = repo / "spacetail" / "commands" / "deep"
    nested.mkdir(parents=True)
    (repo / "spacetail" / "commands" / "__init__.py").write_text("")
    (nested / "__init__.py").write_text("X = 1\n")
    (nested / "notes.txt").write_text("not code\n")
    built = build_pyz.build(tmp_path / "out", LOCK, repo=repo)
    with zipfile.ZipFile(built) as zf:
        names = set(zf.namelist())
    assert {"spacetail/commands/__init__.py", "spacetail/commands/deep/__init__.py"} <= names
    assert "spacetail/commands/deep/notes.txt" not in names


def test_source_date_epoch_moves_every_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    with zipfile.ZipFile(build_pyz.build(tmp_path, LOCK)) as zf:
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}


def _python(version: str) -> str:
    found = shutil.which(f"python{version}")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"python{version} is not installed")
        pytest.skip(f"python{version} is not installed")
    return found


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_it_runs_on_a_bare_python(version: str, tmp_path: Path) -> None:
    """-I: no PYTHONPATH, no user site, nothing of this checkout: only the pyz."""
    python = _python(version)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "SPACETAIL_DIR": str(tmp_path / "state")}  # fmt: skip
    run = [python, "-I", str(pyz.built())]
    result = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=60,
                            check=False, env=env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("spacetail ")
    result = subprocess.run([*run, "status", "--json"], capture_output=True, text=True,
                            timeout=60, check=False, env=env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["running"] is False
    assert status["state_dir"] == str(tmp_path / "state")
