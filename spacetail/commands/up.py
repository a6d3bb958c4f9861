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

from spacetail.console import indent, say
from spacetail.errors import ConfigError, OperationFailed, SpacetailError
from spacetail.forwards.spec import bind_listeners
from spacetail.log import tail
from spacetail.progress import Progress
from spacetail.state import control, statedir
from spacetail.state.identity import (
    ProcessIdentity,
    ProvenProcess,
    phase_shell,
    refuse_foreign_proc,
    terminate,
)
from spacetail.state.lookup import still_running
from spacetail.state.paths import Paths, remove_file
from spacetail.state.phases import Phase
from spacetail.state.status import Problem, Status
from spacetail.state.stopping import STOPPING_GRACE, stop_manager, stop_unanswering
from spacetail.state.verdict import await_verdict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from spacetail.config.loader import Config
    from spacetail.tailnet.tailscale import Binaries

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
) -> Status:
    """Bring the tailnet up (or find it up); returns the manager's status. Raises on failure,
    after stopping what it started."""
    from spacetail.install.locate import find_binaries

    refuse_foreign_proc()
    started = time.monotonic()
    deadline = started + cfg.timeout  # one deadline for the login, the peers and the targets
    if cfg.scope_note:
        say(out, cfg.scope_note)
    progress = Progress(out if cfg.progress else None)
    binaries = find_binaries(env)
    with statedir.claim(paths, max(statedir.LOCK_TIMEOUT, cfg.timeout + 30)) as claim:
        joined = _claim_manager(
            cfg, claim, env=env, binaries=binaries, watch_pid=watch_pid, deadline=deadline, out=out
        )
    reply: Status | None = None  # once the manager says the node runs
    try:
        with _interrupts(interruptible):
            reply = _await_manager(cfg, paths, joined, wait=wait, deadline=deadline,
                                   progress=progress, env=env)  # fmt: skip
            if wait and (cfg.peers or cfg.wait_for):
                from spacetail.tailnet.ready import (
                    wait_beyond_running,  # its imports only when asked
                )

                wait_beyond_running(
                    reply, peers=cfg.peers, targets=cfg.wait_for, deadline=deadline, env=env,
                    progress=progress, out=out, check=still_running(paths, reply),
                )  # fmt: skip
            # Right before saying connected (and the exports): never for a manager that is gone.
            still_running(paths, reply)()
    except SpacetailError:
        if joined.started_here:  # outside _interrupts: a second signal waits
            _stop_started(paths, joined, out, stops_itself=reply is None)
        raise
    _report_up(reply, time.monotonic() - started, wait=wait, out=out, watching=watching)
    return reply


def _claim_manager(
    cfg: Config,
    claim: statedir.Claim,
    *,
    env: Mapping[str, str],
    binaries: Binaries,
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
    if p.answering and p.status is not None and p.status.phase is Phase.FAILED:
        say(out, f"replacing a manager that failed: {p.status.login.reason}")
        stop_manager(paths, p, logout=True, out=out)
        p = claim.reprobe()
    if p.answering and p.status is not None:
        _check_forwards(cfg, p.status)
        say(out, f"a manager already runs here (pid {p.status.manager_pid}); nothing to change")
        return Joined(p.answering_ident, started_here=False)
    if p.lock_held:
        stop_unanswering(paths, p, out)
    removed = claim.clean()
    if removed:
        say(out, f"removed stale {p.describe_stale()}: {', '.join(removed)}")
    remove_file(paths.last_stop)  # a new manager: the last one's story is over
    return _start_manager(
        cfg, claim, env=env, binaries=binaries, watch_pid=watch_pid, deadline=deadline
    )


def _check_forwards(cfg: Config, status: Status) -> None:
    """A running manager cannot take new forwards: say so rather than pretend."""
    have = {(f.listen, f.target) for f in status.forwards}
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
    binaries: Binaries,
    watch_pid: int | None,
    deadline: float,
) -> Joined:
    from spacetail.manager import daemon
    from spacetail.manager.launch import Launch

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
            remove_file(paths.control_socket)
            raise
    except OperationFailed:
        if shell_fd is not None:
            os.close(shell_fd)
        raise
    launch = Launch(
        cfg=cfg, paths=paths, binaries=binaries, listener=listener, env=dict(env),
        watch_pidfd=shell_fd, watch_pid=shell_pid, login_deadline=deadline,
        forward_listeners=tuple(forwards),
    )  # fmt: skip
    keep = [listener.fileno(), *(f.fileno() for f in forwards)]
    keep += [shell_fd] if shell_fd is not None else []

    def run(ready_fd: int) -> int:
        from dataclasses import replace

        from spacetail.manager.service import serve  # in the manager only: up itself never needs it

        return serve(replace(launch, ready_fd=ready_fd))

    try:
        pid, line = daemon.spawn(run, keep, paths.manager_log, ready_timeout=15.0)
    finally:
        for sock in (listener, *forwards):
            sock.close()
        if shell_fd is not None:
            os.close(shell_fd)
    if not line.startswith("READY ") or pid is None:
        remove_file(paths.control_socket)
        remove_file(paths.record)
        detail = line.removeprefix("ERROR ").strip() or "it exited before it was ready"
        raise OperationFailed(
            f"the manager did not start: {detail}\n{indent(tail(paths.manager_log, 8))}"
        )
    # Our own grandchild, alive and waiting for us: its PID is its in our namespace.
    return Joined(ProcessIdentity.of(pid), started_here=True)


def _await_manager(
    cfg: Config,
    paths: Paths,
    joined: Joined,
    *,
    wait: bool,
    deadline: float,
    progress: Progress,
    env: Mapping[str, str],
) -> Status:
    until = "running" if wait else "api"
    # A manager this `up` started fails its login at this very deadline and says so; one it
    # joined has its own deadline, and this `up` waits for it only as long as it was told to.
    margin = 5.0 if joined.started_here else 0.0
    try:
        answer, reply = await_verdict(paths, until, deadline, progress, margin=margin)
    except (control.ControlUnavailable, ValueError) as exc:
        reply = _last_words(paths, joined) or _no_answer(paths, exc)
    else:
        if answer.get("ok") is True:
            return reply
    from spacetail.state.kinds import FailureClass, kind_of
    from spacetail.tailnet.advice import advice_for
    from spacetail.tailnet.failures import excerpt

    reason, kind = reply.login.reason, kind_of(reply.login.kind)
    if reason is None:
        reason = f"not Running within {cfg.timeout:g}s (state {reply.backend_state})"
        kind = FailureClass.TIMEOUT_STARTING

    setting = reply.login.setting
    head = f"{setting}: {reason}" if setting else f"could not connect to the tailnet: {reason}"
    advice = reply.login.advice or advice_for(kind or FailureClass.UNKNOWN)
    message = f"{head}\n  what to do: {advice}"
    lines = excerpt(paths.tailscaled_log, reply.tailscaled_log_offset)
    if lines:
        shown = indent("\n".join(lines), 4)
        message += f"\n  this run's lines of {paths.tailscaled_log}:\n{shown}"
    if joined.started_here:
        message += "\n  everything this `up` started has been stopped"
    else:
        message += "\n  the manager that was already running goes on (`spacetail down` stops it)"
    from spacetail.config.known_secrets import known_secrets
    from spacetail.log import Redactor

    # tailscaled's lines are read here, not through the manager: the same redaction as its.
    failed = OperationFailed(Redactor(known_secrets(cfg, env))(message))
    failed.exit_code = reply.login.exit_code or 1  # 2: a setting of the user's
    raise failed


def _last_words(paths: Paths, joined: Joined) -> Status | None:
    """A manager that failed before this `up` could ask it (a refused flag fails within
    milliseconds) left its verdict in last-stop.json as it exited: read it as its answer."""
    from spacetail.state.lookup import read_last_stop

    handle = ProvenProcess.open(joined.ident) if joined.ident else None
    if handle is not None:
        with handle:
            handle.wait(NEVER_RAN_EXIT)
    last, _garbage = read_last_stop(paths)
    if last is None or joined.ident is None or last.manager_pid != joined.ident.pid:
        return None
    verdict = Problem(
        reason=last.login_reason or last.reason,
        kind=last.kind,
        advice=last.advice,
        setting=last.setting,
        exit_code=last.exit_code,
    )
    return Status(state_dir=str(paths.root), login=verdict,
                  tailscaled_log_offset=last.tailscaled_log_offset)  # fmt: skip


def _no_answer(paths: Paths, exc: Exception) -> Status:
    reason = f"the manager stopped answering ({exc})"
    detail = tail(paths.manager_log, 3)
    if detail:
        reason += f"; its log ends with:\n{indent(detail, 4)}"
    from spacetail.state.kinds import FailureClass  # (not on up's path until it fails)

    problem = Problem(reason=reason, kind=FailureClass.MANAGER_GONE.value)
    return Status(state_dir=str(paths.root), login=problem)


def _stop_started(paths: Paths, joined: Joined, out: TextIO, *, stops_itself: bool) -> None:
    """Running, or nothing left: stop the manager this `up` started. After a failed login it may
    be stopping itself (STOPS_ITSELF): wait for that; else (a node that runs, but its peers or
    targets did not answer) ask it over the socket at once."""
    handle = ProvenProcess.open(joined.ident) if joined.ident else None
    if handle is None:
        return
    with handle:
        if stops_itself and handle.wait(NEVER_RAN_EXIT):
            return
        try:
            control.ControlClient(paths.control_socket).request_until_closed(
                {"cmd": "down", "logout": True}, timeout=STOPPING_GRACE
            )
        except control.ControlUnavailable:
            pass
        if not handle.wait(STOPPING_GRACE):
            say(out, f"manager pid {handle.ident.pid} did not stop; terminating it")
            terminate(handle, 2.0)


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


def _report_up(reply: Status, elapsed: float, *, wait: bool, out: TextIO, watching: str) -> None:
    ips = ", ".join(reply.node.tailscale_ips) or "no address yet"
    if wait:
        from spacetail.state.report import joined_with

        joined = joined_with(reply)
        joined = f"; joined with {joined}" if joined else ""
        say(out, f"connected to the tailnet as {reply.name} ({ips}) in {elapsed:.1f}s{joined}")
    else:
        say(out, f"tailscaled is up (state {reply.backend_state}); not waiting for login")
    if reply.proxies is not None:
        say(out, f"proxies: HTTP {reply.proxies.http}  SOCKS5 {reply.proxies.socks5}")
    stops = []
    if reply.watch_pid:
        stops.append(f"when {watching} (pid {reply.watch_pid}) exits")
    if reply.max_lifetime_left is not None:
        stops.append(f"after {_duration(reply.max_lifetime_left)}")
    stops.append("on `spacetail down`")
    say(out, f"manager pid {reply.manager_pid}; it stops {', '.join(stops)}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
