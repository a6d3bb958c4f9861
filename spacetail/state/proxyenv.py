"""The proxy environment a phase needs, as shell lines, and its removal from Spacelift's saved
environment so that a dead proxy never leaks into a later phase."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from spacetail.state.paths import open_regular

# Go programs (terraform, providers) read HTTP(S)_PROXY; curl-likes read ALL_PROXY. NO_PROXY is
# left as the user set it: Go never proxies loopback, and the user's exceptions keep working.
HTTP_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
SOCKS_NAMES = ("ALL_PROXY", "all_proxy")
NAMES = HTTP_NAMES + SOCKS_NAMES
# Every proxy variable a program may obey: tailscaled gets none of them (it would reach the
# control server through its own, not yet running, proxy).
PROXY_VARIABLES = (
    *NAMES, "NO_PROXY", "no_proxy", "FTP_PROXY", "ftp_proxy",
)  # fmt: skip


def proxy_variables(proxies: Mapping[str, str]) -> dict[str, str]:
    """Variable -> value, from the manager's proxies ({"http": ..., "socks5": ...})."""
    http = proxies["http"]
    # socks5h: curl resolves names at the proxy, so MagicDNS names work.
    socks = "socks5h://" + proxies["socks5"].split("://", 1)[-1]
    values = dict.fromkeys(HTTP_NAMES, http)
    values.update(dict.fromkeys(SOCKS_NAMES, socks))
    return values


def export_lines(proxies: Mapping[str, str]) -> str:
    return "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in proxy_variables(proxies).items()
    )


def unset_lines() -> str:
    return "unset " + " ".join(NAMES) + "\n"


# Spacelift's saved environment is the phase's variables, kilobytes; this is far above that.
SAVED_ENV_MAX_BYTES = 16 * 1024 * 1024

_ASSIGNMENT = re.compile(
    r"^\s*(?:export\s+|declare\s+-x\s+|typeset\s+-x\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*?)\s*$"
)


def _unquote(value: str) -> str:
    try:
        parts = shlex.split(value)
    except ValueError:
        return value
    return parts[0] if len(parts) == 1 else value


def saved_env_files(env: Mapping[str, str]) -> list[Path]:
    """Spacelift's saved shell environment (carried from one phase to the next)."""
    root = env.get("TF_VAR_spacelift_workspace_root", "").strip()
    if not root:
        return []
    return sorted(Path(root).glob(".env_hooks_*"))


def clean_saved_envs(env: Mapping[str, str], proxies: Mapping[str, str]) -> list[Path]:
    """Take our proxy lines out of every saved environment file; returns the files changed."""
    changed = []
    for path in saved_env_files(env):
        try:
            if clean_saved_env(path, proxies):
                changed.append(path)
        except OSError:
            continue  # a read-only or vanished file: nothing of ours can be left to remove
    return changed


def clean_saved_env(path: Path, proxies: Mapping[str, str]) -> int:
    """Remove the lines that set our proxy variables to our proxies; keep every other line as is.
    Returns the number of lines removed."""
    ours = set(proxy_variables(proxies).values())
    try:
        # Not ours: anything but a regular file (a symlink, a FIFO that would block the open for
        # ever), or one larger than a shell's environment can be (a sparse file can claim
        # gigabytes), is left alone and skipped.
        fd = open_regular(path, os.O_RDONLY)
        with open(fd, encoding="utf-8", errors="surrogateescape") as f:
            st = os.fstat(fd)
            if st.st_size > SAVED_ENV_MAX_BYTES:
                return 0
            text = f.read(SAVED_ENV_MAX_BYTES + 1)
    except OSError:
        return 0
    if len(text) > SAVED_ENV_MAX_BYTES:  # it grew while being read
        return 0
    lines = text.splitlines(keepends=True)
    kept = []
    for line in lines:
        m = _ASSIGNMENT.match(line)
        if m and m.group("name") in NAMES and _unquote(m.group("value")) in ours:
            continue
        kept.append(line)
    removed = len(lines) - len(kept)
    if removed:
        from spacetail.state.statedir import write_atomic

        data = "".join(kept).encode("utf-8", "surrogateescape")
        write_atomic(path, data, st.st_mode & 0o777)
    return removed
