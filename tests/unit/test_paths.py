"""The state folder: where it is, that it is private, and short socket paths for long ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spacetail.errors import ConfigError
from spacetail.state import paths as p


def test_state_dir_precedence(tmp_path: Path) -> None:
    both = {"SPACETAIL_DIR": str(tmp_path / "x"), "TF_VAR_spacelift_workspace_root": "/mnt/ws"}
    assert p.state_dir(both) == tmp_path / "x"
    ws = {"TF_VAR_spacelift_workspace_root": "/mnt/workspace"}
    assert p.state_dir(ws) == Path("/mnt/workspace/.spacetail")
    assert p.state_dir({"XDG_RUNTIME_DIR": "/run/user/7"}) == Path("/run/user/7/spacetail/state")
    assert p.state_dir({}) == Path(f"/tmp/runtime-{os.getuid()}/spacetail/state")


def test_private_dir_created_0700(tmp_path: Path) -> None:
    target = tmp_path / "a" / "state"
    p.ensure_private_dir(target)
    assert (target.stat().st_mode & 0o777) == 0o700


def test_private_dir_own_but_loose_is_tightened(tmp_path: Path) -> None:
    target = tmp_path / "s"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    p.ensure_private_dir(target)
    assert (target.stat().st_mode & 0o777) == 0o700


def test_private_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "s"
    target.mkdir()
    target.chmod(0o777)
    with pytest.raises(ConfigError, match=r"^SPACETAIL_DIR: .* writable by other users.*chmod 700"):
        p.ensure_private_dir(target)


def test_private_dir_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match=r"not a plain folder"):
        p.ensure_private_dir(link)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a folder owned by another user")
def test_private_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "s"
    target.mkdir(mode=0o700)
    os.chown(target, 1983, 1983)
    with pytest.raises(ConfigError, match=r"belongs to uid 1983"):
        p.ensure_private_dir(target)


def test_read_only_parent_is_a_clear_error(tmp_path: Path) -> None:
    if os.getuid() == 0:
        pytest.skip("root ignores folder permissions; the read-only mount case is in test_faults")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(ConfigError, match=r"cannot create"):
        p.ensure_private_dir(ro / "state")


def test_short_paths_stay_in_the_state_folder(tmp_path: Path) -> None:
    paths = p.Paths(tmp_path / "state", tmp_path / "run")
    assert paths.control_socket == tmp_path / "state" / "control.sock"
    assert paths.tailscaled_socket.parent == paths.root


def test_long_paths_get_a_short_socket_folder(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "state"
    paths = p.Paths(deep, tmp_path / "run")
    for sock in (paths.control_socket, paths.tailscaled_socket):
        assert len(os.fsencode(sock)) <= p.SOCKET_PATH_MAX
        assert sock.parent != deep
    # Deterministic, so every command finds the same socket without a lookup.
    assert p.Paths(deep, tmp_path / "run").control_socket == paths.control_socket
    assert p.Paths(deep / "x", tmp_path / "run").control_socket != paths.control_socket


def test_secrets_never_in_the_workspace(tmp_path: Path) -> None:
    paths = p.Paths(tmp_path / "workspace" / ".spacetail", tmp_path / "run")
    assert tmp_path / "workspace" not in paths.secrets_dir.parents


def test_folder_above_writable_by_others_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone could rename our folder away and put theirs
    with pytest.raises(ConfigError, match=r"^XDG_RUNTIME_DIR: .*shared \(on the way to .*mode 777"):
        p.ensure_private_dir(shared / "run" / "k", "XDG_RUNTIME_DIR")
    assert not (shared / "run").exists()  # nothing created below it


def test_sticky_folder_above_is_fine_and_levels_are_0700(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    p.ensure_private_dir(sticky / "runtime" / "k")
    assert (sticky / "runtime").stat().st_mode & 0o777 == 0o700
    assert (sticky / "runtime" / "k").stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a folder owned by another user")
def test_folder_above_of_another_user_is_refused_even_when_ours_exists(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    (theirs / "state").mkdir(parents=True, mode=0o700)
    os.chown(theirs, 1984, 1984)
    with pytest.raises(ConfigError, match=r"theirs \(on the way to .*\) belongs to uid 1984"):
        p.check_private_dir(theirs / "state")


def test_symlink_above_is_followed_and_its_target_checked(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    p.ensure_private_dir(tmp_path / "link" / "state")  # root's symlink to a private folder
    target.chmod(0o777)
    with pytest.raises(ConfigError, match=r"real \(on the way to .*link/state\) is writable"):
        p.check_private_dir(tmp_path / "link" / "state")
