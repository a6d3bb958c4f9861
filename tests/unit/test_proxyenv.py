"""Proxy variables: what up --env exports, what down --env unsets, and the saved-env clean-up."""

from __future__ import annotations

import subprocess
from pathlib import Path

from spacetail.state import proxyenv

PROXIES = {"http": "http://127.0.0.1:8080", "socks5": "socks5://127.0.0.1:1080"}


def shell_env(script: str) -> dict[str, str]:
    out = subprocess.run(["sh", "-c", script + "\nenv"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "NO_PROXY": "internal.example"},
                         check=True)  # fmt: skip
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def test_exports_evaluate_in_a_shell() -> None:
    env = shell_env(proxyenv.export_lines(PROXIES))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == "http://127.0.0.1:8080"
    assert env["ALL_PROXY"] == env["all_proxy"] == "socks5h://127.0.0.1:1080"
    assert env["NO_PROXY"] == "internal.example"  # the user's exceptions keep working


def test_unset_removes_them_all() -> None:
    env = shell_env(proxyenv.export_lines(PROXIES) + proxyenv.unset_lines())
    assert not set(proxyenv.NAMES) & set(env)


def test_clean_saved_env_removes_only_our_lines(tmp_path: Path) -> None:
    saved = tmp_path / ".env_hooks_after"
    lines = [
        "export TF_VAR_x='1'\n",
        "export HTTP_PROXY='http://127.0.0.1:8080'\n",
        'declare -x HTTPS_PROXY="http://127.0.0.1:8080"\n',
        "ALL_PROXY=socks5h://127.0.0.1:1080\n",
        "export http_proxy=http://corp-proxy:3128\n",  # the user's own: kept
        "export NO_PROXY=internal\n",
        "not a shell line (\n",
    ]
    saved.write_text("".join(lines))
    saved.chmod(0o640)
    assert proxyenv.clean_saved_env(saved, PROXIES) == 3
    assert saved.read_text() == "".join(lines[i] for i in (0, 4, 5, 6))
    assert (saved.stat().st_mode & 0o777) == 0o640
    assert proxyenv.clean_saved_env(saved, PROXIES) == 0


def test_clean_saved_env_missing_file(tmp_path: Path) -> None:
    assert proxyenv.clean_saved_env(tmp_path / "none", PROXIES) == 0


def test_saved_env_files_only_inside_spacelift(tmp_path: Path) -> None:
    (tmp_path / ".env_hooks_after").write_text("")
    assert proxyenv.saved_env_files({}) == []
    found = proxyenv.saved_env_files({"TF_VAR_spacelift_workspace_root": str(tmp_path)})
    assert found == [tmp_path / ".env_hooks_after"]
