"""The command line: exit codes, and stdout that is safe to eval even when a command fails."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from spacetail import __version__, cli


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TS_AUTHKEY", "TS_AUTH_KEY", "TS_CLIENT_SECRET", "TS_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPACETAIL_DIR", str(tmp_path / "state"))


def evaluates_to_failure(stdout: str) -> bool:
    return subprocess.run(["sh", "-c", f"eval {stdout!r}"], check=False).returncode != 0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"spacetail {__version__}"


@pytest.mark.parametrize(
    "argv", [["up", "--env", "--no-such-flag"], ["up", "--env"], ["up", "--env", "--timeout=x"]]
)
def test_a_failed_up_env_fails_the_eval(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "false\n"
    assert evaluates_to_failure(captured.out)
    assert captured.err.strip()  # and says why, on stderr


def test_without_env_stdout_stays_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("spacetail: error: TS_AUTHKEY: no credentials")


def test_down_env_with_nothing_running_unsets(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["down", "--env"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("unset HTTP_PROXY HTTPS_PROXY")
    assert "nothing was running" in captured.err


def test_status_json_when_nothing_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert cli.main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["running"] is False and data["manager_pid"] is None
    assert data["backend_state"] is None and data["tailscale_ips"] == []


def test_every_setting_and_command_is_in_the_readme_and_the_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--help and the reference agree: each setting shows its variable in `up --help` and has
    a row in docs/configuration.md's table; each command has a row in docs/commands.md's."""
    from spacetail.config.settings import CREDENTIALS, UP, Kind

    docs = Path(__file__).resolve().parents[2] / "docs"
    readme = (docs / "configuration.md").read_text() + (docs / "commands.md").read_text()
    assert cli.main(["up", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for s in UP:
        flag = f"--[no-]{s.key}" if s.kind is Kind.SWITCH else s.option
        assert f"| `{s.env}` | `{flag}" in readme, s.env
        assert s.env in help_text and s.option in help_text, s.env
    for name, _text in CREDENTIALS:
        assert name in help_text and f"`{name}`" in readme, name
    assert "DURATION is seconds" in help_text and "at most 24h" in help_text
    for command in cli.COMMANDS:
        assert f"| `spacetail {command}" in readme, command
    assert cli.main(["env", "--help"]) == 0
    env_help = capsys.readouterr().out
    assert "--socks5-server" in env_help and "--hostname" not in env_help


def test_wait_help_shows_its_settings_with_their_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`wait` takes the timeout, the peers, the targets (spelled --target) and the progress
    lines, with up's variables."""
    assert cli.main(["wait", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    shown = {
        "--timeout": "SPACETAIL_TIMEOUT",
        "--peer": "SPACETAIL_PEERS",
        "--target HOST:PORT": "SPACETAIL_WAIT_FOR",
        "--progress": "SPACETAIL_PROGRESS",
        "--no-progress": "SPACETAIL_PROGRESS",
    }
    for option, variable in shown.items():
        assert option in help_text and variable in help_text, option
    assert "--wait-for" not in help_text
    assert cli.main(["up", "--help"]) == 0
    up_help = " ".join(capsys.readouterr().out.split())
    assert "--wait-for HOST:PORT" in up_help and "--no-progress" in up_help
