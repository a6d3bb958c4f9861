"""What `spacetail up` does: claim the state folder, start a manager (or join the one that runs
here), wait until the node is Running and the peers answer, and report. Its promise is
"Running, or nothing left": whatever this `up` started is stopped again when it fails, when its
peers do not answer, or when it is interrupted; a manager it only joined is never touched."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from spacetail import control, statedir
from spacetail.client import (
    STOPPING_GRACE,
    indent,
    say,
    stop_manager,
    stop_unanswering,
    wait_for_peers,
)
from spacetail.errors import ConfigError, OperationFailed, SpacetailError
from spacetail.forward import bind_listeners
from spacetail.identity import ProcessIdentity, ProvenProcess, phase_shell, proc_mismatch
from spacetail.log import tail
from spacetail.paths import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from spacetail.config import Config

NEVER_RAN_EXIT = 1.0  # a manager whose login failed is gone this soon (no logout, short grace)


class Interrupted(SpacetailError):
    """`up` got SIGINT, SIGTERM or SIGHUP while waiting; what it started has been stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


@dataclass
class Joined:
    """The manager `up` waits for, and whether this `up` started it."""

    ident: ProcessIdentity | None
    started_here: bool


def up(
    cfg: Config,
    paths: Paths,
    env: Mapping[str, str],
    *,
    wait: bool = True,
    out: TextIO = sys.stderr,
    watch_pid: int | None = None,
    interruptible: bool = False,
    watching: str = "the shell",
) -> dict[str, Any]:
    """Bring the tailnet up (or find it up); returns the manager's status. Raises on failure,
    after stopping what it started."""
    from spacetail.tailscale import find_binaries

    refuse_foreign_proc()
    started = time.monotonic()
    deadline = started + cfg.timeout  # one deadline for the login and the peers
    binaries = find_binaries(env)
    with statedir.claim(paths, max(statedir.LOCK_TIMEOUT, cfg.timeout + 30)) as claim:
        joined = _claim_manager(
            cfg, claim, env=env, binaries=binaries, watch_pid=watch_pid, deadline=deadline, out=out
        )
    try:
        with _interrupts(interruptible):
            reply = _await_manager(cfg, paths, joined, wait=wait, deadline=deadline)
            if wait and cfg.peers:
                wait_for_peers(reply, cfg.peers, deadline)
                say(out, f"peers answer: {', '.join(cfg.peers)}")
    except SpacetailError:
        if joined.started_here:
            _stop_started(paths, joined, out)  # outside _interrupts: a second signal waits
        raise
    _report_up(reply, time.monotonic() - started, wait=wait, out=out, watching=watching)
    return reply


def refuse_foreign_proc() -> None:
    """A manager must prove its processes and watch the shell through /proc: where /proc numbers
    another PID namespace's processes, start nothing rather than watch or signal a stranger."""
    problem = proc_mismatch()
    if problem is not None:
        raise OperationFailed(
            f"{problem}; mount a /proc of this namespace (unshare --pid --fork --mount-proc, as "
            "containers do) and run spacetail there"
        )


def _claim_manager(
    cfg: Config,
    claim: statedir.Claim,
    *,
    env: Mapping[str, str],
    binaries: Any,
    watch_pid: int | None,
    deadline: float,
    out: TextIO,
) -> Joined:
    paths = claim.paths
    p = claim.probe
    if p.foreign:
        raise OperationFailed(
            f"{p.describe_foreign()}; two containers cannot share one: stop it with "
            "`spacetail down` (it is asked over the socket, never signalled) or set "
            "SPACETAIL_DIR to a folder of this phase's own"
        )
    if p.answering and p.status is not None and p.status.get("phase") == "failed":
        say(out, f"replacing a manager that failed: {p.status.get('reason')}")
        stop_manager(paths, p, logout=True, out=out)
        p = claim.reprobe()
    if p.answering and p.status is not None:
        _check_forwards(cfg, p.status)
        say(out, f"a manager already runs here (pid {p.status['manager_pid']}); nothing to change")
        return Joined(p.answering_ident, started_here=False)
    if p.lock_held:
        stop_unanswering(paths, p, out)
    removed = claim.clean()
    if removed:
        say(out, f"removed stale {p.describe_stale()}: {', '.join(removed)}")
    statedir.remove_file(paths.last_stop)  # a new manager: the last one's story is over
    return _start_manager(
        cfg, claim, env=env, binaries=binaries, watch_pid=watch_pid, deadline=deadline
    )


def _check_forwards(cfg: Config, status: dict[str, Any]) -> None:
    """A running manager cannot take new forwards: say so rather than pretend."""
    have = {(f.get("listen"), f.get("target")) for f in status.get("forwards") or []}
    missing = [f"{f.listen}={f.target}" for f in cfg.forwards if (f.listen, f.target) not in have]
    if missing:
        raise OperationFailed(
            f"a manager already runs here without --forward {', '.join(missing)}; give every "
            "forward to the first `spacetail up`, or `spacetail down` first"
        )


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
    *,
    env: Mapping[str, str],
    binaries: Any,
    watch_pid: int | None,
    deadline: float,
) -> Joined:
    from spacetail import daemon
    from spacetail.manager import Launch

    paths = claim.paths
    shell_pid, shell_fd = _watched_shell(cfg, watch_pid)
    try:
        listener = claim.bind()
        try:
            # Bound here, before `up` returns: a client on the hook's next line connects, and a
            # taken port fails `up` at once naming it, with nothing started.
            forwards = bind_listeners(cfg.forwards)
        except OperationFailed:
            listener.close()
            statedir.remove_file(paths.control_socket)
            raise
    except OperationFailed:
        if shell_fd is not None:
            os.close(shell_fd)
        raise
    launch = Launch(cfg, paths, binaries, listener, dict(env), None, shell_fd, shell_pid,
                    deadline, forwards)  # fmt: skip
    keep = [listener.fileno(), *(f.fileno() for f in forwards)]
    keep += [shell_fd] if shell_fd is not None else []

    def run(ready_fd: int) -> int:
        from spacetail.manager import serve  # in the manager only: up itself never needs it

        launch.ready_fd = ready_fd
        return serve(launch)

    try:
        pid, line = daemon.spawn(run, keep, paths.manager_log, ready_timeout=15.0)
    finally:
        for sock in (listener, *forwards):
            sock.close()
        if shell_fd is not None:
            os.close(shell_fd)
    if not line.startswith("READY ") or pid is None:
        statedir.remove_file(paths.control_socket)
        statedir.remove_file(paths.record)
        detail = line.removeprefix("ERROR ").strip() or "it exited before it was ready"
        raise OperationFailed(
            f"the manager did not start: {detail}\n{indent(tail(paths.manager_log, 8))}"
        )
    # Our own grandchild, alive and waiting for us: its PID is its in our namespace.
    return Joined(ProcessIdentity.of(pid), started_here=True)


def _await_manager(
    cfg: Config, paths: Paths, joined: Joined, *, wait: bool, deadline: float
) -> dict[str, Any]:
    until = "running" if wait else "api"
    # A manager this `up` started fails its login at this very deadline and says so; one it
    # joined has its own deadline, and this `up` waits for it only as long as it was told to.
    margin = 5.0 if joined.started_here else 0.0
    timeout = max(0.0, deadline - time.monotonic()) + margin
    try:
        reply = control.ControlClient(paths.control_socket).request(
            {"cmd": "wait", "until": until, "timeout": timeout}, timeout=timeout + 5
        )
    except control.ControlUnavailable as exc:
        reply = _last_words(paths, joined) or _no_answer(paths, exc)
    if reply.get("ok"):
        return reply
    reason = reply.get("reason") or (
        f"not Running within {cfg.timeout:g}s (state {reply.get('backend_state')})"
    )
    from spacetail.failures import advice, excerpt

    setting = reply.get("setting")
    head = f"{setting}: {reason}" if setting else f"could not connect to the tailnet: {reason}"
    message = f"{head}\n  what to do: {reply.get('advice') or advice(reason)}"
    lines = excerpt(paths.tailscaled_log, int(reply.get("tailscaled_log_offset") or 0))
    if lines:
        shown = indent("\n".join(lines), 4)
        message += f"\n  this run's lines of {paths.tailscaled_log}:\n{shown}"
    if joined.started_here:
        message += "\n  everything this `up` started has been stopped"
    else:
        message += "\n  the manager that was already running goes on (`spacetail down` stops it)"
    failed = OperationFailed(message)
    failed.exit_code = int(reply.get("exit_code") or 1)  # 2: a setting of the user's
    raise failed


def _last_words(paths: Paths, joined: Joined) -> dict[str, Any] | None:
    """A manager that failed before this `up` could ask it (a refused flag fails within
    milliseconds) left its verdict in last-stop.json as it exited: read it as its answer."""
    handle = ProvenProcess.open(joined.ident) if joined.ident else None
    if handle is not None:
        with handle:
            handle.wait(NEVER_RAN_EXIT)
    last, _garbage = statedir.read_record(paths.last_stop)
    if not last or joined.ident is None or last.get("manager_pid") != joined.ident.pid:
        return None
    return {
        "ok": False,
        "reason": last.get("login_reason") or last.get("reason"),
        "advice": last.get("advice"),
        "setting": last.get("setting"),
        "exit_code": last.get("exit_code"),
        "tailscaled_log_offset": last.get("tailscaled_log_offset"),
    }


def _no_answer(paths: Paths, exc: Exception) -> dict[str, Any]:
    reason = f"the manager stopped answering ({exc})"
    detail = tail(paths.manager_log, 3)
    if detail:
        reason += f"; its log ends with:\n{indent(detail, 4)}"
    return {"ok": False, "reason": reason}


def _stop_started(paths: Paths, joined: Joined, out: TextIO) -> None:
    """Running, or nothing left: stop the manager this `up` started. After a failed login it is
    already stopping itself: wait for that; else ask it (over the socket) to stop."""
    handle = ProvenProcess.open(joined.ident) if joined.ident else None
    if handle is None:
        return
    with handle:
        if handle.wait(NEVER_RAN_EXIT):
            return
        try:
            control.ControlClient(paths.control_socket).request_until_closed(
                {"cmd": "down", "logout": True}, timeout=STOPPING_GRACE
            )
        except control.ControlUnavailable:
            pass
        if not handle.wait(STOPPING_GRACE):
            say(out, f"manager pid {handle.ident.pid} did not stop; terminating it")
            statedir.terminate(handle, 2.0)


@contextmanager
def _interrupts(enabled: bool) -> Iterator[None]:
    """While `up` waits, SIGINT/SIGTERM/SIGHUP raise Interrupted, so that what it started is
    stopped before it exits (the manager has its own session: it never gets the signal)."""
    if not enabled:
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, interrupt) for s in watched}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _report_up(
    reply: dict[str, Any], elapsed: float, *, wait: bool, out: TextIO, watching: str
) -> None:
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
        stops.append(f"when {watching} (pid {reply['watch_pid']}) exits")
    left = reply.get("max_lifetime_left")
    if left is not None:
        stops.append(f"after {_duration(float(left))}")
    stops.append("on `spacetail down`")
    say(out, f"manager pid {reply.get('manager_pid')}; it stops {', '.join(stops)}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
