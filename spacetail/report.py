"""What a manager says about itself: the status reply that `status`, `wait` and `up` read.
Kept apart from the manager's decisions so that what is reported can grow (forwards, the last
failure) without the loop growing with it."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from spacetail import __version__
from spacetail.login import Phase
from spacetail.tailscale import LocalAPIError, summarize

if TYPE_CHECKING:
    from spacetail.manager import Manager


def status_reply(m: Manager) -> dict[str, Any]:
    summary: dict[str, Any] = {"backend_state": m.login.backend_state}
    # A stopping manager answers from what it knows: tailscaled may be frozen, and the
    # shutdown must stay within its 2 seconds.
    if m.tailscaled is not None and m.tailscaled.api_ready and m.stop_reason is None:
        with contextlib.suppress(LocalAPIError, ValueError):
            summary = summarize(m.api.status(0.5))
    now = m.clock()
    return {
        "ok": True,
        "running": True,
        "manager_pid": os.getpid(),
        "manager": m.identity,
        "phase": m.login.phase.value,
        "connected": summary.get("backend_state") == "Running" and m.login.phase is Phase.RUNNING,
        "backend_state": summary.get("backend_state"),
        "tailscale_ips": summary.get("tailscale_ips", []),
        "hostname": summary.get("hostname") or m.cfg.hostname,
        "dns_name": summary.get("dns_name"),
        "health": summary.get("health", []),
        "proxies": m.cfg.proxies,
        "tailscaled_pid": m.tailscaled.proc.pid if m.tailscaled else None,
        "tailscaled_socket": str(m.paths.tailscaled_socket),
        "tailscale": str(m.launch.binaries.tailscale),
        "restarts": m.sup.restarts,
        "last_exit": m.sup.last_exit,
        "login_attempts": m.login.attempts,
        "reason": m.login.reason,
        "advice": m.login.failure.advice if m.login.failure else None,
        "setting": m.login.failure.setting if m.login.failure else None,
        "exit_code": m.login.failure.exit_code if m.login.failure else None,
        "tailscaled_log_offset": m.tailscaled_log_offset,
        "watch_pid": m.launch.watch_pid,
        "uptime": round(now - m.started, 3),
        "max_lifetime_left": m.lifetime.left(),
        "forwards": m.forwarder.snapshot() if m.forwarder else [],
        "state_dir": str(m.paths.root),
        "version": __version__,
    }


def last_words(m: Manager, never_ran: bool) -> dict[str, Any]:
    """Why a manager stopped on its own, for the file that outlives it (status, wait)."""
    import time

    from spacetail.failures import advice

    login = m.login
    failure = m.exit_code != 0 or never_ran or "max lifetime" in (m.stop_reason or "")
    reason = m.stop_reason or "stopped"
    if never_ran and login.reason:
        reason = f"{reason}: {login.reason}"
    return {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reason": reason,
        "advice": (login.failure.advice if login.failure else advice(login.reason or reason))
        if failure
        else None,
        "failure": failure,
        "manager_pid": os.getpid(),
        # What `up` needs when the manager failed before `up` could ask it (a refused flag
        # fails in milliseconds): the same verdict a wait reply carries.
        "login_reason": login.reason,
        "setting": login.failure.setting if login.failure else None,
        "exit_code": login.failure.exit_code if login.failure else None,
        "tailscaled_log_offset": m.tailscaled_log_offset,
    }


def describe(status: dict[str, Any]) -> list[str]:
    """`spacetail status` for a person: a sentence first, whatever the state, then details."""
    if not status.get("running"):
        return _describe_stopped(status)
    ips = ", ".join(status.get("tailscale_ips") or []) or "no address yet"
    name = status.get("dns_name") or status.get("hostname")
    uptime = f"{float(status.get('uptime') or 0):.0f}s"
    phase = status.get("phase")
    if status.get("connected"):
        first = f"Connected to the tailnet as {name} ({ips}); the manager has run for {uptime}."
    elif phase == "failed":
        first = f"Not connected: {status.get('reason')}."
    elif phase == "stopping":
        first = "Not connected: the manager is stopping."
    else:
        attempts = status.get("login_attempts") or 0
        state = status.get("backend_state") or "tailscaled starting"
        first = f"Logging in as {name}: {state}, attempt {attempts}, for {uptime}."
    proxies = status.get("proxies") or {}
    lines = [
        first,
        f"  proxies: HTTP {proxies.get('http')}  SOCKS5 {proxies.get('socks5')}",
        f"  manager pid {status.get('manager_pid')}, tailscaled pid "
        f"{status.get('tailscaled_pid')}, phase {phase}",
    ]
    if status.get("restarts"):
        lines.append(f"  restarts: {status['restarts']} (last: {status.get('last_exit')})")
    if status.get("reason") and phase != "failed":
        lines.append(f"  last problem: {status['reason']}")
    lines += [f"  health: {item}" for item in status.get("health") or []]
    lines += [_describe_forward(f) for f in status.get("forwards") or []]
    if status.get("problem"):
        lines.append(f"  problem: {status['problem']}")
    return lines


def _describe_forward(f: dict[str, Any]) -> str:
    line = (
        f"  forward {f.get('listen')} -> {f.get('target')}: {f.get('open')} open, "
        f"{f.get('total')} in all, {_size(f.get('bytes_sent'))} sent, "
        f"{_size(f.get('bytes_received'))} received"
    )
    if f.get("refused"):
        line += f", {f['refused']} refused"
    line += _describe_limit(f)
    if f.get("accept_paused"):
        line += "; not accepting for a moment: out of file descriptors"
    if f.get("last_error"):
        line += f"; last error: {f['last_error']}"
    return line


def _describe_limit(f: dict[str, Any]) -> str:
    """The cap and the descriptor limit behind it: raised at start, or the cap lowered to fit."""
    cap, limit, raised_from = f.get("max_open"), f.get("fd_limit"), f.get("fd_limit_raised_from")
    if cap is None:
        return ""
    if raised_from is not None:
        return f"; {cap} open at most (descriptor limit raised from {raised_from} to {limit})"
    if isinstance(cap, int) and cap < 256:
        return (f"; {cap} open at most: the descriptor limit is {limit}, raise the hard limit "
                "(ulimit -Hn) to allow 256")  # fmt: skip
    return f"; {cap} open at most"


def _size(n: object) -> str:
    value = float(n) if isinstance(n, (int, float)) else 0.0
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _describe_stopped(status: dict[str, Any]) -> list[str]:
    where = status.get("state_dir")
    last = status.get("last_failure") or status.get("last_stop")
    if last:
        lines = [f"Not running: the manager stopped at {last.get('at')}: {last.get('reason')}."]
        if last.get("advice"):
            lines.append(f"  what to do: {last['advice']}")
        lines.append(f"  state folder {where}; its logs: spacetail logs")
    else:
        lines = [f"Not running (state folder {where})."]
    for key in ("stale", "problem"):
        if status.get(key):
            lines.append(f"  {key}: {status[key]}")
    return lines
