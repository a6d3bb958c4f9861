"""What a manager says about itself: the status reply that `status`, `wait` and `up` read.
Kept apart from the manager's decisions so that what is reported can grow (forwards, the last
failure) without the loop growing with it."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from spacetail import __version__
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
        "watch_pid": m.launch.watch_pid,
        "uptime": round(now - m.started, 3),
        "max_lifetime_left": m.lifetime.left(),
        "state_dir": str(m.paths.root),
        "version": __version__,
    }
