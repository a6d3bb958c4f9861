"""Fuzzing the configuration parser: for any environment and any flag values, `loader.load`
returns a Config or raises ConfigError whose message is one line starting with the name of a
setting (a variable, a --flag, or TS_EXTRA_ARGS); never any other exception."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spacetail.config import loader
from spacetail.config.loader import Config
from spacetail.errors import ConfigError
from tests import spacelift_oidc

VARIABLES = [
    "TS_AUTHKEY", "TS_AUTH_KEY", "TS_CLIENT_SECRET", "TS_CLIENT_ID", "TS_ID_TOKEN", "TS_AUDIENCE",
    "SPACELIFT_OIDC_TOKEN", "TF_VAR_spacelift_workspace_root", "TF_VAR_spacelift_run_id",
    "TF_VAR_spacelift_stack_id", "TS_EXTRA_ARGS", "TS_TAILSCALED_EXTRA_ARGS", "SPACETAIL_TAGS",
    "TS_HOSTNAME", "TS_ACCEPT_ROUTES", "TS_ACCEPT_DNS", "TS_EXIT_NODE", "TS_LOGIN_SERVER",
    "SPACETAIL_EPHEMERAL", "TS_SOCKS5_SERVER", "TS_OUTBOUND_HTTP_PROXY_LISTEN",
    "SPACETAIL_LOG_UPLOAD", "SPACETAIL_NODE_STATE", "SPACETAIL_TIMEOUT", "SPACETAIL_PEERS",
    "SPACETAIL_WATCH_SHELL", "SPACETAIL_WATCH_PID", "SPACETAIL_MAX_LIFETIME",
    "TS_CLIENT_ID_READ", "TS_CLIENT_ID_WRITE", "TS_AUTHKEY_READ", "TS_AUTHKEY_WRITE",
    "TS_CLIENT_SECRET_READ", "TS_CLIENT_SECRET_WRITE", "SPACETAIL_TAGS_READ",
    "SPACETAIL_TAGS_WRITE",
]  # fmt: skip
FLAGS = [
    "timeout", "hostname", "tags", "accept-routes", "accept-dns", "exit-node", "login-server",
    "ephemeral", "socks5-server", "http-proxy", "log-upload", "node-state", "peer", "watch-shell",
    "watch-pid", "max-lifetime", "tags-read", "tags-write",
]  # fmt: skip
SETTING = re.compile(r"^(?:--[a-z0-9-]+|[A-Za-z_][A-Za-z0-9_.]*)(?: --[a-z0-9-]+)?: \S")

# Values a setting is likely to meet: near-misses of valid ones, plus anything at all (no NUL:
# neither an environment variable nor a command-line argument can hold one).
SPECIAL = [
    "", " ", "0", "1", "-1", "60", "1.5", "1e400", "inf", "nan", "NaN", "0x10", "1_000", "60s",
    "1m", "2h", "500ms", "5x", "true", "false", "yes", "off", "maybe", "127.0.0.1:1080", ":8080",
    "[::1]:1080", "[]:1", "host:0", "host:65536", "host:99999999999999999999", "a b:1",
    "tag:ci", "tag:ci,tag:x", "ci", "tag:", "tskey-auth-x", "tskey-client-x", "file:",
    "file:/", "file:/etc/hostname", "file:/nonexistent", "file:/etc/shadow", "memory",
    "workspace", "https://h.example.com", "http://", "ftp://x", "--hostname=x", "--timeout",
    "--auth-key=k", "--socket=/x", "'unclosed", '"', "a\\", "--hostname x --hostname y",
    "\u0663", "\uff11\uff12", "-", "--", "\t", "Spacelift Run/01", "x" * 300,
    spacelift_oidc.token("read"), spacelift_oidc.token("write"), spacelift_oidc.token(None),
    spacelift_oidc.jwt({"scope": ["read"]}), "eyJ.eyJ.sig",
]  # fmt: skip
VALUES = st.sampled_from(SPECIAL) | st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=40
)


def check(env: Mapping[str, str], flags: Mapping[str, str | None]) -> None:
    try:
        result = loader.load(env, flags)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, message
        assert SETTING.match(message), message
        return
    assert isinstance(result, Config)
    assert 0 < result.timeout <= 1e7 and 0 <= result.max_lifetime <= 1e7
    assert loader.check_hostname("hostname", result.hostname) == result.hostname


@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    env=st.dictionaries(st.sampled_from(VARIABLES), VALUES, max_size=8),
    flags=st.dictionaries(st.sampled_from(FLAGS), st.none() | VALUES, max_size=5),
    key=st.sampled_from(["tskey-auth-ok", "tskey-client-x", "", "file:/nonexistent"]),
)
@example(env={"TS_EXTRA_ARGS": "--hostname=a --hostname=b"}, flags={}, key="k")
@example(env={"TS_EXTRA_ARGS": "--timeout"}, flags={}, key="k")
@example(env={"SPACETAIL_TAGS": "tag:a"}, flags={"tags": "tag:b"}, key="tskey-client-x")
def test_load_returns_config_or_one_line_config_error(
    env: dict[str, str], flags: dict[str, str | None], key: str
) -> None:
    if key and "TS_AUTHKEY" not in env:
        env = {**env, "TS_AUTHKEY": key}
    check(env, flags)


@settings(max_examples=400, deadline=None, database=None)
@given(
    extra=st.lists(
        st.sampled_from(SPECIAL) | st.from_regex(r"--?[a-z-]{1,16}(=\S*)?", fullmatch=True),
        max_size=6,
    )
)
def test_extra_args_never_escape(extra: list[str]) -> None:
    import shlex

    line = " ".join(shlex.quote(a) for a in extra)
    env = {"TS_AUTHKEY": "tskey-auth-ok", "TS_EXTRA_ARGS": line, "TS_TAILSCALED_EXTRA_ARGS": line}
    check(env, {})


@pytest.mark.parametrize(
    ("env", "flags"),
    [
        ({"TS_SOCKS5_SERVER": "127.0.0.1:²"}, {}),
        ({"TS_OUTBOUND_HTTP_PROXY_LISTEN": ":¹"}, {}),
        ({"SPACETAIL_WATCH_PID": "²"}, {}),
        ({}, {"watch-pid": "³"}),
    ],
    ids=["socks5", "http-proxy", "watch-pid-env", "watch-pid-flag"],
)
def test_superscript_digits_are_a_config_error(
    env: dict[str, str], flags: dict[str, str | None]
) -> None:
    check({"TS_AUTHKEY": "tskey-auth-ok", **env}, flags)


def test_file_secret_of_unknown_users_home_is_a_config_error() -> None:
    check({"TS_AUTHKEY": "file:~no-such-user-spacetail/key"}, {})


def test_file_secret_path_with_newline_is_one_line() -> None:
    check({"TS_AUTHKEY": "file:/nonexistent\nsecond line"}, {})
