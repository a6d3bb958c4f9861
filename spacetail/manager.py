"""The manager: a small long-lived process that owns tailscaled, logs in, answers the control
socket, and shuts everything down when asked, when the phase's shell exits, or at its deadline.

One thread (the main loop) makes every decision. Other threads only report: the reapers of the
children and the watch-ipn-bus reader put typed events on a queue and write a byte to a wake-up
pipe. Signal handlers only record the signal (uvicorn's supervisors do the same). The login has
its own state machine (login.py) and the control socket its own server (control.py); what is
left here is the loop, tailscaled's supervision, the answers to requests, and the shutdown.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from spacetail import __version__, statedir
from spacetail import events as ev
from spacetail.children import Child, die_with_parent
from spacetail.config import Config
from spacetail.control import ControlServer, Request
from spacetail.daemon import signal_ready
from spacetail.events import ChildProcess, Event
from spacetail.identity import ProcessIdentity
from spacetail.lifetime import Lifetime
from spacetail.log import Log, open_append
from spacetail.login import Login, Phase
from spacetail.loop import Loop
from spacetail.paths import Paths
from spacetail.proxyenv import clean_saved_envs
from spacetail.relay import forwards
from spacetail.report import last_words
from spacetail.tailscale import Binaries, LocalAPI, clean_env, logout_argv, tailscaled_argv
from spacetail.tailscaled import (
    MAX_RESTARTS,
    TERM_GRACE,
    Supervision,
    TailscaledRun,
    exit_text,
    logout,
    start_watcher,
)
from spacetail.waiters import Until, Waiter, Waiters

LOGOUT_TIMEOUT = 1.0
NEVER_RAN_GRACE = 0.1
SHUTDOWN_BUDGET = 1.8  # from the decision to stop until the manager exits; the promise is 2 s
MAX_WAIT = 2 * 86400.0  # above the longest --timeout (24 h) with room for up's margin

Spawn = Callable[[list[str], "IO[bytes] | None"], ChildProcess]


@dataclass
class Launch:
    """Everything a manager is started with: what `up` (or `spacetail manager`) decided."""

    cfg: Config
    paths: Paths
    binaries: Binaries
    listener: socket.socket
    env: dict[str, str]
    ready_fd: int | None = None  # the readiness pipe: one line, READY or ERROR
    watch_pidfd: int | None = None
    watch_pid: int | None = None
    login_deadline: float | None = None  # CLOCK_MONOTONIC, from `up`: its --timeout holds
    forward_listeners: list[socket.socket] = field(default_factory=list)  # bound by `up`


class Manager(Loop):
    def __init__(
        self,
        launch: Launch,
        log: Log,
        *,
        clock: Callable[[], float] = time.monotonic,
        spawn: Spawn | None = None,
        api: Any = None,
        watch: Callable[[ChildProcess, float], None] | None = None,
    ) -> None:
        super().__init__()
        self.launch = launch
        self.cfg = launch.cfg
        self.paths = launch.paths
        self.log = log
        self.clock = clock
        self.started = clock()
        me = ProcessIdentity.of(os.getpid())
        # Sent with every status: a client in another container must never take our PID for
        # one of its own processes.
        self.identity = me.to_json() if me else None
        cfg = self.cfg
        self.lifetime = Lifetime(clock, cfg.max_lifetime, launch.watch_pid, launch.watch_pidfd)
        self.api = api or LocalAPI(self.paths.tailscaled_socket)
        self.spawn = spawn or self._spawn_child
        self.watch = watch or (
            lambda proc, delay: start_watcher(self.api, proc, self.post, clock, delay)
        )
        self.server = ControlServer(launch.listener, self.sel, clock=clock, log=self.log.info)
        self.server.on("status", lambda r: r.reply(self.status()))
        self.server.on("wait", self._on_wait)
        self.server.on("down", self._on_down)
        self.login = Login(
            cfg,
            self.paths,
            launch.binaries,
            api=self.api,
            spawn=lambda argv: self.spawn(argv, None),
            outcome=self,
            clock=clock,
            deadline=launch.login_deadline,
        )
        self.sup = Supervision()
        self.tailscaled: TailscaledRun | None = None
        self.waiters = Waiters()
        self.down_requests: list[Request] = []
        self.stop_reason: str | None = None
        self.stop_at: float | None = None
        self.logout_on_stop = not cfg.persist_node
        self.exit_code = 0
        self.tailscaled_log_offset = 0
        self.shutdown_on_failure = True  # a login that never succeeded leaves nothing running
        self._socket_ino = statedir.inode(self.paths.control_socket)
        self._preexec = die_with_parent(os.getpid())
        self.forwarder = forwards(cfg, launch.forward_listeners, self.api, self.note)

    # --- plumbing -------------------------------------------------------------------------

    def _spawn_child(self, argv: list[str], stdout: IO[bytes] | None) -> ChildProcess:
        # No proxy variables (tailscaled would reach control through its own proxy) and no
        # secrets; tailscaled keeps its log-policy files in the state folder, not in $HOME.
        env = clean_env(self.launch.env) | {"TS_LOGS_DIR": str(self.paths.node_state_dir)}
        return Child(argv, env, self._preexec, self._child_exited, stdout=stdout)

    def _child_exited(self, child: Child, code: int) -> None:
        self.post(ev.ChildExited(child, code))

    def note(self, message: str) -> None:
        self.log.info(message)

    def write_record(self) -> None:
        td = self.tailscaled.ident if self.tailscaled else None
        statedir.write_record(self.paths, self.cfg, tailscaled=td, watch_pid=self.launch.watch_pid)

    # --- main loop ------------------------------------------------------------------------

    def run(self) -> int:
        self.install_signals()
        self.lifetime.register(self.sel, self.stop)
        try:
            self.write_record()
        except OSError as exc:  # a full or read-only workspace: say so, start nothing
            self._signal_ready(f"ERROR cannot write {self.paths.record}: {exc.strerror or exc}")
            self.server.close()
            return 1
        self.note(
            f"manager {os.getpid()} started (spacetail {__version__}); {self.lifetime.describe()}"
        )
        self._signal_ready(f"READY {os.getpid()}")
        try:
            if self.forwarder is not None:
                self.forwarder.start()
            self.start_tailscaled()
            while self.stop_reason is None:
                self.tick()
        except Exception as exc:  # the manager must never die without cleaning up
            self.log.error(f"internal error: {exc!r}")
            self.stop_reason = f"internal error: {exc}"
            self.exit_code = 1
        self.shutdown()
        return self.exit_code

    def _signal_ready(self, line: str) -> None:
        signal_ready(self.launch.ready_fd, line)
        self.launch.ready_fd = None

    def _next_timeout(self) -> float:
        deadlines = [
            self.sup.restart_at,
            self.lifetime.next_deadline(),
            self.login.next_deadline(),
            self.server.next_deadline(),
            self.waiters.next_deadline(),
        ]
        soonest = min((d for d in deadlines if d is not None), default=None)
        return 3600.0 if soonest is None else max(0.0, soonest - self.clock())

    def tick(self) -> None:
        def on_signal(signum: int) -> None:
            self.stop(f"received {signal.Signals(signum).name}")

        self.turn(self._next_timeout(), on_signal, self.handle)
        self.timers(self.clock())

    def timers(self, now: float) -> None:
        ending = self.lifetime.check(now)
        if ending:
            self.stop(ending)
        if self.sup.restart_at is not None and now >= self.sup.restart_at:
            self.sup.restart_at = None
            try:
                self.start_tailscaled()
            except OSError as exc:  # a full disk, no descriptors left: a failed restart
                self._tailscaled_failed(f"cannot start tailscaled ({exc.strerror or exc})")
        self.login.tick(now)
        self.waiters.expire(now, lambda: self._wait_reply(timed_out=True))
        self.server.expire(now)

    def handle(self, event: Event) -> None:
        if isinstance(event, ev.ChildExited):
            if not self.login.on_up_exit(event.child, event.code):
                self._on_tailscaled_exit(event.child, event.code)
            return
        if not self._current(event.child):
            return  # news of a tailscaled already replaced
        assert self.tailscaled is not None
        if isinstance(event, ev.ApiReady):
            self.tailscaled.api_ready = True
            self.note("tailscaled's LocalAPI answers")
            self._answer_waiters()
            self.login.api_ready()
        elif isinstance(event, ev.ApiTimeout) and event.child.exit_code is None:
            # (When tailscaled has exited, its exit event says why, in its own words.)
            self._tailscaled_failed(f"tailscaled's LocalAPI did not answer ({event.error})")
        elif isinstance(event, ev.StateChanged):
            self.login.on_state(event.state)
        elif isinstance(event, ev.BusClosed):
            if self.tailscaled.exited is None:  # tailscaled lives on: follow it again
                self.note(f"watch-ipn-bus closed ({event.error}); reconnecting")
                self.watch(event.child, 0.1)
        elif isinstance(event, ev.ErrMessage):
            self.note(f"tailscaled: {event.text}")

    # --- what the login reports -----------------------------------------------------------

    def succeeded(self) -> None:
        # From now on a failure is reported by status and wait, not by stopping: the phase may
        # still be using connections, and `up` replaces a failed manager.
        self.shutdown_on_failure = False
        self.note(f"tailscale is Running as {self.cfg.hostname}")
        self._answer_waiters()

    def failed(self, reason: str) -> None:
        del reason  # the login noted it; status shows it
        self.sup.restart_at = None
        self._answer_waiters()
        if self.shutdown_on_failure:
            self.exit_code = 1
            self.stop("the login failed")

    # --- tailscaled -----------------------------------------------------------------------

    def start_tailscaled(self) -> None:
        statedir.remove_file(self.paths.tailscaled_socket)
        self.paths.node_state_dir.mkdir(mode=0o700, exist_ok=True)
        argv = tailscaled_argv(self.launch.binaries, self.cfg, self.paths)
        with open(open_append(self.paths.tailscaled_log), "ab") as log_file:
            offset = log_file.seek(0, os.SEEK_END)
            self.tailscaled_log_offset = offset  # failures.excerpt shows this run's lines only
            proc = self.spawn(argv, log_file)
        self.tailscaled = TailscaledRun(proc, ProcessIdentity.of(proc.pid), self.clock(), offset)
        self.login.phase = Phase.STARTING
        self.note(f"started tailscaled (pid {proc.pid}): {' '.join(argv[1:])}")
        self._guarded("writing manager.json", self.write_record)
        self.watch(proc, 0.0)

    def _current(self, proc: ChildProcess) -> bool:
        return self.tailscaled is not None and self.tailscaled.proc is proc

    def _on_tailscaled_exit(self, proc: ChildProcess, code: int) -> None:
        if not self._current(proc):
            return
        assert self.tailscaled is not None
        self.tailscaled.exited = code
        how = exit_text(code)
        self.sup.last_exit = f"tailscaled {how}"
        self.login.abort("tailscaled exited")
        if self.stop_reason is not None:
            return
        run, self.tailscaled = self.tailscaled, None
        self.note(f"tailscaled {how} unexpectedly; its last lines:\n{run.lines(self.paths)}")
        self.login.tailscaled_lost()
        if self.login.phase.logging_in and self.shutdown_on_failure:
            self.login.fail(*run.why(self.paths.tailscaled_log, self.cfg, how))
            return
        self._tailscaled_failed(f"tailscaled {how}")

    def _tailscaled_failed(self, why: str) -> None:
        """Supervision: restart tailscaled with backoff, a bounded number of times."""
        if self.tailscaled is not None:
            self.tailscaled.stop(self.note)
        self.tailscaled = None
        if self.login.phase.logging_in and self.shutdown_on_failure:
            self.login.fail(why)
            return
        delay = self.sup.next_delay()
        if delay is None:
            reason = f"tailscaled could not be kept running ({MAX_RESTARTS} restarts); last: {why}"
            self.login.give_up(reason)
            self.note(reason)
            self._answer_waiters()
            return
        self.login.restarting(delay)
        self.sup.restart_at = self.clock() + delay
        self.note(
            f"restarting tailscaled in {delay:.1f}s (restart {self.sup.restarts}/{MAX_RESTARTS})"
        )

    # --- requests -------------------------------------------------------------------------

    def _on_wait(self, request: Request) -> None:
        timeout = request.message.get("timeout", 60)
        if not isinstance(timeout, (int, float)) or not 0 <= timeout <= MAX_WAIT:
            request.reply({"ok": False, "error": "bad timeout"})
            return
        until = Until.API if request.message.get("until") == "api" else Until.RUNNING
        self.waiters.add(Waiter(request, self.clock() + float(timeout), until), self._verdict)

    def _on_down(self, request: Request) -> None:
        logout = request.message.get("logout")
        # In workspace node-state mode the node outlives the phase unless asked otherwise.
        self.logout_on_stop = (not self.cfg.persist_node) if logout is None else bool(logout)
        request.reply({"ok": True, "stopping": True, "pid": os.getpid()}, close=False)
        self.down_requests.append(request)  # closed when this process exits: "all gone"
        self.stop("asked to stop (spacetail down)")

    def _wait_reply(self, timed_out: bool = False) -> dict[str, Any]:
        reply = self.status()
        reply["ok"] = self.login.phase is Phase.RUNNING
        if timed_out:
            reply["timed_out"] = True
        return reply

    def _verdict(self, until: Until) -> dict[str, Any] | None:
        """The answer to a wait, or None while there is nothing to say yet."""
        phase = self.login.phase
        api = self.tailscaled is not None and self.tailscaled.api_ready
        stopping = phase is Phase.STOPPING or self.stop_reason is not None
        api_wait = until is Until.API
        if not (phase in (Phase.RUNNING, Phase.FAILED) or (api_wait and api) or stopping):
            return None
        reply = self._wait_reply()
        if stopping and not reply.get("reason"):
            reply["reason"] = f"the manager is stopping: {self.stop_reason}"
        reply["ok"] = phase is Phase.RUNNING or (api_wait and api and phase is not Phase.FAILED)
        return reply

    def _answer_waiters(self) -> None:
        self.waiters.answer(self._verdict)

    def status(self) -> dict[str, Any]:
        from spacetail.report import status_reply

        return status_reply(self)

    # --- shutting down --------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_at = self.clock()
            self.login.halt()
            self.note(f"stopping: {reason}")

    def _logout(self, timeout: float) -> None:
        td = self.tailscaled
        if td is not None and td.exited is None and td.api_ready:
            argv = logout_argv(self.launch.binaries, self.paths)
            logout(lambda: self.spawn(argv, None), self.note, timeout)

    def shutdown(self) -> None:
        """Everything stops within SHUTDOWN_BUDGET of the decision to stop (the README's 2 s),
        even with a frozen tailscaled; a step that fails (a read-only or full workspace) is
        noted and the next one still runs."""
        budget_end = (self.stop_at or self.clock()) + SHUTDOWN_BUDGET

        def left(reserve: float, most: float) -> float:
            return max(0.1, min(most, budget_end - reserve - self.clock()))

        # A node that never logged in has nothing to log out (and the control server may be
        # the very thing that is unreachable).
        never_ran = self.login.phase is Phase.FAILED and self.login.running_since is None
        if self.forwarder is not None:
            self.forwarder.stop()
        self.login.stop()
        self.server.stop_listening()
        if statedir.inode(self.paths.control_socket) == self._socket_ino:
            # New clients get "no manager" at once rather than a dying one.
            self._guarded("removing the control socket", self.paths.control_socket.unlink)
        self._answer_waiters()
        if self.logout_on_stop and not never_ran:
            self._logout(left(reserve=0.6, most=LOGOUT_TIMEOUT))
        if self.tailscaled is not None:
            # A tailscaled that never ran has no node to save: it gets a short grace.
            most = NEVER_RAN_GRACE if never_ran else TERM_GRACE
            self.tailscaled.stop(self.note, grace=left(reserve=0.1, most=most))
        self.server.close()
        statedir.remove_run_files(self.paths, keep_node_state=self.cfg.persist_node)
        # When the phase failed, no after hook ran `down --env`: take our dead proxies out of
        # Spacelift's saved environment ourselves, so the next phase does not inherit them.
        for path in clean_saved_envs(self.launch.env, self.cfg.proxies):
            self.note(f"removed our proxy lines from {path}")
        if not self.down_requests:  # stopped on its own: say why, after it is gone
            words = last_words(self, never_ran)
            write = functools.partial(statedir.write_private_json, self.paths.last_stop, words)
            self._guarded("writing last-stop.json", write)
        self.note(f"manager {os.getpid()} stopped: {self.stop_reason}")
        # down's connections close when this process exits: that is its "all gone" signal.

    def _guarded(self, what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.note(f"{what} failed ({exc.strerror or exc}); going on")


def serve(launch: Launch) -> int:
    """Run a manager in this process until it stops; holds the manager lock all along."""
    from filelock import Timeout

    log = Log(launch.paths.manager_log)
    try:
        lock = statedir.take_lock(launch.paths.manager_lock, timeout=5)
    except (Timeout, OSError) as exc:
        message = f"another manager holds {launch.paths.manager_lock} ({exc})"
        log.error(message)
        if launch.ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(launch.ready_fd, f"ERROR {message}\n".encode())
        return 1
    try:
        return Manager(launch, log).run()
    finally:
        lock.release()
        log.close()
