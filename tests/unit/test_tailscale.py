"""Reading tailscale's own words: which login errors are worth a retry, and what to tell a person.
The texts are the real 1.96.4 CLI's and tailscaled's, as seen in the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacetail.config import loader
from spacetail.state.paths import Paths
from spacetail.tailnet import failures, tailscale

TRANSIENT = [
    # tailscaled's Health against a closed login server (real 1.96.4)
    'fetch control key: Get "http://127.0.0.1:9/key?v=133": dial tcp 127.0.0.1:9: connect: '
    "connection refused",
    # the real CLI with an OAuth secret and no DNS
    'Post "https://api.tailscale.com/api/v2/tailnet/-/keys": Post "https://api.tailscale.com/api/'
    'v2/oauth/token": dial tcp: lookup api.tailscale.com on 10.0.0.53:53: no such host',
    # the real CLI with workload identity and a closed login server
    "failed to exchange JWT for access token: unexpected token exchange request error: Post "
    '"http://127.0.0.1:1/api/v2/oauth/token-exchange": dial tcp 127.0.0.1:1: connect: connection '
    "refused",
    "HTTP 503 Service Unavailable",
    "connection reset by peer",
]
PERMANENT = [
    "invalid key: API key does not exist",
    "invalid key: API key k123 not valid",
    "invalid key: unable to validate API key",
    "requested tags [tag:ci] are invalid or not permitted",
    "oauth authkeys require --advertise-tags",
    "federated identity authkeys require --advertise-tags",
    "failed to exchange JWT for access token: token exchange failed with status 401: {}",
    'invalid value "x" for --exit-node; must be IP or unique node name',
    "flag provided but not defined: -bogus",
    # Headscale v0.29.2's words, as tailscale 1.102.3 reports them (tests/realnet)
    "invalid pre auth key",
    "handling register with auth key: invalid auth key: crypto/bcrypt: hashedPassword is not "
    "the hash of the given password",
    "handling register with auth key: failed to parse auth-key: hash length mismatch, expected "
    "64 chars, got 65",
    "authkey already used",
    "authkey expired",
]


@pytest.mark.parametrize("text", TRANSIENT)
def test_transient(text: str) -> None:
    assert failures.diagnose(text).retryable


@pytest.mark.parametrize("text", PERMANENT)
def test_permanent(text: str) -> None:
    assert not failures.diagnose(text).retryable


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("invalid key: API key does not exist", "TS_AUTHKEY"),
        ("requested tags [tag:ci] are invalid or not permitted", "SPACETAIL_TAGS"),
        ('invalid value "x" for --exit-node; must be IP or unique node name', "TS_EXIT_NODE"),
        ("failed to exchange JWT for access token: status 401", "TS_CLIENT_ID"),
        (TRANSIENT[0], "TS_LOGIN_SERVER"),
    ],
)
def test_advice_names_the_setting(text: str, names: str) -> None:
    assert names in failures.diagnose(text).advice


def test_login_error_from_health() -> None:
    health = ["Tailscale is starting. Please wait.",
              "You are logged out. The last login error was: fetch control key: boom"]  # fmt: skip
    assert failures.login_error(health) == "fetch control key: boom"
    assert failures.login_error(["Tailscale is stopped."]) is None


def test_clean_env_drops_proxies_and_secrets() -> None:
    env = {"PATH": "/bin", "HTTP_PROXY": "x", "no_proxy": "y", "TS_AUTHKEY": "k",
           "SPACELIFT_OIDC_TOKEN": "t", "HOME": "/h"}  # fmt: skip
    assert tailscale.clean_env(env) == {"PATH": "/bin", "HOME": "/h"}


def test_command_lines_never_hold_a_secret(tmp_path: Path) -> None:
    cfg = loader.load({"TS_AUTHKEY": "tskey-auth-SECRET", "SPACETAIL_TAGS": "tag:ci"})
    paths = Paths(tmp_path / "s", tmp_path / "r")
    binaries = tailscale.Binaries(Path("/bin/tailscale"), Path("/bin/tailscaled"))
    argv = tailscale.up_argv(binaries, cfg, paths, tmp_path / "key", 30)
    assert f"--auth-key=file:{tmp_path / 'key'}" in argv
    assert not [a for a in argv if "SECRET" in a]
    assert "--timeout=30000ms" in argv and "--advertise-tags=tag:ci" in argv
    daemon = tailscale.tailscaled_argv(binaries, cfg, paths)
    assert "--state=mem:" in daemon and "--tun=userspace-networking" in daemon


def test_oauth_secret_gets_ephemeral_and_preauthorized() -> None:
    cfg = loader.load({"TS_CLIENT_SECRET": "tskey-client-x", "SPACETAIL_TAGS": "tag:ci"})
    assert tailscale.secret_payload(cfg) == "tskey-client-x?ephemeral=true&preauthorized=true"
    cfg = loader.load({"TS_CLIENT_SECRET": "tskey-client-x?ephemeral=false",
                       "SPACETAIL_TAGS": "tag:ci"})  # fmt: skip
    assert tailscale.secret_payload(cfg) == "tskey-client-x?ephemeral=false"  # the user's say


@pytest.mark.parametrize(
    ("peer", "argument"),
    [
        ("db.example.ts.net", "db.example.ts.net."),  # tailscale ping matches DNSName exactly
        ("db.example.ts.net.", "db.example.ts.net."),
        ("db", "db"),  # a short name matches as it is
        ("100.64.0.8", "100.64.0.8"),
        ("fd7a:115c:a1e0::8", "fd7a:115c:a1e0::8"),
    ],
)
def test_ping_gets_a_full_name_with_its_final_dot(peer: str, argument: str) -> None:
    assert tailscale.ping_target(peer) == argument
