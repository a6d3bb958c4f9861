"""The manager: a small long-lived process that owns tailscaled, logs in, answers the control
socket, and shuts everything down when asked, when the phase's shell exits, or at its deadline.

One thread (the main loop) makes every decision. Other threads only report: the reapers of the
children and the watch-ipn-bus reader put events on a queue and write a byte to a wake-up pipe.
Signal handlers only record the signal (uvicorn's supervisors do the same).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import random
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacetail import __version__, control
from spacetail.children import Child, die_with_parent, run
from spacetail.config import Config
from spacetail.identity import ProcessIdentity
from spacetail.log import Log, open_append, tail
from spacetail.paths import Paths, remove_file
from spacetail.tailscale import (
    STATES,
    Binaries,
    LocalAPI,
    LocalAPIError,
    advice,
    classify,
    clean_env,
    login_error,
    logout_argv,
    secret_payload,
    summarize,
    tailscaled_argv,
    up_argv,
)

LOGOUT_TIMEOUT = 1.0
TERM_GRACE = 0.8
API_START_TIMEOUT = 15.0
MAX_RESTARTS = 5
CLIENT_TIMEOUT = 5.0
HEALTH_POLL = 0.25


@dataclass
class Waiter:
    conn: socket.socket
    deadline: float
    until: str  # "running" or "api"


@dataclass
class Client:
    conn: socket.socket
    deadline: float
    buf: bytes = b""
    allowed: bool = True


@dataclass
class Attempt:
    """One run of `tailscale up`."""

    number: int
    started: float
    proc: Any
    secret: Path | None
    previous_error: str | None
    abort_reason: str | None = None


@dataclass
class Tailscaled:
    proc: Any
    ident: ProcessIdentity | None
    started: float
    api_ready: bool = False
    exited: int | None = None


@dataclass
class ManagerState:
    phase: str = "starting"  # starting, login, backoff, running, failed, stopping
    backend_state: str | None = None
    reason: str | None = None
    restarts: int = 0
    last_exit: str | None = None
    attempts: int = 0
    running_since: float | None = None
    events: list[str] = field(default_factory=list)


class Manager:
    def __init__(
        self,
        cfg: Config,
        paths: Paths,
        binaries: Binaries,
        listener: socket.socket,
        log: Log,
        *,
        env: dict[str, str],
        ready_fd: int | None = None,
        watch_pidfd: int | None = None,
        watch_pid: int | None = None,
        login_deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.paths = paths
        self.binaries = binaries
        self.listener = listener
        self.log = log
        self.env = env
        self.ready_fd = ready_fd
        self.watch_pidfd = watch_pidfd
        self.watch_pid = watch_pid
        self.clock = clock
        self.started = clock()
        self.login_deadline = login_deadline or (self.started + cfg.timeout)
        self.lifetime_deadline = self.started + cfg.max_lifetime if cfg.max_lifetime > 0 else None
        self.state = ManagerState()
        self.api = LocalAPI(paths.tailscaled_socket)
        self.sel = selectors.DefaultSelector()
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.clients: dict[int, Client] = {}
        self.waiters: list[Waiter] = []
        self.down_conns: list[socket.socket] = []
        self.tailscaled: Tailscaled | None = None
        self.attempt: Attempt | None = None
        self.retry_at: float | None = None
        self.restart_at: float | None = None
        self.next_health_poll: float | None = None
        self.stop_reason: str | None = None
        self.logout_on_stop = not cfg.persist_node
        self.exit_code = 0
        self.shutdown_on_failure = True  # a login that never succeeded leaves nothing running
        self._socket_ino = self._inode(paths.control_socket)
        # Without a pidfd (old kernels), the shell is checked by its start time twice a second.
        self._shell_ident = (
            ProcessIdentity.of(watch_pid) if watch_pid and watch_pidfd is None else None
        )
        self._next_shell_check = self.clock() if self._shell_ident else None
        self._signals: list[int] = []
        self._preexec = die_with_parent(os.getpid())
        # tailscaled keeps its log-policy files here rather than in $HOME.
        self._extra_env = {"TS_LOGS_DIR": str(paths.node_state_dir)}
        self._log_offset = 0

    # --- plumbing -------------------------------------------------------------------------

    @staticmethod
    def _inode(path: Path) -> int | None:
        try:
            return os.lstat(path).st_ino
        except OSError:
            return None

    def post(self, *event: Any) -> None:
        """Called from other threads: hand an event to the main loop."""
        self.events.put(event)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_w, b"e")

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)

    def _install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def note(self, message: str) -> None:
        self.log.info(message)
        self.state.events = [*self.state.events[-19:], message]

    # --- the record -----------------------------------------------------------------------

    def write_record(self) -> None:
        me = ProcessIdentity.of(os.getpid())
        td = self.tailscaled.ident if self.tailscaled else None
        record = {
            "version": __version__,
            "manager": me.to_json() if me else None,
            "tailscaled": td.to_json() if td else None,
            "control_socket": str(self.paths.control_socket),
            "tailscaled_socket": str(self.paths.tailscaled_socket),
            "proxies": self.cfg.proxies,
            "hostname": self.cfg.hostname,
            "watch_pid": self.watch_pid,
            "started_at": time.time(),
        }
        write_private_json(self.paths.record, record)

    # --- main loop ------------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        if self.watch_pidfd is not None:
            self.sel.register(self.watch_pidfd, selectors.EVENT_READ, "shell")
        try:
            self.write_record()
        except OSError as exc:  # a full or read-only workspace: say so, start nothing
            self._signal_ready(f"ERROR cannot write {self.paths.record}: {exc.strerror or exc}")
            self.listener.close()
            return 1
        self.note(
            f"manager {os.getpid()} started (spacetail {__version__}); watching "
            + (f"shell pid {self.watch_pid}" if self.watch_pid else "no shell")
            + (
                f", max lifetime {self.cfg.max_lifetime:.0f}s"
                if self.lifetime_deadline
                else ", no max lifetime"
            )
        )
        self._signal_ready(f"READY {os.getpid()}")
        try:
            self.start_tailscaled()
            while self.stop_reason is None:
                self._tick()
        except Exception as exc:  # the manager must never die without cleaning up
            self.log.error(f"internal error: {exc!r}")
            self.stop_reason = f"internal error: {exc}"
            self.exit_code = 1
        self.shutdown()
        return self.exit_code

    def _signal_ready(self, line: str) -> None:
        """One line on the readiness pipe (s6-style), then close it."""
        if self.ready_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, f"{line}\n".encode())
            os.close(self.ready_fd)
        self.ready_fd = None

    def _next_timeout(self) -> float:
        now = self.clock()
        deadlines = [
            d
            for d in (
                self.retry_at,
                self.restart_at,
                self.next_health_poll,
                self.lifetime_deadline,
                self._next_shell_check,
                self.login_deadline
                if self.state.phase in ("starting", "login", "backoff")
                else None,
            )
            if d is not None
        ]
        deadlines += [w.deadline for w in self.waiters]
        deadlines += [c.deadline for c in self.clients.values()]
        if not deadlines:
            return 3600.0
        return max(0.0, min(deadlines) - now)

    def _tick(self) -> None:
        for key, _mask in self.sel.select(self._next_timeout()):
            if key.data == "listen":
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
            elif key.data == "shell":
                self.sel.unregister(key.fileobj)
                self.stop(f"the phase's shell (pid {self.watch_pid}) exited")
            elif isinstance(key.data, Client):
                self._read_client(key.data)
        while self._signals:
            signum = self._signals.pop()
            self.stop(f"received {signal.Signals(signum).name}")
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self._handle_event(event)
        self._timers()

    def _timers(self) -> None:
        now = self.clock()
        if self.lifetime_deadline is not None and now >= self.lifetime_deadline:
            self.lifetime_deadline = None
            self.stop(
                f"reached its max lifetime ({self.cfg.max_lifetime:.0f}s, SPACETAIL_MAX_LIFETIME)"
            )
        if self._next_shell_check is not None and now >= self._next_shell_check:
            self._next_shell_check = now + 0.5
            if self._shell_ident is not None and not self._shell_ident.alive():
                self._next_shell_check = None
                self.stop(f"the phase's shell (pid {self.watch_pid}) exited")
        if self.restart_at is not None and now >= self.restart_at:
            self.restart_at = None
            self.start_tailscaled()
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            self.start_attempt()
        if self.next_health_poll is not None and now >= self.next_health_poll:
            self.next_health_poll = now + HEALTH_POLL if self.attempt else None
            self._poll_health()
        if self.state.phase in ("starting", "login", "backoff") and now >= self.login_deadline:
            self.fail_login(self._timeout_reason())
        for waiter in [w for w in self.waiters if now >= w.deadline]:
            self.waiters.remove(waiter)
            self._reply(waiter.conn, self._wait_reply(timed_out=True))
        for client in [c for c in self.clients.values() if now >= c.deadline]:
            self._drop_client(client)

    # --- tailscaled -----------------------------------------------------------------------

    def start_tailscaled(self) -> None:
        remove_file(self.paths.tailscaled_socket)
        self.paths.node_state_dir.mkdir(mode=0o700, exist_ok=True)
        argv = tailscaled_argv(self.binaries, self.cfg, self.paths)
        with open(open_append(self.paths.tailscaled_log), "ab") as log_file:
            self._log_offset = log_file.tell()
            on_exit = self._exit_poster("tailscaled_exit")
            proc = Child(argv, self._child_env(), self._preexec, on_exit, stdout=log_file)
        self.tailscaled = Tailscaled(proc, ProcessIdentity.of(proc.pid), self.clock())
        self.state.phase = "starting"
        self.note(f"started tailscaled (pid {proc.pid}): {' '.join(argv[1:])}")
        self.write_record()
        self._start_watcher(proc)

    def _start_watcher(self, proc: Any, delay: float = 0.0) -> None:
        deadline = self.clock() + delay + API_START_TIMEOUT
        threading.Thread(target=self._watch_bus, args=(proc, deadline, delay), daemon=True).start()

    def _watch_bus(self, proc: Any, connect_deadline: float, delay: float) -> None:
        """Thread: wait for the LocalAPI, then stream state changes to the main loop."""
        if delay:
            time.sleep(delay)  # a reconnection: never a tight loop against a closing stream
        connected = False
        while True:
            try:
                for note in self.api.watch():
                    if not connected:
                        connected = True
                        self.post("api_ready", proc)
                    if "State" in note and note["State"] is not None:
                        self.post("state", proc, STATES.get(int(note["State"]), str(note["State"])))
                    if note.get("ErrMessage"):
                        self.post("err_message", proc, str(note["ErrMessage"]))
                return
            except LocalAPIError as exc:
                if connected:
                    self.post("bus_closed", proc, str(exc))
                    return
                if self.clock() > connect_deadline or proc.exit_code is not None:
                    self.post("api_timeout", proc, str(exc))
                    return
                # The socket appears ~0.3 s after start; a short poll notices it at once.
                time.sleep(0.01)

    def _child_env(self) -> dict[str, str]:
        """No proxy variables (tailscaled would reach control through its own proxy) and no
        secrets of ours."""
        return clean_env(self.env) | self._extra_env

    def _exit_poster(self, event: str) -> Callable[[Any, int], None]:
        return lambda child, code: self.post(event, child, code)

    def _current(self, proc: Any) -> bool:
        return self.tailscaled is not None and self.tailscaled.proc is proc

    def _handle_event(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "tailscaled_exit":
            self._on_tailscaled_exit(event[1], int(event[2]))
        elif kind == "up_exit":
            self._on_up_exit(event[1], int(event[2]))
        elif kind == "api_ready" and self._current(event[1]):
            assert self.tailscaled is not None
            self.tailscaled.api_ready = True
            self.note("tailscaled's LocalAPI answers")
            self._answer_waiters()
            if self.state.phase == "starting":
                self.state.phase = "login"
                self.start_attempt()
        elif kind == "api_timeout" and self._current(event[1]):
            self._tailscaled_failed(f"tailscaled's LocalAPI did not answer ({event[2]})")
        elif kind == "state" and self._current(event[1]):
            self._on_state(str(event[2]))
        elif kind == "bus_closed" and self._current(event[1]):
            assert self.tailscaled is not None
            if self.tailscaled.exited is None:  # tailscaled lives on: follow it again
                self.note(f"watch-ipn-bus closed ({event[2]}); reconnecting")
                self._start_watcher(event[1], delay=0.1)
        elif kind == "err_message" and self._current(event[1]):
            self.note(f"tailscaled: {event[2]}")

    def _on_state(self, backend: str) -> None:
        previous = self.state.backend_state
        self.state.backend_state = backend
        if backend in ("Starting", "Running"):
            # `tailscale up` read the key before it asked tailscaled to start: the file has
            # served its purpose, so it does not wait for the CLI to exit.
            self._clear_secret()
        if backend != previous:
            self.log.info(f"tailscale state: {backend}")
        if backend == "Running" and self.state.phase in ("login", "backoff", "starting"):
            self.state.phase = "running"
            self.state.running_since = self.clock()
            # From now on a failure is reported by status and wait, not by stopping: the phase
            # may still be using connections, and `up` replaces a failed manager.
            self.shutdown_on_failure = False
            self.retry_at = None
            self.note(f"tailscale is Running as {self.cfg.hostname}")
            self._answer_waiters()
        elif backend != "Running" and self.state.phase == "running":
            self.note(f"tailscale left Running: now {backend}")

    def _on_tailscaled_exit(self, proc: Any, code: int) -> None:
        if not self._current(proc):
            return
        assert self.tailscaled is not None
        self.tailscaled.exited = code
        how = (
            f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        )
        self.state.last_exit = f"tailscaled {how}"
        self._abort_attempt("tailscaled exited")
        if self.stop_reason is not None:
            return
        self.note(
            f"tailscaled {how} unexpectedly; last log lines:\n{tail(self.paths.tailscaled_log)}"
        )
        self.tailscaled = None
        self.state.backend_state = None
        if self.state.phase in ("starting", "login", "backoff") and self.shutdown_on_failure:
            detail = self._tailscaled_said()
            self.fail_login(f"tailscaled {how} before the node was Running" + detail)
            return
        self._tailscaled_failed(f"tailscaled {how}")

    def _tailscaled_said(self) -> str:
        """The line of this run's tailscaled output that says why it exited: a usage error is
        its first line (no timestamp), a fatal log line its last."""
        try:
            with open(self.paths.tailscaled_log, "rb") as f:
                f.seek(self._log_offset)
                lines = [x for x in f.read(65536).decode("utf-8", "replace").splitlines() if x]
        except OSError:
            return ""
        if not lines:
            return ""
        line = lines[0] if not lines[0][:4].isdigit() else lines[-1]
        return f": {self.log.redact(line.strip())}"

    def _tailscaled_failed(self, why: str) -> None:
        """Supervision: restart tailscaled with backoff, a bounded number of times."""
        if self.tailscaled is not None and self.tailscaled.exited is None:
            self._stop_tailscaled()
        self.tailscaled = None
        if self.state.phase in ("starting", "login", "backoff") and self.shutdown_on_failure:
            self.fail_login(why)
            return
        if self.state.restarts >= MAX_RESTARTS:
            self.state.phase = "failed"
            self.state.reason = (
                f"tailscaled could not be kept running ({self.state.restarts} restarts); "
                f"last: {why}"
            )
            self.note(self.state.reason)
            self._answer_waiters()
            return
        self.state.restarts += 1
        delay = min(8.0, 0.5 * 2 ** (self.state.restarts - 1))
        self.state.phase = "starting"
        self.login_deadline = self.clock() + delay + self.cfg.timeout
        self.restart_at = self.clock() + delay
        self.note(
            f"restarting tailscaled in {delay:.1f}s (restart {self.state.restarts}/{MAX_RESTARTS})"
        )

    # --- login ----------------------------------------------------------------------------

    def start_attempt(self) -> None:
        if self.tailscaled is None or not self.tailscaled.api_ready or self.attempt is not None:
            return
        self.state.phase = "login"
        self.state.attempts += 1
        remaining = self.login_deadline - self.clock()
        secret = self._write_secret()
        argv = up_argv(self.binaries, self.cfg, self.paths, secret, min(remaining, 30.0))
        previous = self._health_login_error()
        proc = Child(argv, self._child_env(), self._preexec, self._exit_poster("up_exit"))
        self.attempt = Attempt(self.state.attempts, self.clock(), proc, secret, previous)
        self.next_health_poll = self.clock() + HEALTH_POLL
        self.note(f"login attempt {self.state.attempts}: tailscale up (pid {proc.pid})")

    def _write_secret(self) -> Path | None:
        payload = secret_payload(self.cfg)
        if payload is None:
            return None
        path = self.paths.secrets_dir / f"auth-{os.getpid()}-{self.state.attempts}"
        write_secret_file(path, payload)
        return path

    def _clear_secret(self) -> None:
        if self.attempt and self.attempt.secret:
            remove_file(self.attempt.secret)

    def _health_login_error(self) -> str | None:
        try:
            return login_error(summarize(self.api.status(1.0))["health"])
        except (LocalAPIError, ValueError):
            return None

    def _poll_health(self) -> None:
        """While `tailscale up` waits, read tailscale's own verdict on the login."""
        attempt = self.attempt
        if attempt is None or attempt.abort_reason:
            return
        err = self._health_login_error()
        if not err:
            return
        kind = classify(err)
        age = self.clock() - attempt.started
        if kind == "permanent":
            self._abort_attempt(err)
        elif err != attempt.previous_error or age > 2.0:
            # tailscaled would retry by itself on its own schedule; we retry on ours (with
            # backoff and jitter, inside --timeout) so the attempt is visible and bounded.
            self._abort_attempt(err)

    def _abort_attempt(self, reason: str) -> None:
        attempt = self.attempt
        if attempt is None or attempt.abort_reason:
            return
        attempt.abort_reason = reason
        with contextlib.suppress(Exception):
            attempt.proc.signal(signal.SIGTERM)

    def _on_up_exit(self, proc: Any, code: int) -> None:
        attempt = self.attempt
        if attempt is None or attempt.proc is not proc:
            return
        self.attempt = None
        self.next_health_poll = None
        if attempt.secret:
            remove_file(attempt.secret)
        output = self.log.redact(_output(proc))
        if self.stop_reason is not None or self.state.phase not in ("login", "backoff"):
            return
        if code == 0 and attempt.abort_reason is None:
            # `tailscale up` returns once Running; the bus usually told us already.
            if self.state.backend_state != "Running":
                self._on_state("Running")
            return
        last_lines = output.strip().splitlines()
        text = attempt.abort_reason or (last_lines[-1] if last_lines else f"exit {code}")
        health_err = self._health_login_error()
        if health_err and (attempt.abort_reason is None or "timeout waiting" in text):
            text = health_err
        kind = classify(text)
        self.note(f"login attempt {attempt.number} failed ({kind}): {text}")
        if kind == "permanent":
            self.fail_login(text)
            return
        if text.startswith("timeout waiting"):
            text = self._timeout_reason()  # tailscale's CLI only says it timed out
        self.state.reason = text
        backoff = min(10.0, 2.0 ** (attempt.number - 1))
        delay = random.uniform(0.5 * backoff, backoff)  # jitter: runs started together spread out
        remaining = self.login_deadline - self.clock()
        if remaining < 1.0:
            self.fail_login(text)
            return
        delay = min(delay, remaining - 1.0)  # leave the last attempt at least a second
        self.state.phase = "backoff"
        self.retry_at = self.clock() + delay
        self.note(f"retrying login in {delay:.1f}s")

    def _timeout_reason(self) -> str:
        err = self._health_login_error()
        state = self.state.backend_state or "no state"
        base = f"not Running after {self.cfg.timeout:g}s (state {state})"
        if err:
            return f"{base}; the last login error was: {err}"
        if self.state.reason and not self.state.reason.startswith("not Running"):
            return f"{base}; {self.state.reason}"
        return base

    def fail_login(self, reason: str) -> None:
        self._abort_attempt(reason)
        self.retry_at = None
        self.restart_at = None
        self.state.phase = "failed"
        self.state.reason = reason
        self.note(f"login failed: {reason} ({advice(reason)})")
        self._answer_waiters()
        if self.shutdown_on_failure:
            self.exit_code = 1
            self.stop("the login failed")

    # --- control socket -------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.log.error("too many open files: refusing a control client")
                return
            conn.setblocking(False)
            # Another user's client is read like any other, then refused: answering before its
            # request arrived would reset the connection and lose the refusal.
            client = Client(conn, self.clock() + CLIENT_TIMEOUT, allowed=control.peer_allowed(conn))
            self.clients[conn.fileno()] = client
            self.sel.register(conn, selectors.EVENT_READ, client)

    def _drop_client(self, client: Client, close: bool = True) -> None:
        self.clients.pop(client.conn.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(client.conn)
        if close:
            client.conn.close()

    def _read_client(self, client: Client) -> None:
        try:
            chunk = client.conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop_client(client)
            return
        client.buf += chunk
        if b"\n" not in client.buf:
            if len(client.buf) > control.MAX_MESSAGE:
                self._reply(client.conn, {"ok": False, "error": "message too long"})
                self._drop_client(client, close=False)
            return
        line = client.buf.split(b"\n", 1)[0]
        self._drop_client(client, close=False)
        if not client.allowed:
            self._reply(client.conn, {"ok": False, "error": "permission denied"})
            self.log.info("refused a control client of another user")
            return
        try:
            request = control.decode(line)
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply(client.conn, {"ok": False, "error": f"bad request: {exc}"})
            return
        self._handle_request(client.conn, request)

    def _reply(self, conn: socket.socket, message: dict[str, Any], close: bool = True) -> None:
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            conn.send(control.encode(message))
        if close:
            conn.close()

    def _handle_request(self, conn: socket.socket, request: dict[str, Any]) -> None:
        cmd = request["cmd"]
        if cmd == "status":
            self._reply(conn, self.status())
        elif cmd == "wait":
            until = "api" if request.get("until") == "api" else "running"
            timeout = request.get("timeout", 60)
            if not isinstance(timeout, (int, float)) or not 0 <= timeout <= 86400:
                self._reply(conn, {"ok": False, "error": "bad timeout"})
                return
            waiter = Waiter(conn, self.clock() + float(timeout), until)
            if not self._try_answer(waiter):
                self.waiters.append(waiter)
        elif cmd == "down":
            logout = request.get("logout")
            # In workspace node-state mode the node outlives the phase unless asked otherwise.
            self.logout_on_stop = (not self.cfg.persist_node) if logout is None else bool(logout)
            self._reply(conn, {"ok": True, "stopping": True, "pid": os.getpid()}, close=False)
            self.down_conns.append(conn)
            self.stop("asked to stop (spacetail down)")
        else:
            self._reply(conn, {"ok": False, "error": f"unknown command {cmd!r}"})

    def _wait_reply(self, timed_out: bool = False) -> dict[str, Any]:
        reply = self.status()
        reply["ok"] = self.state.phase == "running"
        if timed_out:
            reply["timed_out"] = True
        return reply

    def _try_answer(self, waiter: Waiter) -> bool:
        phase = self.state.phase
        api = self.tailscaled is not None and self.tailscaled.api_ready
        stopping = phase == "stopping" or self.stop_reason is not None
        if phase == "running" or (waiter.until == "api" and api) or phase == "failed" or stopping:
            reply = self._wait_reply()
            if stopping and not reply.get("reason"):
                reply["reason"] = f"the manager is stopping: {self.stop_reason}"
            reply["ok"] = phase == "running" or (
                waiter.until == "api" and api and phase != "failed"
            )
            self._reply(waiter.conn, reply)
            return True
        return False

    def _answer_waiters(self) -> None:
        for waiter in list(self.waiters):
            if self._try_answer(waiter):
                self.waiters.remove(waiter)

    def status(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"backend_state": self.state.backend_state}
        if self.tailscaled is not None and self.tailscaled.api_ready:
            try:
                summary = summarize(self.api.status(1.0))
            except (LocalAPIError, ValueError):
                pass
        return {
            "ok": True,
            "running": True,
            "manager_pid": os.getpid(),
            "phase": self.state.phase,
            "backend_state": summary.get("backend_state"),
            "tailscale_ips": summary.get("tailscale_ips", []),
            "hostname": summary.get("hostname") or self.cfg.hostname,
            "dns_name": summary.get("dns_name"),
            "health": summary.get("health", []),
            "proxies": self.cfg.proxies,
            "tailscaled_pid": self.tailscaled.proc.pid if self.tailscaled else None,
            "tailscaled_socket": str(self.paths.tailscaled_socket),
            "tailscale": str(self.binaries.tailscale),
            "restarts": self.state.restarts,
            "last_exit": self.state.last_exit,
            "login_attempts": self.state.attempts,
            "reason": self.state.reason,
            "watch_pid": self.watch_pid,
            "uptime": round(self.clock() - self.started, 3),
            "max_lifetime_left": (
                round(self.lifetime_deadline - self.clock(), 1) if self.lifetime_deadline else None
            ),
            "state_dir": str(self.paths.root),
            "version": __version__,
        }

    # --- shutting down --------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.note(f"stopping: {reason}")

    def _stop_tailscaled(self) -> None:
        td = self.tailscaled
        if td is None or td.exited is not None:
            return
        proc = td.proc
        with contextlib.suppress(Exception):
            proc.signal(signal.SIGTERM)
        if not proc.wait(TERM_GRACE):
            self.note(f"tailscaled did not stop within {TERM_GRACE}s of SIGTERM: SIGKILL")
            proc.signal(signal.SIGKILL)
            proc.wait(5.0)

    def _logout(self) -> None:
        td = self.tailscaled
        if td is None or td.exited is not None or not td.api_ready:
            return
        try:
            code, output = run(
                logout_argv(self.binaries, self.paths), self._child_env(), self._preexec,
                LOGOUT_TIMEOUT,
            )  # fmt: skip
        except Exception as exc:
            self.note(f"logout failed ({exc}); stopping anyway")
            return
        if code is None:
            self.note(f"logout did not finish within {LOGOUT_TIMEOUT}s; stopping anyway")
        elif code != 0:
            self.note(f"logout failed ({self.log.redact(output.strip())}); stopping anyway")
        else:
            self.note("logged out: the node is removed from the tailnet")

    def shutdown(self) -> None:
        # A node that never logged in has nothing to log out (and the control server may be
        # the very thing that is unreachable).
        never_ran = self.state.phase == "failed" and self.state.running_since is None
        self.state.phase = "stopping"
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.listener)
        if self._inode(self.paths.control_socket) == self._socket_ino:
            # New clients get "no manager" at once rather than a dying one.
            remove_file(self.paths.control_socket)
        self._answer_waiters()
        if self.attempt is not None:
            self._abort_attempt("stopping")
            self.attempt.proc.wait(1.0)
            self._clear_secret()
        if self.logout_on_stop and not never_ran:
            self._logout()
        self._stop_tailscaled()
        for client in list(self.clients.values()):
            self._drop_client(client)
        self.listener.close()
        for path in (self.paths.tailscaled_socket, self.paths.record):
            remove_file(path)
        clear_secrets(self.paths)
        self._clean_saved_env()
        self.note(f"manager {os.getpid()} stopped: {self.stop_reason}")
        # down's connections close when this process exits: that is its "all gone" signal.

    def _clean_saved_env(self) -> None:
        """When the phase failed, no after hook ran `down --env`: take our dead proxies out of
        Spacelift's saved environment ourselves, so the next phase does not inherit them."""
        from spacetail.proxyenv import clean_saved_env, saved_env_files

        for path in saved_env_files(self.env):
            with contextlib.suppress(OSError):
                if clean_saved_env(path, self.cfg.proxies):
                    self.note(f"removed our proxy lines from {path}")


def _output(proc: Any) -> str:
    return bytes(proc.output).decode("utf-8", "replace")


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically, 0600, never through a symlink planted at the temporary name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.rename(tmp, path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_secret_file(path: Path, payload: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(payload)


def clear_secrets(paths: Paths) -> list[str]:
    """Remove secret files a killed manager may have left; returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(paths.secrets_dir):
            if entry.name.startswith("auth-") and remove_file(Path(entry.path)):
                removed.append(entry.name)
    return removed


def serve(
    cfg: Config,
    paths: Paths,
    binaries: Binaries,
    listener: socket.socket,
    *,
    env: dict[str, str],
    ready_fd: int | None,
    watch_pidfd: int | None = None,
    watch_pid: int | None = None,
) -> int:
    """Run a manager in this process until it stops; holds the manager lock all along."""
    from filelock import FileLock, Timeout

    log = Log(paths.manager_log)
    if os.path.islink(paths.manager_lock):
        os.unlink(paths.manager_lock)  # planted: never followed
    # Created here, in the process that holds it: filelock refuses locks inherited over fork.
    lock = FileLock(str(paths.manager_lock), timeout=5, mode=0o600)
    try:
        lock.acquire()
    except (Timeout, OSError) as exc:
        message = f"another manager holds {paths.manager_lock} ({exc})"
        log.error(message)
        if ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, f"ERROR {message}\n".encode())
        return 1
    try:
        manager = Manager(
            cfg,
            paths,
            binaries,
            listener,
            log,
            env=env,
            ready_fd=ready_fd,
            watch_pidfd=watch_pidfd,
            watch_pid=watch_pid,
        )
        return manager.run()
    finally:
        lock.release()
        log.close()
