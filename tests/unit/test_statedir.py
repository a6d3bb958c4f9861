"""The state folder's rules in isolation: the one gate every command passes (`statedir.check`),
the one reader of its records (bounded in size and depth, ours only), the key folder's cleaning
that never follows a link, and a reply's identity that proves nothing without the record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from spacetail.errors import ConfigError
from spacetail.state import statedir
from spacetail.state.identity import ProcessIdentity
from spacetail.state.paths import Paths
from spacetail.state.status import Status

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root to make files of other uids")


# --- records ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "limit", "within"),
    [
        (b"[" * 200_000, 8, False),
        (b'{"a": [1, {"b": [2]}]}', 4, True),
        (b'{"a": [1, {"b": [2]}]}', 3, False),
        (b'{"a": "[[[[[[[[[[[[[[[[[["}', 1, True),  # brackets in a string do not count
        (b'{"a": "\\"[[[[", "b": 1}', 1, True),  # nor after an escaped quote
        (b'{"a": "\\\\", "b": [[[[]]]]}', 4, False),  # an escaped backslash ends nothing
    ],
)
def test_nesting_is_bounded_without_recursion(raw: bytes, limit: int, within: bool) -> None:
    assert statedir.nested_within(raw, limit) is within


@pytest.mark.parametrize(
    "raw",
    [b"[" * 200_000, b"[" * 50_000, b'{"a": ' + b"[" * 20 + b"]" * 20 + b"}", b"[1]", b"\xff"],
    ids=["200k-deep", "50k-deep", "20-deep", "array", "binary"],
)
def test_a_record_too_deep_or_not_an_object_is_none(raw: bytes) -> None:
    assert statedir.parse_record(raw) is None


def test_a_record_as_the_manager_writes_it_parses(tmp_path: Path) -> None:
    path = tmp_path / "manager.json"
    record = {"manager": {"pid": 7, "start_time": 1}, "proxies": {"http": "x"}, "watch_pid": None}
    statedir.write_private_json(path, record)
    assert statedir.read_record(path) == (record, False)


def test_a_record_over_the_size_bound_is_garbage(tmp_path: Path) -> None:
    path = tmp_path / "manager.json"
    path.write_text(json.dumps({"pad": "x" * statedir.MAX_RECORD}))
    assert statedir.read_record(path) == (None, True)


@ROOT_ONLY
def test_a_record_of_another_uid_is_garbage(tmp_path: Path) -> None:
    path = tmp_path / "manager.json"
    statedir.write_private_json(path, {"manager": None})
    os.chown(path, 1984, 1984)
    assert statedir.read_record(path) == (None, True)


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


# --- a reply is not a proof -------------------------------------------------------------------


def probe(reply_ident: dict[str, Any] | None, record_ident: dict[str, Any] | None) -> Any:
    status = Status.from_json({"running": True, "manager_pid": os.getpid(), "manager": reply_ident})
    record = {"manager": record_ident} if record_ident is not None else None
    return statedir.Probe(status, record, False, True)


def test_a_replys_identity_is_proven_only_when_the_record_names_it() -> None:
    me = ProcessIdentity.of(os.getpid())
    assert me is not None
    other = {**me.to_json(), "start_time": me.start_time + 1}
    assert probe(me.to_json(), me.to_json()).proven_ident == me
    assert probe(me.to_json(), None).proven_ident is None
    assert probe(me.to_json(), other).proven_ident is None
    assert probe({**me.to_json(), "pid_ns": "pid:[1]"}, None).proven_ident is None  # foreign
