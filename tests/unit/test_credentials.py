"""Which credential a phase logs in with: containerboot's combination rules (issue 19 item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacetail import config, tailscale
from spacetail.credentials import SECRET_VARIABLES
from spacetail.errors import ConfigError
from spacetail.paths import Paths
from tests.spacelift_oidc import token

READ = token("read")
TAGS = {"SPACETAIL_TAGS": "tag:ci"}


def argv(cfg: config.Config, tmp_path: Path) -> list[str]:
    paths = Paths(tmp_path / "s", tmp_path / "r")
    binaries = tailscale.Binaries(Path("/bin/tailscale"), Path("/bin/tailscaled"))
    return tailscale.up_argv(binaries, cfg, paths, tmp_path / "secret", 30)[3:]


def auth_flags(cfg: config.Config, tmp_path: Path) -> list[str]:
    names = ("--auth-key", "--client-id", "--client-secret", "--id-token", "--audience")
    return [a for a in argv(cfg, tmp_path) if a.startswith(names)]


# --- containerboot's rules, with its names ------------------------------------------------

ACCEPTED = [
    ({"TS_AUTHKEY": "tskey-auth-k"}, "authkey", ["--auth-key=file:{s}"]),
    ({"TS_AUTH_KEY": "tskey-auth-k"}, "authkey", ["--auth-key=file:{s}"]),
    ({"TS_AUTHKEY": "tskey-client-k", **TAGS}, "oauth", ["--auth-key=file:{s}"]),
    ({"TS_CLIENT_SECRET": "tskey-client-k", **TAGS}, "oauth", ["--client-secret=file:{s}"]),
    # the pair people already use: an OAuth client, as containerboot passes it
    ({"TS_CLIENT_ID": "k1", "TS_CLIENT_SECRET": "tskey-client-k", **TAGS}, "oauth",
     ["--client-id=k1", "--client-secret=file:{s}"]),
    ({"TS_CLIENT_ID": "k1", "TS_ID_TOKEN": READ, **TAGS}, "wif",
     ["--client-id=k1", "--id-token=file:{s}"]),
    ({"TS_CLIENT_ID": "k1", "TS_AUDIENCE": "aud", "SPACELIFT_OIDC_TOKEN": READ, **TAGS}, "wif",
     ["--client-id=k1", "--id-token=file:{s}", "--audience=aud"]),
    ({"TS_CLIENT_ID": "k1", "SPACELIFT_OIDC_TOKEN": READ, **TAGS}, "wif",
     ["--client-id=k1", "--id-token=file:{s}"]),
]  # fmt: skip


@pytest.mark.parametrize(("env", "kind", "flags"), ACCEPTED)
def test_containerboot_accepts(
    env: dict[str, str], kind: str, flags: list[str], tmp_path: Path
) -> None:
    cfg = config.load(env)
    assert cfg.auth is not None and cfg.auth.kind == kind
    assert auth_flags(cfg, tmp_path) == [f.format(s=tmp_path / "secret") for f in flags]


REFUSED = [
    # (settings, the setting the line starts with, the other it names)
    ({"TS_ID_TOKEN": READ, **TAGS}, "TS_ID_TOKEN", "TS_CLIENT_ID"),
    ({"TS_AUDIENCE": "aud", "TS_AUTHKEY": "tskey-auth-k"}, "TS_AUDIENCE", "TS_CLIENT_ID"),
    ({"TS_CLIENT_ID": "k1", "TS_ID_TOKEN": READ, "TS_CLIENT_SECRET": "tskey-client-k", **TAGS},
     "TS_CLIENT_SECRET", "TS_ID_TOKEN"),
    ({"TS_CLIENT_ID": "k1", "TS_ID_TOKEN": READ, "TS_AUDIENCE": "aud", **TAGS},
     "TS_AUDIENCE", "TS_ID_TOKEN"),
    ({"TS_CLIENT_ID": "k1", "TS_AUDIENCE": "aud", "TS_CLIENT_SECRET": "tskey-client-k", **TAGS},
     "TS_CLIENT_SECRET", "TS_AUDIENCE"),
    ({"TS_AUTHKEY": "tskey-auth-k", "TS_CLIENT_ID": "k1", **TAGS}, "TS_AUTHKEY", "TS_CLIENT_ID"),
    ({"TS_AUTHKEY": "tskey-auth-k", "TS_CLIENT_SECRET": "tskey-client-k", **TAGS},
     "TS_AUTHKEY", "TS_CLIENT_SECRET"),
    ({"TS_AUTH_KEY": "tskey-auth-k", "TS_CLIENT_SECRET": "tskey-client-k", **TAGS},
     "TS_AUTH_KEY", "TS_CLIENT_SECRET"),
    ({"TS_AUTHKEY": "tskey-auth-k", "TS_CLIENT_ID": "k1", "TS_ID_TOKEN": READ, **TAGS},
     "TS_AUTHKEY", "TS_CLIENT_ID"),
    ({"TS_AUTHKEY": "tskey-auth-k", "TS_ID_TOKEN": READ}, "TS_ID_TOKEN", "TS_CLIENT_ID"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "first", "other"), REFUSED)
def test_containerboot_refuses_with_one_line_naming_both(
    env: dict[str, str], first: str, other: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        config.load(env)
    line = str(exc.value)
    assert exc.value.exit_code == 2 and "\n" not in line
    assert line.startswith(f"{first}: ") and other in line and "unset" in line, line
    for name, value in env.items():
        if name in SECRET_VARIABLES:
            assert value not in line


def test_the_oauth_pair_needs_tags_and_keeps_its_attributes() -> None:
    with pytest.raises(ConfigError, match=r"^TS_CLIENT_SECRET: .*needs tags.*SPACETAIL_TAGS"):
        config.load({"TS_CLIENT_ID": "k1", "TS_CLIENT_SECRET": "tskey-client-k"})
    cfg = config.load({"TS_CLIENT_ID": "k1", "TS_CLIENT_SECRET": "tskey-client-k", **TAGS})
    assert tailscale.secret_payload(cfg) == "tskey-client-k?ephemeral=true&preauthorized=true"


def test_every_flag_spacetail_gives_tailscale_up_is_one_the_real_binary_defines(
    tmp_path: Path,
) -> None:
    """The real 1.96.4's `tailscale up` usage (captured in tests/fakes/reference): each flag of
    every kind of login is defined there, and each one that carries a secret reads `file:`."""
    usage = Path(__file__).resolve().parents[1] / "fakes/reference/tailscale-usage-up.txt"
    defined = {}
    for block in usage.read_text().split("\n  --")[1:]:
        head, _, rest = block.partition("\n")
        defined[head.split()[0].rstrip(",")] = rest
    assert {"auth-key", "client-id", "client-secret", "id-token", "audience"} <= defined.keys()
    for env, _kind, _flags in ACCEPTED:
        for arg in argv(config.load(env), tmp_path):
            name, _, value = arg.removeprefix("--").partition("=")
            assert name in defined, f"--{name} is not a flag of the real tailscale up"
            if value.startswith("file:"):
                assert '"file:"' in defined[name], f"--{name} does not read file: in 1.96.4"
