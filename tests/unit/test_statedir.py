"""The state folder's rules in isolation: the one gate every command passes before it trusts
anything there (`statedir.check`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spacetail import statedir
from spacetail.errors import ConfigError
from spacetail.paths import Paths

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root to make files of other uids")


def paths_in(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", tmp_path / "run")


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
