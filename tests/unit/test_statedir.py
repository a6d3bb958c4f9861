"""The state folder's rules in isolation: the one gate every command passes (`statedir.check`),
and the key folder's cleaning that never follows a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spacetail import statedir
from spacetail.errors import ConfigError
from spacetail.paths import Paths

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root to make files of other uids")


# --- the key folder ---------------------------------------------------------------------------


def paths_in(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", tmp_path / "run")


def test_clear_secrets_never_follows_a_link_at_the_key_folder(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "auth-precious").write_text("not spacetail's")
    paths.runtime.mkdir()
    paths.secrets_dir.symlink_to(elsewhere)
    assert statedir.clear_secrets(paths) == []
    assert (elsewhere / "auth-precious").exists()


def test_clear_secrets_removes_only_key_files(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    paths.secrets_dir.mkdir(parents=True)
    (paths.secrets_dir / "auth-1-1").write_text("k")
    (paths.secrets_dir / "other").write_text("o")
    assert statedir.clear_secrets(paths) == ["auth-1-1"]
    assert os.listdir(paths.secrets_dir) == ["other"]


# --- the gate ---------------------------------------------------------------------------------


def test_check_creates_nothing_and_says_whether_the_state_folder_exists(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    assert statedir.check(paths) is False
    assert os.listdir(tmp_path) == []
    statedir.prepare(paths)
    assert statedir.check(paths) is True


@ROOT_ONLY
def test_check_refuses_a_missing_folder_below_another_users_folder(tmp_path: Path) -> None:
    """Nothing to look at yet, but its owner could create it the moment after the look."""
    theirs = tmp_path / "runtime-1983"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 1984, 1984)
    paths = Paths(tmp_path / "state", theirs / "spacetail")
    with pytest.raises(ConfigError, match=r"XDG_RUNTIME_DIR: .*runtime-1983 \(on the way to .*"
                       r"belongs to uid 1984"):  # fmt: skip
        statedir.check(paths)
    assert os.listdir(theirs) == []


@ROOT_ONLY
def test_check_refuses_a_state_folder_of_another_uid(tmp_path: Path) -> None:
    paths = paths_in(tmp_path)
    paths.root.mkdir(mode=0o700)
    os.chown(paths.root, 1984, 1984)
    with pytest.raises(ConfigError, match="belongs to uid 1984"):
        statedir.check(paths)
