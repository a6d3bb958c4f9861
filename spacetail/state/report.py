"""What is told of a manager: its last words when it stops on its own (last-stop.json), and the
sentence `spacetail status` prints for a person. Both read typed values (state/status.py), never the
manager itself."""

from __future__ import annotations

import os

from spacetail.state.phases import Phase
from spacetail.state.status import Forward, LastStop, Problem, Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from spacetail.manager.lifetime import Ending


def last_stop(ending: Ending, login: Problem, never_ran: bool, log_offset: int) -> LastStop:
    """Why a manager stopped on its own, for the file that outlives it (status, wait, and `up`
    when the manager failed before `up` could ask it: a refused flag fails in milliseconds)."""
    import time

    from spacetail.state.kinds import kind_of
    from spacetail.tailnet.advice import advice_for

    failure = ending.failure or never_ran
    reason = ending.text
    if never_ran and login.reason:
        reason = f"{reason}: {login.reason}"
    # The kind of the stop: the ending's own (the lifetime, the shell, a signal), else the
    # login's verdict that ended it. The advice follows the kind, never a reading of the words.
    kind = ending.kind or kind_of(login.kind)
    advice = (login.advice if ending.kind is None else None) or (kind and advice_for(kind))
    return LastStop(
        at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        reason=reason,
        kind=kind.value if kind else None,
        advice=advice if failure else None,
        failure=failure,
        manager_pid=os.getpid(),
        login_reason=login.reason,
        setting=login.setting,
        exit_code=login.exit_code,
        tailscaled_log_offset=log_offset,
    )


def describe(status: Status) -> list[str]:
    """`spacetail status` for a person: a sentence first, whatever the state, then details."""
    if not status.running:
        return _describe_stopped(status)
    ips = ", ".join(status.node.tailscale_ips) or "no address yet"
    uptime = f"{status.uptime or 0:.0f}s"
    phase = status.phase
    if status.connected:
        first = (
            f"Connected to the tailnet as {status.name} ({ips}); the manager has run for {uptime}."
        )
    elif phase is Phase.FAILED:
        first = f"Not connected: {status.login.reason}."
    elif phase is Phase.STOPPING:
        first = "Not connected: the manager is stopping."
    else:
        state = status.backend_state or "tailscaled starting"
        left = status.login_deadline_left
        first = (
            f"Logging in as {status.name}: {state}, attempt {status.login_attempts}, for {uptime}"
            + (f"; it gives up in {left:.0f}s." if left is not None else ".")
        )
    proxies = status.proxies
    lines = [
        first,
        f"  proxies: HTTP {proxies.http if proxies else None}  "
        f"SOCKS5 {proxies.socks5 if proxies else None}",
        f"  manager pid {status.manager_pid}, tailscaled pid {status.tailscaled_pid}, "
        f"phase {phase.value if phase else None}",
    ]
    joined = joined_with(status)
    if joined:
        lines.append(f"  joined with {joined}")
    if status.restarts:
        lines.append(f"  restarts: {status.restarts} (last: {status.last_exit})")
    if status.login.reason and phase is not Phase.FAILED:
        lines.append(f"  last problem: {status.login.reason}")
    lines += [f"  health: {item}" for item in status.node.health]
    lines += [_describe_forward(f) for f in status.forwards]
    if status.problem:
        lines.append(f"  problem: {status.problem}")
    return lines


def joined_with(status: Status) -> str:
    """What the node joined with, for a person: the scope of the phase's Spacelift token (which
    chose the identity and the tags) and the tags; empty when there is neither."""
    parts = []
    if status.scope is not None:
        parts.append(f"scope {status.scope.value} (Spacelift token)")
    if status.tags:
        parts.append(f"tags {','.join(status.tags)}")
    return ", ".join(parts)


def _describe_forward(f: Forward) -> str:
    line = (
        f"  forward {f.listen} -> {f.target}: {f.open} open, {f.total} in all, "
        f"{_size(f.bytes_sent)} sent, {_size(f.bytes_received)} received"
    )
    if f.refused:
        line += f", {f.refused} refused"
    line += _describe_limit(f)
    if f.accept_paused:
        line += "; not accepting for a moment: out of file descriptors"
    if f.last_error:
        line += f"; last error: {f.last_error}"
    return line


def _describe_limit(f: Forward) -> str:
    """The cap and the descriptor limit behind it: raised at start, or the cap lowered to fit."""
    if f.max_open is None:
        return ""
    if f.fd_limit_raised_from is not None:
        return (
            f"; {f.max_open} open at most (descriptor limit raised from "
            f"{f.fd_limit_raised_from} to {f.fd_limit})"
        )
    if f.max_open < 256:
        return (f"; {f.max_open} open at most: the descriptor limit is {f.fd_limit}, raise the "
                "hard limit (ulimit -Hn) to allow 256")  # fmt: skip
    return f"; {f.max_open} open at most"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _describe_stopped(status: Status) -> list[str]:
    where = status.state_dir
    last = status.last_stop
    if last:
        lines = [f"Not running: the manager stopped at {last.at}: {last.reason}."]
        if last.advice:
            lines.append(f"  what to do: {last.advice}")
        lines.append(f"  state folder {where}; its logs: spacetail logs")
    else:
        lines = [f"Not running (state folder {where})."]
    if status.stale:
        lines.append(f"  stale: {status.stale}")
    if status.problem:
        lines.append(f"  problem: {status.problem}")
    return lines
