"""What each command does (up, down, wait, status), as functions of plain values: the CLI parses
arguments, these functions act, talking to the manager over its control socket. The state
folder's files are statedir.py's business."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from spacetail import control, statedir
from spacetail.errors import ConfigError, OperationFailed
from spacetail.identity import ProcessIdentity, ProvenProcess, phase_shell
from spacetail.log import tail
from spacetail.paths import Paths, check_private_dir
from spacetail.statedir import Probe

TYPE_CHECKING = False  # keeps typing and config out of `spacetail status`
if TYPE_CHECKING:
    from typing import Any, TextIO

    from spacetail.config import Config

STOPPING_GRACE = 5.0  # a manager's shutdown takes under 2 s (logout 1 s, SIGTERM grace 0.8 s)


def say(out: TextIO, message: str) -> None:
    print(f"spacetail: {message}", file=out, flush=True)


# --- up -----------------------------------------------------------------------------------


def up(
    cfg: Config,
    paths: Paths,
    env: Mapping[str, str],
    *,
    wait: bool = True,
    out: TextIO = sys.stderr,
    watch_pid: int | None = None,
) -> dict[str, Any]:
    """Bring the tailnet up (or find it up); returns the manager's status. Raises on failure."""
    from spacetail.tailscale import find_binaries

    started = time.monotonic()
    binaries = find_binaries(env)
    with statedir.claim(paths, max(statedir.LOCK_TIMEOUT, cfg.timeout + 30)) as claim:
        p = claim.probe
        if p.answering and p.status is not None and p.status.get("phase") == "failed":
            say(out, f"replacing a manager that failed: {p.status.get('reason')}")
            _stop_manager(paths, p, logout=True, out=out)
            p = claim.reprobe()
        if p.answering and p.status is not None:
            manager_pid = int(p.status["manager_pid"])
            say(out, f"a manager already runs here (pid {manager_pid}); nothing to change")
        else:
            if p.lock_held:
                _stop_unanswering(paths, p, out)
            removed = claim.clean()
            if removed:
                say(out, f"removed stale {p.describe_stale()}: {', '.join(removed)}")
            manager_pid = _start_manager(cfg, claim, env, binaries, watch_pid)
    return _await_manager(cfg, paths, manager_pid, wait=wait, started=started, out=out)


def _watched_shell(cfg: Config, watch_pid: int | None) -> tuple[int | None, int | None]:
    """(pid, pidfd) of the process whose exit stops the manager, or (None, None)."""
    if watch_pid is None and cfg.watch_pid is None and not cfg.watch_shell:
        return None, None
    shell_pid = watch_pid or cfg.watch_pid or phase_shell()
    before = ProcessIdentity.of(shell_pid)
    if before is None:
        raise ConfigError(f"SPACETAIL_WATCH_PID: there is no process {shell_pid}")
    try:
        shell_fd: int | None = os.pidfd_open(shell_pid)
    except (AttributeError, OSError):
        shell_fd = None  # the manager falls back to polling the process' start time
    if not before.alive():
        if shell_fd is not None:
            os.close(shell_fd)
        raise OperationFailed(f"the shell to watch (pid {shell_pid}) exited during start")
    return shell_pid, shell_fd


def _start_manager(
    cfg: Config,
    claim: statedir.Claim,
    env: Mapping[str, str],
    binaries: Any,
    watch_pid: int | None,
) -> int:
    from spacetail import daemon
    from spacetail.manager import Launch

    paths = claim.paths
    shell_pid, shell_fd = _watched_shell(cfg, watch_pid)
    try:
        listener = claim.bind()
    except OperationFailed:
        if shell_fd is not None:
            os.close(shell_fd)
        raise
    launch = Launch(cfg, paths, binaries, listener, dict(env), None, shell_fd, shell_pid)
    keep = [listener.fileno()] + ([shell_fd] if shell_fd is not None else [])

    def run(ready_fd: int) -> int:
        from spacetail.manager import serve  # in the manager only: up itself never needs it

        launch.ready_fd = ready_fd
        return serve(launch)

    try:
        pid, line = daemon.spawn(run, keep, paths.manager_log, ready_timeout=15.0)
    finally:
        listener.close()
        if shell_fd is not None:
            os.close(shell_fd)
    if not line.startswith("READY ") or pid is None:
        statedir.remove_file(paths.control_socket)
        statedir.remove_file(paths.record)
        detail = line.removeprefix("ERROR ").strip() or "it exited before it was ready"
        raise OperationFailed(
            f"the manager did not start: {detail}\n{_indent(tail(paths.manager_log, 8))}"
        )
    return pid


def _await_manager(
    cfg: Config, paths: Paths, manager_pid: int, *, wait: bool, started: float, out: TextIO
) -> dict[str, Any]:
    ident = ProcessIdentity.of(manager_pid)
    until = "running" if wait else "api"
    try:
        reply = control.ControlClient(paths.control_socket).request(
            {"cmd": "wait", "until": until, "timeout": cfg.timeout + 5}, timeout=cfg.timeout + 10
        )
    except control.ControlUnavailable as exc:
        detail = tail(paths.manager_log, 3)
        reply = {"ok": False, "reason": f"the manager stopped answering ({exc})"}
        if detail:
            reply["reason"] += f"; its log ends with:\n{_indent(detail, 4)}"
    if reply.get("ok"):
        _report_up(reply, time.monotonic() - started, wait=wait, out=out)
        return reply
    # The manager stops itself after a failed login; wait until it has, so nothing is left.
    if ident is not None:
        handle = ProvenProcess.open(ident)
        if handle is not None:
            with handle:
                if not handle.wait(10.0):
                    statedir.terminate(handle, 2.0)
    reason = reply.get("reason") or (
        f"not Running within {cfg.timeout:g}s (state {reply.get('backend_state')})"
    )
    from spacetail.tailscale import advice

    log = tail(paths.tailscaled_log, 10)
    message = f"could not connect to the tailnet: {reason}\n  what to do: {advice(reason)}"
    if log:
        message += f"\n  last lines of {paths.tailscaled_log}:\n{_indent(log, 4)}"
    message += "\n  everything spacetail started has been stopped"
    raise OperationFailed(message)


def _report_up(reply: dict[str, Any], elapsed: float, *, wait: bool, out: TextIO) -> None:
    ips = ", ".join(reply.get("tailscale_ips") or []) or "no address yet"
    proxies = reply.get("proxies") or {}
    if wait:
        name = reply.get("dns_name") or reply.get("hostname")
        say(out, f"connected to the tailnet as {name} ({ips}) in {elapsed:.1f}s")
    else:
        say(out, f"tailscaled is up (state {reply.get('backend_state')}); not waiting for login")
    say(out, f"proxies: HTTP {proxies.get('http')}  SOCKS5 {proxies.get('socks5')}")
    stops = []
    if reply.get("watch_pid"):
        stops.append(f"when the shell (pid {reply['watch_pid']}) exits")
    if reply.get("max_lifetime_left") is not None:
        stops.append(f"after {float(reply['max_lifetime_left']) / 60:.0f} min")
    stops.append("on `spacetail down`")
    say(out, f"manager pid {reply.get('manager_pid')}; it stops {', '.join(stops)}")


def _indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


# --- down ---------------------------------------------------------------------------------


def _stop_manager(paths: Paths, p: Probe, *, logout: bool | None, out: TextIO) -> bool:
    """Ask an answering manager to stop and wait until it has exited."""
    assert p.status is not None
    pid = int(p.status["manager_pid"])
    ident = ProcessIdentity.of(pid)
    handle = ProvenProcess.open(ident) if ident else None
    try:
        try:
            _reply, closed = control.ControlClient(paths.control_socket).request_until_closed(
                {"cmd": "down", "logout": logout}, timeout=15.0
            )
        except control.ControlUnavailable:
            closed = True  # it went away between the probe and the request
        if handle is not None and not handle.wait(5.0):
            say(out, f"manager pid {pid} did not exit after stopping; terminating it")
            statedir.terminate(handle, 2.0)
        return closed
    finally:
        if handle is not None:
            handle.close()


def _stop_unanswering(paths: Paths, p: Probe, out: TextIO) -> None:
    """The lock is held but nobody answers: a wedged manager, or one in another container."""
    ident = p.manager_ident
    handle = ProvenProcess.open(ident) if ident else None
    if handle is None:
        where = f" ({ident.why_not_alive()})" if ident else ""
        raise OperationFailed(
            f"{paths.manager_lock} is held by a live process that spacetail cannot identify"
            f"{where}: another container may share this state folder; set SPACETAIL_DIR to a "
            "folder of this phase's own"
        )
    with handle:
        # It may be in the middle of stopping (its socket is gone first): give it time.
        if handle.wait(STOPPING_GRACE):
            return
        say(out, f"manager pid {handle.ident.pid} does not answer; terminating it")
        statedir.terminate(handle, 3.0)


def down(
    paths: Paths, env: Mapping[str, str], *, logout: bool | None = None, out: TextIO = sys.stderr
) -> list[str]:
    """Stop the manager and tailscaled and clean up; returns what was done, for the report."""
    from spacetail.proxyenv import clean_saved_env, saved_env_files

    done: list[str] = []
    proxies: dict[str, str] | None = None
    if paths.root.is_dir():
        check_private_dir(paths.root)
        with statedir.control_lock(paths):
            p = statedir.probe(paths)
            proxies = (p.status or p.record or {}).get("proxies")
            if p.answering and p.status is not None:
                _stop_manager(paths, p, logout=logout, out=out)
                done.append(f"stopped manager pid {p.status['manager_pid']} and tailscaled")
                p = statedir.probe(paths)
            if p.lock_held:
                _stop_unanswering(paths, p, out)
                done.append("terminated an unanswering manager")
            removed = statedir.clean_stale(paths, p)
            if removed:
                done.append(f"removed stale {p.describe_stale()}: {', '.join(removed)}")
    for path in saved_env_files(env):
        count = clean_saved_env(path, proxies or _default_proxies())
        if count:
            done.append(f"removed {count} proxy line(s) from {path.name}")
    return done


def _default_proxies() -> dict[str, str]:
    from spacetail.config import DEFAULT_HTTP_PROXY, DEFAULT_SOCKS5

    return {"http": f"http://{DEFAULT_HTTP_PROXY}", "socks5": f"socks5://{DEFAULT_SOCKS5}"}


# --- status and wait ----------------------------------------------------------------------


def status(paths: Paths) -> dict[str, Any]:
    """One JSON-able object; works, and says so, when nothing runs."""
    try:
        exists = paths.root.is_dir()
    except PermissionError:
        exists = True  # a folder we may not look into: check_private_dir says whose it is
    if exists:
        check_private_dir(paths.root)
    p = statedir.probe(paths) if exists else statedir.NOTHING
    if p.status is not None:
        result = dict(p.status)
        result.pop("ok", None)
        return result
    result = {
        "running": False,
        "backend_state": None,
        "tailscale_ips": [],
        "hostname": None,
        "manager_pid": None,
        "proxies": None,
        "state_dir": str(paths.root),
    }
    if p.lock_held:
        result["problem"] = "a manager holds the lock but does not answer"
    elif p.record is not None or p.record_garbage or paths.control_socket.exists():
        result["stale"] = p.describe_stale() + "; `spacetail down` or `up` cleans them"
    return result


def wait(paths: Paths, timeout: float, peers: tuple[str, ...] = ()) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    try:
        reply = control.ControlClient(paths.control_socket).request(
            {"cmd": "wait", "until": "running", "timeout": timeout}, timeout=timeout + 5
        )
    except control.ControlUnavailable:
        record, garbage = statedir.read_record(paths.record)
        stale = ""
        if record is not None or garbage:
            stale = f" (only stale {Probe(None, record, garbage, False).describe_stale()})"
        raise OperationFailed(
            f"no manager runs for {paths.root}{stale}; run `spacetail up` first"
        ) from None
    if not reply.get("ok"):
        if reply.get("timed_out"):
            raise OperationFailed(
                f"timed out after {timeout:g}s: tailscale is {reply.get('backend_state')} "
                f"({reply.get('reason') or 'still logging in'})"
            )
        raise OperationFailed(f"the tailnet is not usable: {reply.get('reason')}")
    if peers:
        wait_for_peers(reply, peers, deadline)
    return reply


def wait_for_peers(reply: dict[str, Any], peers: tuple[str, ...], deadline: float) -> None:
    """Until each peer answers `tailscale ping` (a relayed answer counts)."""
    import subprocess

    from spacetail.tailscale import ping_argv

    tailscale = Path(str(reply.get("tailscale")))
    sock = Path(str(reply.get("tailscaled_socket")))
    from spacetail.tailscale import Binaries

    binaries = Binaries(tailscale, tailscale)
    pending = list(peers)
    last: dict[str, str] = {}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            details = "; ".join(f"{p}: {last.get(p, 'no answer')}" for p in pending)
            raise OperationFailed(f"peer(s) did not answer in time: {details}")
        for peer in list(pending):
            per_try = max(1.0, min(3.0, deadline - time.monotonic()))
            try:
                result = subprocess.run(
                    ping_argv(binaries, sock, peer, per_try),
                    capture_output=True,
                    text=True,
                    timeout=per_try + 2,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                last[peer] = "no answer"
                continue
            if result.returncode == 0:
                pending.remove(peer)
            else:
                text = (result.stdout + result.stderr).strip().splitlines()
                last[peer] = text[-1] if text else f"exit {result.returncode}"
        if pending:
            # A new node's view of the tailnet fills in over seconds: ask again, not in a spin.
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
