"""The manager: a small long-lived process that owns tailscaled, logs in, answers the control
socket, and shuts everything down when asked, when the phase's shell exits, or at its deadline.

One thread (the main loop) makes every decision, and never waits on tailscaled or a child.
Other threads only report: the reapers of the children, the IPN bus watcher and the status
reader (manager/watch.py) put typed events on a queue and write a byte to a wake-up pipe. Signal
handlers only record the signal (uvicorn's supervisors do the same). What tailscale last said
of the node is a snapshot the loop owns, so every request is answered from what is known at
once. Where the manager stands (the phase, the verdict, the ending) is its Lifecycle
(lifecycle.py); the login has its own attempts and backoff (login.py), tailscaled's runs and
restarts their supervisor (supervisor.py) and the control socket its own server
(state/control.py); what is left here is the loop's decisions, the answers to requests, and the
shutdown. Every verdict is a Failure with its kind: tailscale's words as failures.py reads them,
or the manager's own kind for what it saw (a frozen LocalAPI, a tailscaled that would not stay).
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable
from typing import IO

from spacetail import __version__
from spacetail.forwards.relay import forwards
from spacetail.log import Log
from spacetail.manager import events as ev
from spacetail.manager.children import Child, die_with_parent
from spacetail.manager.daemon import signal_ready
from spacetail.manager.events import ChildProcess, Event
from spacetail.manager.launch import Launch
from spacetail.manager.lifecycle import Lifecycle
from spacetail.manager.lifetime import Cause, Ending, Lifetime
from spacetail.manager.login import Login
from spacetail.manager.loop import Loop
from spacetail.manager.supervisor import MAX_RESTARTS, Supervisor, exit_text, logout
from spacetail.manager.wait_requests import Until, Waiter, Waiters
from spacetail.manager.watch import Reader, StatusReader, TailscaledAPI, start_watcher
from spacetail.state import statedir
from spacetail.state.control import ControlServer, Request
from spacetail.state.identity import ProcessIdentity
from spacetail.state.phases import Phase
from spacetail.state.proxyenv import clean_saved_envs
from spacetail.state.report import last_stop
from spacetail.state.status import Node, Problem, Proxies, Status, reply
from spacetail.tailnet.failures import Failure, FailureClass
from spacetail.tailnet.tailscale import LocalAPI, clean_env, logout_argv

LOGOUT_TIMEOUT = 1.0
SHUTDOWN_BUDGET = 1.8  # from the decision to stop until the manager exits; the promise is 2 s
MAX_WAIT = 2 * 86400.0  # above the longest --timeout (24 h) with room for up's margin

Spawn = Callable[[list[str], "IO[bytes] | None"], ChildProcess]


class Manager(Loop):
    def __init__(
        self,
        launch: Launch,
        log: Log,
        *,
        clock: Callable[[], float] = time.monotonic,
        spawn: Spawn | None = None,
        api: TailscaledAPI | None = None,
        watch: Callable[[ChildProcess, float], None] | None = None,
        reader: Reader | None = None,
    ) -> None:
        super().__init__()
        self.launch = launch
        self.cfg = cfg = launch.cfg
        self.paths = launch.paths
        self.log = log
        self.clock = clock
        self.started = clock()
        # Sent with every status: a client in another container must never take our PID for
        # one of its own processes.
        self.identity = ProcessIdentity.of(os.getpid())
        self.lifetime = Lifetime(clock, cfg.max_lifetime, launch.watch_pid, launch.watch_pidfd)
        self.spawn = spawn or self._spawn_child
        api = api or LocalAPI(self.paths.tailscaled_socket)
        self.reader = reader or StatusReader(api, self.post, clock)
        self.watch = watch or (
            lambda proc, delay: start_watcher(
                api, proc, self.post, clock, delay, on_news=self.reader.refresh
            )
        )
        self.server = ControlServer(launch.listener, self.sel, clock=clock, log=self.note)
        self.server.on("status", lambda r: r.reply(reply(self.status(), ok=True)))
        self.server.on("wait", self._on_wait)
        self.server.on("down", self._on_down)
        self.life = Lifecycle()
        self.login = Login(
            cfg, self.paths, launch.binaries, spawn=lambda argv: self.spawn(argv, None),
            outcome=self, life=self.life, clock=clock, refresh=self.reader.refresh,
            deadline=launch.login_deadline,
        )  # fmt: skip
        self.node = Node()  # what tailscale last said of the node: the loop's own snapshot
        self.sup = Supervisor(launch.binaries, cfg, self.paths, self.spawn, clock)
        self.waiters = Waiters()
        self.down_requests: list[Request] = []
        self.stop_at: float | None = None
        self.logout_on_stop = not cfg.persist_node
        self._ready_fd = launch.ready_fd
        self._socket_ino = statedir.inode(self.paths.control_socket)
        self._preexec = die_with_parent(os.getpid())
        api_for_forwards = LocalAPI(self.paths.tailscaled_socket)  # split DNS, in its threads
        self.forwarder = forwards(cfg, list(launch.forward_listeners), api_for_forwards, self.note)

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
        td = self.sup.current.ident if self.sup.current else None
        statedir.write_record(self.paths, self.cfg, tailscaled=td, watch_pid=self.launch.watch_pid)

    # --- main loop ------------------------------------------------------------------------

    @property
    def exit_code(self) -> int:
        ending = self.life.ending
        failed = ending is not None and ending.cause in (Cause.LOGIN_FAILED, Cause.INTERNAL_ERROR)
        return 1 if failed else 0

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
            self.reader.start()
            if self.forwarder is not None:
                self.forwarder.start()
            self.start_tailscaled()
            while not self.life.stopping:
                self.tick()
        except Exception as exc:  # the manager must never die without cleaning up
            self.log.error(f"internal error: {exc!r}")
            self.stop(Ending(Cause.INTERNAL_ERROR, f"internal error: {exc}"))
        self.shutdown()
        return self.exit_code

    def _signal_ready(self, line: str) -> None:
        signal_ready(self._ready_fd, line)
        self._ready_fd = None

    def _next_timeout(self) -> float:
        deadlines = [
            self.sup.next_deadline(),
            self.lifetime.next_deadline(),
            self.login.next_deadline(),
            self.server.next_deadline(),
            self.waiters.next_deadline(),
        ]
        soonest = min((d for d in deadlines if d is not None), default=None)
        return 3600.0 if soonest is None else max(0.0, soonest - self.clock())

    def tick(self) -> None:
        def on_signal(signum: int) -> None:
            self.stop(Ending(Cause.SIGNAL, f"received {signal.Signals(signum).name}"))

        self.turn(self._next_timeout(), on_signal, self.handle)
        self.timers(self.clock())
        self.reader.pace(fast=self.life.phase.logging_in)

    def timers(self, now: float) -> None:
        ending = self.lifetime.check(now)
        if ending:
            self.stop(ending)
        self.sup.overdue(now, self.note)
        if self.sup.restart_due(now):  # (after a retired run is gone: its ports and socket)
            try:
                self.start_tailscaled()
            except OSError as exc:  # a full disk, no descriptors left: a failed restart
                why = f"cannot start tailscaled ({exc.strerror or exc})"
                self._tailscaled_failed(Failure(FailureClass.TAILSCALED_EXITED, why))
        self.login.tick(now)
        self.waiters.expire(now, lambda: self._wait_reply(timed_out=True))
        self.server.expire(now)

    def handle(self, event: Event) -> None:
        if isinstance(event, ev.ChildExited):
            if not self.login.on_up_exit(event.child, event.code):
                self._on_tailscaled_exit(event.child, event.code)
            return
        run = self.sup.current
        if run is None or run.proc is not event.child:
            return  # news of a tailscaled already replaced
        if isinstance(event, ev.ApiReady):
            run.api_ready = True
            self.note("tailscaled's LocalAPI answers")
            self._answer_waiters()
            self.login.api_ready()
        elif isinstance(event, ev.NodeRead):
            self.node = event.node
            self.login.on_node(event.node, event.read_at)
        elif isinstance(event, ev.ApiTimeout) and event.child.exit_code is None:
            # (When tailscaled has exited, its exit event says why, in its own words.)
            why = f"tailscaled's LocalAPI did not answer ({event.error})"
            self._tailscaled_failed(Failure(FailureClass.TAILSCALED_UNRESPONSIVE, why))
        elif isinstance(event, ev.StateChanged):
            self.login.on_state(event.state)
        elif isinstance(event, ev.BusClosed):
            if run.exited is None:  # tailscaled lives on: follow it again
                self.note(f"watch-ipn-bus closed ({event.error}); reconnecting")
                self.watch(event.child, 0.1)
        elif isinstance(event, ev.ErrMessage):
            self.note(f"tailscaled: {event.text}")

    # --- the verdict: what the login reports, and the manager's own -------------------------

    def succeeded(self) -> None:
        # From now on a failure is reported by status and wait, not by stopping: the phase may
        # still be using connections, and `up` replaces a failed manager.
        self.life.running()
        self.note(f"tailscale is Running as {self.cfg.hostname}")
        self._answer_waiters()

    def failed(self, failure: Failure) -> None:
        """The verdict, the login's or the manager's (`fail`): FAILURE says what and its kind
        chooses the advice. Before the node ever ran, the manager ends with it."""
        self.life.fail(failure)
        self.note(f"gave up: {failure.line} ({failure.advice})")
        self.sup.restart_at = None
        self._answer_waiters()
        if not self.life.ran:  # a login that never succeeded leaves nothing running
            self.stop(Ending(Cause.LOGIN_FAILED, "the login failed"))

    def fail(self, failure: Failure) -> None:
        """A verdict of the manager's own (tailscaled's trouble): the login stops trying."""
        self.login.give_up(failure)
        self.failed(failure)

    # --- tailscaled -----------------------------------------------------------------------

    def start_tailscaled(self) -> None:
        argv = self.sup.start()
        assert self.sup.current is not None
        proc = self.sup.current.proc
        self.node = Node()
        self.life.change(Phase.STARTING)
        self.note(f"started tailscaled (pid {proc.pid}): {' '.join(argv[1:])}")
        self._guarded("writing manager.json", self.write_record)
        self.reader.follow(proc)
        self.watch(proc, 0.0)

    def _on_tailscaled_exit(self, proc: ChildProcess, code: int) -> None:
        run = self.sup.exited(proc, code)
        if run is None:
            return
        how = exit_text(code)
        self.login.tailscaled_lost()
        if self.life.stopping:
            return
        self.sup.retire()  # (gone already: nothing to signal)
        self.reader.follow(None)
        self.note(f"tailscaled {how} unexpectedly; its last lines:\n{run.lines(self.paths)}")
        if self.life.phase.logging_in and not self.life.ran:
            self.fail(run.why(self.paths.tailscaled_log, self.cfg, how))
            return
        self._tailscaled_failed(Failure(FailureClass.TAILSCALED_EXITED, f"tailscaled {how}"))

    def _tailscaled_failed(self, why: Failure) -> None:
        """Supervision: restart tailscaled with backoff, a bounded number of times. A run that
        still lives is retired (SIGTERM now, SIGKILL later): the loop never waits for it."""
        self.sup.retire()
        self.reader.follow(None)
        if self.life.phase.logging_in and not self.life.ran:
            self.fail(why)
            return
        delay = self.sup.schedule_restart()
        if delay is None:
            reason = (
                f"tailscaled could not be kept running ({MAX_RESTARTS} restarts); last: {why.line}"
            )
            self.fail(Failure(FailureClass.TAILSCALED_CRASH_LOOP, reason))
            return
        self.login.restarting(delay)
        self.life.change(Phase.STARTING)
        self.note(
            f"restarting tailscaled in {delay:.1f}s (restart {self.sup.restarts}/{MAX_RESTARTS})"
        )

    # --- requests -------------------------------------------------------------------------

    def status(self) -> Status:
        """What this manager says about itself, from what the loop knows now: never a question
        to tailscaled (which may be frozen) while a client waits."""
        td, phase = self.sup.current, self.life.phase
        node = self.node.replace(
            backend_state=self.login.backend_state,
            hostname=self.node.hostname or self.cfg.hostname,
            health=tuple(map(self.log.redact, self.node.health)),  # tailscale may quote a key
        )
        return Status(
            running=True,
            state_dir=str(self.paths.root),
            version=__version__,
            phase=phase,
            connected=node.backend_state == "Running" and phase is Phase.RUNNING,
            node=node,
            login=self._problem(),
            proxies=Proxies(http=self.cfg.proxies["http"], socks5=self.cfg.proxies["socks5"]),
            manager_pid=os.getpid(),
            manager=self.identity,
            tailscaled_pid=td.proc.pid if td else None,
            tailscaled_socket=str(self.paths.tailscaled_socket),
            tailscale=str(self.launch.binaries.tailscale),
            login_attempts=self.login.attempts,
            login_deadline_left=self.login.time_left(),
            restarts=self.sup.restarts,
            last_exit=self.log.redact.optional(self.sup.last_exit),
            tailscaled_log_offset=self.sup.log_offset,
            watch_pid=self.launch.watch_pid,
            uptime=round(self.clock() - self.started, 3),
            max_lifetime_left=self.lifetime.left(),
            forwards=self.forwarder.snapshot() if self.forwarder else (),
            scope=self.cfg.scope,
            tags=self.cfg.tags,
        )

    def _problem(self) -> Problem:
        """The login's last problem or verdict, redacted as the log is: tailscale's words may
        quote the key, the login server's URL with its password, a proxy's."""
        said = self.life.report(self.login.problem)
        r = self.log.redact
        return said.replace(reason=r.optional(said.reason), advice=r.optional(said.advice))

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
        self.stop(Ending(Cause.DOWN, "asked to stop (spacetail down)"))

    def _wait_reply(self, timed_out: bool = False) -> dict[str, object]:
        ok = self.life.phase is Phase.RUNNING
        return reply(self.status(), ok=ok, timed_out=timed_out)

    def _verdict(self, until: Until) -> dict[str, object] | None:
        """The answer to a wait, or None while there is nothing to say yet."""
        phase = self.life.phase
        api = self.sup.current is not None and self.sup.current.api_ready
        stopping = self.life.stopping
        api_wait = until is Until.API
        if not (phase in (Phase.RUNNING, Phase.FAILED) or (api_wait and api) or stopping):
            return None
        status = self.status()
        ending = self.life.ending
        if ending is not None and not status.login.reason:
            why = self.log.redact(f"the manager is stopping: {ending.text}")
            kind = ending.kind.value if ending.kind else None
            problem = status.login.replace(reason=why, kind=kind)
            status = status.replace(login=problem)
        ok = phase is Phase.RUNNING or (api_wait and api and phase is not Phase.FAILED)
        return reply(status, ok=ok, timed_out=False)

    def _answer_waiters(self) -> None:
        self.waiters.answer(self._verdict)

    # --- shutting down --------------------------------------------------------------------

    def stop(self, ending: Ending) -> None:
        if self.life.stop(ending):
            self.stop_at = self.clock()
            self.note(f"stopping: {ending.text}")

    def _logout(self, timeout: float) -> None:
        td = self.sup.current
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
        never_ran = self.life.never_ran
        self.reader.stop()
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
        self.sup.stop(self.note, lambda most: left(reserve=0.1, most=most), short=never_ran)
        self.server.close()
        statedir.remove_run_files(self.paths, keep_node_state=self.cfg.persist_node)
        # When the phase failed, no after hook ran `down --env`: take our dead proxies out of
        # Spacelift's saved environment ourselves, so the next phase does not inherit them.
        for path in clean_saved_envs(self.launch.env, self.cfg.proxies):
            self.note(f"removed our proxy lines from {path}")
        ending = self.life.ending or Ending(Cause.INTERNAL_ERROR, "stopped")
        if not self.down_requests:  # stopped on its own: say why, after it is gone
            r = self.log.redact
            words = last_stop(ending, self._problem(), never_ran, self.sup.log_offset)
            words = words.replace(reason=r(words.reason), advice=r.optional(words.advice))
            write = functools.partial(
                statedir.write_private_json, self.paths.last_stop, words.to_json()
            )
            self._guarded("writing last-stop.json", write)
        self.note(f"manager {os.getpid()} stopped: {ending.text}")
        # down's connections close when this process exits: that is its "all gone" signal.

    def _guarded(self, what: str, step: Callable[[], object]) -> None:
        guarded(self.note, what, step)


def guarded(note: Callable[[str], None], what: str, step: Callable[[], object]) -> None:
    """A step that may fail on a read-only or full workspace: noted, and the next one runs."""
    try:
        step()
    except FileNotFoundError:
        pass
    except OSError as exc:
        note(f"{what} failed ({exc.strerror or exc}); going on")


def serve(launch: Launch) -> int:
    """Run a manager in this process until it stops; holds the manager lock all along."""
    from filelock import Timeout

    from spacetail.config.known_secrets import known_secrets
    from spacetail.log import Redactor

    log = Log(launch.paths.manager_log, Redactor(known_secrets(launch.cfg, launch.env)))
    try:
        lock = statedir.take_lock(launch.paths.manager_lock, timeout=5)
    except (Timeout, OSError) as exc:
        message = f"another manager holds {launch.paths.manager_lock} ({exc})"
        log.error(message)
        signal_ready(launch.ready_fd, f"ERROR {message}")
        return 1
    try:
        return Manager(launch, log).run()
    finally:
        lock.release()
        log.close()
