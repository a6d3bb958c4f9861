"""Reading a failure in tailscale's own words: the line that explains it, its class, the setting
it is about, whether retrying helps, and the advice. The texts are the real 1.96.4's, captured
into tests/fakes/reference/ (see tests/fakes/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spacetail.tailnet import failures
from spacetail.tailnet.failures import Failure, FailureClass, Program

REFERENCE = Path(__file__).resolve().parents[1] / "fakes" / "reference"


def _ref(name: str) -> str:
    return (REFERENCE / name).read_text(encoding="utf-8")


def test_unknown_flag_is_read_from_the_first_line_not_the_usage_text() -> None:
    f = failures.diagnose(_ref("up-unknown-flag.txt"), extra_args=["--bogus-flag"])
    assert f.line == "flag provided but not defined: -bogus-flag"
    assert f.kind is FailureClass.USAGE
    assert f.setting == "TS_EXTRA_ARGS"
    assert not f.retryable
    assert f.exit_code == 2
    assert "TS_EXTRA_ARGS" in f.advice
    assert f.message().startswith("TS_EXTRA_ARGS: flag provided but not defined: -bogus-flag\n")


def test_exit_node_allow_lan_access_alone_is_a_usage_error_of_ts_extra_args() -> None:
    f = failures.diagnose(
        _ref("up-exit-node-allow-lan-access.txt"),
        extra_args=["--accept-dns=false", "--exit-node-allow-lan-access"],
    )
    assert f.line == "--exit-node-allow-lan-access can only be used with --exit-node"
    assert (f.kind, f.setting, f.exit_code, f.retryable) == (
        FailureClass.USAGE,
        "TS_EXTRA_ARGS",
        2,
        False,
    )


def test_a_flag_spacetail_passes_maps_to_its_own_setting() -> None:
    f = failures.diagnose(_ref("up-flag-needs-argument.txt"))
    assert (f.kind, f.setting) == (FailureClass.USAGE, "TS_HOSTNAME")
    f = failures.diagnose('invalid value "x" for --exit-node; must be IP or unique node name')
    assert f.setting == "TS_EXIT_NODE"
    assert "TS_EXIT_NODE must be a tailnet IP" in f.advice


def test_a_usage_error_not_from_the_user_exits_1() -> None:
    f = failures.diagnose("flag provided but not defined: -reset")
    assert f.kind is FailureClass.USAGE and f.setting is None
    assert f.exit_code == 1 and not f.retryable


@pytest.mark.parametrize(
    ("text", "args", "setting"),
    [
        ("tailscaled-unknown-flag-head.txt", ["--bogus"], "TS_TAILSCALED_EXTRA_ARGS"),
        ("tailscaled-non-flag-argument.log", ["extra"], "TS_TAILSCALED_EXTRA_ARGS"),
    ],
)
def test_tailscaled_usage_errors_name_ts_tailscaled_extra_args(
    text: str, args: list[str], setting: str
) -> None:
    f = failures.diagnose(
        _ref(text), Program.TAILSCALED, extra_args=["--bogus"], tailscaled_extra_args=args
    )
    assert (f.kind, f.setting, f.exit_code) == (FailureClass.USAGE, setting, 2)


@pytest.mark.parametrize(
    ("socks5", "http", "setting"),
    [
        ("127.0.0.1:18093", "127.0.0.1:18094", "TS_SOCKS5_SERVER"),
        ("127.0.0.1:1", "127.0.0.1:18093", "TS_OUTBOUND_HTTP_PROXY_LISTEN"),
        ("127.0.0.1:18093", "127.0.0.1:18093", "TS_SOCKS5_SERVER"),
        ("127.0.0.1:1", "127.0.0.1:2", None),
    ],
)
def test_port_in_use_names_the_proxy_setting_by_its_address(
    socks5: str, http: str, setting: str | None
) -> None:
    f = failures.diagnose(
        _ref("tailscaled-port-in-use.log"), Program.TAILSCALED, socks5=socks5, http_proxy=http
    )
    assert f.line == "SOCKS5 listener: listen tcp 127.0.0.1:18093: bind: address already in use"
    assert f.kind is FailureClass.LOCAL and not f.retryable
    assert f.setting == setting
    assert f.exit_code == (2 if setting else 1)
    assert "free 127.0.0.1 port" in f.advice


@pytest.mark.parametrize(
    ("log", "socks5", "http", "setting", "fix"),
    [
        ("tailscaled-http-port-in-use.log", "127.0.0.1:18098", "127.0.0.1:18097",
         "TS_OUTBOUND_HTTP_PROXY_LISTEN", "set TS_OUTBOUND_HTTP_PROXY_LISTEN to a free"),
        ("tailscaled-shared-port-in-use.log", "127.0.0.1:18097", "127.0.0.1:18097",
         "TS_SOCKS5_SERVER", "set TS_SOCKS5_SERVER and TS_OUTBOUND_HTTP_PROXY_LISTEN (they"),
    ],
)  # fmt: skip
def test_http_and_shared_proxy_ports_in_use(
    log: str, socks5: str, http: str, setting: str, fix: str
) -> None:
    f = failures.diagnose(_ref(log), Program.TAILSCALED, socks5=socks5, http_proxy=http)
    assert f.line.endswith("listen tcp 127.0.0.1:18097: bind: address already in use")
    assert (f.kind, f.setting, f.exit_code) == (FailureClass.LOCAL, setting, 2)
    assert fix in f.advice


def test_unbindable_socket_is_local_and_points_at_the_state_folder() -> None:
    f = failures.diagnose(_ref("tailscaled-socket-unbindable.log"), Program.TAILSCALED)
    assert f.line.startswith("safesocket.Listen: listen unix ")
    assert f.line.endswith("bind: no such file or directory")
    assert f.kind is FailureClass.LOCAL and not f.retryable
    assert "SPACETAIL_DIR" in f.advice


@pytest.mark.parametrize(
    "text",
    [
        "[Errno 8] Exec format error: '/usr/local/bin/tailscaled'",
        "[Errno 13] Permission denied: '/usr/local/bin/tailscaled'",
    ],
)
def test_a_binary_that_cannot_run_is_local(text: str) -> None:
    f = failures.diagnose(text, Program.TAILSCALED)
    assert f.kind is FailureClass.LOCAL and f.exit_code == 1
    assert "install-tailscale" in f.advice


def test_closed_login_server_is_retryable_control_unreachable() -> None:
    status = json.loads(_ref("status-login-server-refused.json"))
    error = failures.login_error(status["Health"])
    assert error is not None
    f = failures.diagnose(error)
    assert f.kind is FailureClass.CONTROL_UNREACHABLE and f.retryable
    assert "TS_LOGIN_SERVER" in f.advice


def test_unresolvable_login_server_is_a_dns_failure() -> None:
    status = json.loads(_ref("status-login-server-nxdomain.json"))
    error = failures.login_error(status["Health"])
    assert error is not None and "nonexistent-host.invalid" in error
    f = failures.diagnose(error)
    assert f.kind is FailureClass.DNS_FAILURE and f.retryable
    assert "TS_LOGIN_SERVER" in f.advice


def test_the_cli_timeout_alone_is_timeout_starting() -> None:
    text = (
        "timeout waiting for Tailscale service to enter a Running state; check health with "
        '"tailscale status"'
    )
    f = failures.diagnose(text)
    assert f.kind is FailureClass.TIMEOUT_STARTING and f.retryable
    assert "--timeout" in f.advice


@pytest.mark.parametrize(
    ("text", "kind", "names"),
    [
        ("invalid key: API key does not exist", FailureClass.KEY_REJECTED, "TS_AUTHKEY"),
        ("invalid key: API key k1 has been revoked", FailureClass.KEY_REJECTED, "revoked"),
        ("auth key expired", FailureClass.EXPIRED, "TS_AUTHKEY"),
        (
            "requested tags [tag:ci] are invalid or not permitted",
            FailureClass.TAGS_NOT_PERMITTED,
            "SPACETAIL_TAGS",
        ),
        (
            "federated identity authkeys require --advertise-tags",
            FailureClass.TAGS_NOT_PERMITTED,
            "SPACETAIL_TAGS",
        ),
        (
            "failed to exchange JWT for access token: token exchange failed with status 401: {}",
            FailureClass.WIF_REJECTED,
            "TS_CLIENT_ID",
        ),
        ("something nobody has seen", FailureClass.UNKNOWN, "spacetail doctor"),
    ],
)
def test_classes_and_their_advice(text: str, kind: FailureClass, names: str) -> None:
    f = failures.diagnose(text)
    assert f.kind is kind
    assert names in f.advice
    assert f.exit_code == 1
    assert f.retryable is (kind is FailureClass.UNKNOWN)


def test_every_class_has_one_line_of_advice() -> None:
    for kind in FailureClass:
        advice = Failure(kind, "x").advice
        assert advice and "\n" not in advice


def test_meaningful_line_prefers_the_login_error_over_later_lines() -> None:
    out = "some line\nYou are logged out. The last login error was: fetch control key: boom\nbye"
    assert failures.meaningful_line(out) == "fetch control key: boom"
    assert failures.meaningful_line("") == ""
    assert failures.diagnose("").line == "(no output)"


# --- excerpt ---------------------------------------------------------------------------------


def test_shutdown_chatter_is_left_out_of_the_excerpt(tmp_path: Path) -> None:
    log = REFERENCE / "tailscaled-login-refused-then-sigterm.log"
    lines = failures.excerpt(log, 0)
    text = "\n".join(lines)
    assert "connection refused" in text
    for chatter in ("shutting down", "logger closing down", "Routine: exiting", "flushing log"):
        assert chatter not in text
    # Five identical "Received error" lines are shown once.
    assert sum("Received error" in x for x in lines) == 1
    assert 0 < len(lines) <= 10


def test_excerpt_shows_this_run_only(tmp_path: Path) -> None:
    log = tmp_path / "tailscaled.log"
    earlier = _ref("tailscaled-port-in-use.log")
    log.write_text(earlier)
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write(_ref("tailscaled-login-refused-then-sigterm.log"))
    text = "\n".join(failures.excerpt(log, offset))
    assert "address already in use" not in text
    assert "connection refused" in text
    assert "address already in use" in "\n".join(failures.excerpt(log, 0))


def test_excerpt_of_a_run_without_errors_shows_its_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("2026/01/01 00:00:00 one\n2026/01/01 00:00:00 two\nflushing log.\n")
    assert failures.excerpt(log, 0) == ["2026/01/01 00:00:00 one", "2026/01/01 00:00:00 two"]
    assert failures.excerpt(log, 0, limit=1) == ["2026/01/01 00:00:00 two"]


def test_excerpt_survives_a_missing_or_truncated_log(tmp_path: Path) -> None:
    assert failures.excerpt(tmp_path / "missing.log", 0) == []
    log = tmp_path / "x.log"
    log.write_text("error: short\n")
    assert failures.excerpt(log, 10_000) == ["error: short"]  # offset past the end: rotated


def test_excerpt_reads_a_bounded_tail(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("x" * 100_000 + "\nerror: the end\n")
    assert failures.excerpt(log, 0, max_bytes=1000) == ["error: the end"]


def test_the_words_are_read_in_one_place() -> None:
    from spacetail.tailnet import tailscale

    assert not failures.diagnose("flag provided but not defined: -x").retryable
    assert failures.diagnose("connection refused").retryable
    assert failures.diagnose("hm").kind is failures.FailureClass.UNKNOWN
    assert not hasattr(tailscale, "classify") and not hasattr(tailscale, "advice")
    assert not hasattr(failures, "classify")  # one verdict: a FailureClass, never a string


def test_diagnose_for_takes_the_settings_from_a_config() -> None:
    from spacetail.config import loader

    env = {
        "TS_AUTHKEY": "tskey-auth-x-y",
        "TS_EXTRA_ARGS": "--bogus-flag",
        "TS_TAILSCALED_EXTRA_ARGS": "--bogus",
        "TS_SOCKS5_SERVER": "127.0.0.1:18093",
    }
    cfg = loader.load(env)
    up = failures.diagnose_for(_ref("up-unknown-flag.txt"), Program.UP, cfg)
    assert (up.setting, up.exit_code) == ("TS_EXTRA_ARGS", 2)
    daemon = failures.diagnose_for(
        _ref("tailscaled-unknown-flag-head.txt"), Program.TAILSCALED, cfg
    )
    assert daemon.setting == "TS_TAILSCALED_EXTRA_ARGS"
    port = failures.diagnose_for(_ref("tailscaled-port-in-use.log"), Program.TAILSCALED, cfg)
    assert port.setting == "TS_SOCKS5_SERVER"


def test_the_flag_table_is_kept_once() -> None:
    """config (TS_EXTRA_ARGS) and failures (whose setting a refusal is about) read one table."""
    from spacetail.config import loader, settings

    assert not hasattr(failures, "UP_FLAG_SETTINGS") and not hasattr(loader, "_UP_FLAGS")
    for flag, setting in {**settings.UP_FLAGS, **settings.CREDENTIAL_UP_FLAGS}.items():
        line = f'invalid value "x" for flag -{flag}: parse error'  # Go's flag package
        assert failures.diagnose(line).kind is failures.FailureClass.USAGE
        assert failures.diagnose(line).setting == setting, flag
