"""The manager's decisions, driven by typed events, a fake clock and fake children: supervision of
tailscaled in each phase, signals in each phase, and what the shutdown does. No process starts;
the control socket is a real one bound in a temporary folder."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacetail.log import Log
from spacetail.manager import events as ev
from spacetail.manager.launch import Launch
from spacetail.manager.lifetime import Cause, Ending
from spacetail.manager.service import Manager
from spacetail.manager.supervisor import MAX_RESTARTS
from spacetail.state.control import bind_listener
from spacetail.state.phases import Phase
from spacetail.tailnet.failures import FailureClass, diagnose
from tests.unit.fakes import Clock, FakeAPI, FakeChild, Reads, Spawner, phase, settings


class Bed:
    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.clock = Clock()
        self.api = FakeAPI()
        self.spawn = Spawner()
        self.watched: list[tuple[FakeChild, float]] = []
        self.reads = Reads()
        cfg, paths, binaries = settings(tmp_path, **env)
        listener = bind_listener(paths.control_socket)
        self.log = Log(paths.manager_log)
        launch = Launch(cfg=cfg, paths=paths, binaries=binaries, listener=listener,
                        env={"PATH": "/usr/bin"})  # fmt: skip
        self.m = Manager(
            launch, self.log, clock=self.clock, spawn=self.spawn, api=self.api, reader=self.reads,
            watch=lambda proc, delay: self.watched.append((proc, delay)),  # type: ignore[arg-type]
        )  # fmt: skip
        self.m.start_tailscaled()

    @property
    def tailscaled(self) -> FakeChild:
        assert self.m.sup.current is not None
        return self.m.sup.current.proc  # type: ignore[return-value]

    def running(self) -> None:
        td = self.tailscaled
        self.m.handle(ev.ApiReady(td))
        self.m.handle(ev.StateChanged(td, "Running"))
        attempt = self.spawn.named("up")[-1]
        attempt.exit(0)
        self.m.handle(ev.ChildExited(attempt, 0))
        assert self.m.login.phase is Phase.RUNNING

    def read(self) -> None:
        """The status reader's next read, as the reader thread posts it."""
        self.m.handle(ev.NodeRead(self.tailscaled, self.api.node(), self.clock()))

    def reason(self) -> str:
        return self.m.status().login.reason or ""

    def kill_tailscaled(self) -> FakeChild:
        td = self.tailscaled
        td.exit(-signal.SIGKILL)
        self.m.handle(ev.ChildExited(td, -signal.SIGKILL))
        return td

    def signal(self, signum: int) -> None:
        """As the real handler does: record, then wake the loop through its pipe."""
        self.m.on_signal(signum, None)
        os.write(self.m.wake_w, b"s")
        self.m.tick()

    def close(self) -> None:
        self.m.server.close()
        self.m.close()
        self.log.close()


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    b = Bed(tmp_path)
    yield b
    b.close()


def test_tailscaled_dying_while_starting_fails_and_stops(bed: Bed) -> None:
    assert phase(bed.m.login) is Phase.STARTING
    bed.kill_tailscaled()
    assert phase(bed.m.login) is Phase.STOPPING  # failed, and stopping at once
    assert bed.m.life.verdict is not None
    assert bed.m.life.verdict.kind is FailureClass.TAILSCALED_EXITED
    assert bed.m.life.ending == Ending(Cause.LOGIN_FAILED, "the login failed")
    assert bed.m.exit_code == 1
    assert "killed by SIGKILL before the node was Running" in bed.reason()
    assert bed.m.sup.restart_at is None  # a first start that fails is not retried


def test_tailscaled_dying_during_login_fails_and_stops(bed: Bed) -> None:
    bed.m.handle(ev.ApiReady(bed.tailscaled))
    attempt = bed.spawn.named("up")[0]
    bed.kill_tailscaled()
    assert signal.SIGTERM in attempt.signals  # the attempt against it is ended
    assert bed.m.life.never_ran and bed.m.exit_code == 1


def test_tailscaled_dying_while_running_is_restarted_with_backoff(bed: Bed) -> None:
    bed.running()
    delays = []
    for restart in range(1, MAX_RESTARTS + 1):
        bed.kill_tailscaled()
        assert bed.m.sup.restart_at is not None
        delays.append(bed.m.sup.restart_at - bed.clock())
        assert phase(bed.m.login) is Phase.STARTING and bed.m.life.ending is None
        bed.m.timers(bed.clock.advance(delays[-1] - 0.01))
        assert len(bed.spawn.named("--tun=userspace-networking")) == restart  # not yet
        bed.m.timers(bed.clock.advance(0.01))
        assert len(bed.spawn.named("--tun=userspace-networking")) == restart + 1
        bed.m.handle(ev.ApiReady(bed.tailscaled))
        assert phase(bed.m.login) is Phase.LOGIN  # logs in again on its own
        bed.m.handle(ev.StateChanged(bed.tailscaled, "Running"))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    bed.kill_tailscaled()
    assert phase(bed.m.login) is Phase.FAILED
    assert "could not be kept running (5 restarts)" in bed.reason()
    assert bed.m.life.ending is None  # reported by status; `up` replaces a failed manager
    assert bed.m.status().restarts == MAX_RESTARTS
    assert bed.m.status().login.advice is not None  # the verdict says what to do


def test_news_of_a_replaced_tailscaled_is_ignored(bed: Bed) -> None:
    bed.running()
    old = bed.kill_tailscaled()
    bed.m.timers(bed.clock.advance(0.5))
    bed.m.handle(ev.StateChanged(old, "NeedsLogin"))
    bed.m.handle(ev.ApiTimeout(old, "gone"))
    assert phase(bed.m.login) is Phase.STARTING and bed.m.sup.restarts == 1


@pytest.mark.parametrize("where", ["starting", "login", "backoff", "running"])
def test_sigterm_in_each_phase_stops_cleanly(bed: Bed, where: str) -> None:
    attempt: FakeChild | None = None
    if where != "starting":
        bed.m.handle(ev.ApiReady(bed.tailscaled))
        attempt = bed.spawn.named("up")[0]
    if where == "backoff":
        bed.api.login_error("fetch control key: connection refused")
        assert attempt is not None
        attempt.exit(1, "timeout waiting for Tailscale service to enter a Running state")
        bed.m.handle(ev.ChildExited(attempt, 1))
        bed.read()
        assert phase(bed.m.login) is Phase.BACKOFF
    if where == "running":
        bed.m.handle(ev.StateChanged(bed.tailscaled, "Running"))
    bed.signal(signal.SIGTERM)
    assert bed.m.life.ending == Ending(Cause.SIGNAL, "received SIGTERM")
    td = bed.tailscaled
    bed.m.shutdown()
    assert bed.m.exit_code == 0
    assert phase(bed.m.login) is Phase.STOPPING
    assert signal.SIGTERM in td.signals
    logouts = bed.spawn.named("logout")
    # Logged out once the LocalAPI answered (a node may exist); never before tailscaled is up.
    assert len(logouts) == (0 if where == "starting" else 1)
    if attempt is not None and where == "login":
        assert signal.SIGTERM in attempt.signals
    assert not bed.m.launch.paths.record.exists()
    assert not bed.m.launch.paths.control_socket.exists()


def test_no_logout_after_a_login_that_never_succeeded(bed: Bed) -> None:
    bed.m.handle(ev.ApiReady(bed.tailscaled))
    bed.m.login.fail(diagnose("invalid key: API key does not exist"))
    assert bed.m.life.ending is not None and bed.m.life.ending.cause is Cause.LOGIN_FAILED
    bed.m.shutdown()
    assert bed.spawn.named("logout") == []


def test_shutdown_removes_key_files_a_killed_attempt_left(bed: Bed) -> None:
    bed.m.handle(ev.ApiReady(bed.tailscaled))
    assert bed.m.login.attempt is not None and bed.m.login.attempt.secret is not None
    secret = bed.m.login.attempt.secret
    bed.spawn.named("up")[0].exits_on_term = False  # an attempt that ignores SIGTERM
    bed.m.stop(Ending(Cause.DOWN, "asked to stop (spacetail down)"))
    bed.m.shutdown()
    assert not secret.exists()


def test_tailscaled_gets_no_proxy_variable_and_no_secret(tmp_path: Path) -> None:
    cfg, paths, binaries = settings(tmp_path)
    env = {"PATH": "/usr/bin", "HTTPS_PROXY": "http://x:1", "no_proxy": "a", "ALL_PROXY": "s",
           "TS_AUTHKEY": "tskey-auth-x", "SPACELIFT_OIDC_TOKEN": "eyJ", "HOME": "/h"}  # fmt: skip
    listener = socket.socket(socket.AF_UNIX)
    log = Log(None)
    m = Manager(Launch(cfg=cfg, paths=paths, binaries=binaries, listener=listener, env=env), log)
    try:
        from spacetail.tailnet.tailscale import clean_env

        child_env = clean_env(m.launch.env)
        assert child_env == {"PATH": "/usr/bin", "HOME": "/h"}
    finally:
        m.server.close()
        m.close()


def test_a_wait_is_answered_when_the_node_runs(bed: Bed, tmp_path: Path) -> None:
    from spacetail.state.control import Request

    client, server_end = socket.socketpair()
    try:
        bed.m._on_wait(Request(server_end, {"cmd": "wait", "until": "running", "timeout": 30}))
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(100)  # held while tailscale logs in
        bed.running()
        client.setblocking(True)
        client.settimeout(5)
        reply = client.recv(65536)
        assert b'"ok":true' in reply and b'"phase":"running"' in reply
    finally:
        client.close()
        server_end.close()


def test_the_exit_explains_a_tailscaled_that_refused_its_command_line(tmp_path: Path) -> None:
    """The watcher may report "no LocalAPI" before the reaper reports the exit: the exit,
    with tailscaled's own words, is what the user must read (and its exit code 2)."""
    bed = Bed(tmp_path, TS_TAILSCALED_EXTRA_ARGS="--no-such-flag")
    try:
        _refused(bed)
    finally:
        bed.close()


def _refused(bed: Bed) -> None:
    td = bed.tailscaled
    bed.m.launch.paths.tailscaled_log.write_text(
        "flag provided but not defined: -no-such-flag\nUsage of tailscaled:\n"
    )
    td.exit(2)
    bed.m.handle(ev.ApiTimeout(td, "connection refused"))
    assert phase(bed.m.login) is Phase.STARTING  # not judged on the watcher's word
    bed.m.handle(ev.ChildExited(td, 2))
    verdict = bed.m.status().login
    assert verdict.exit_code == 2
    assert verdict.setting == "TS_TAILSCALED_EXTRA_ARGS"
    assert bed.reason().startswith("flag provided but not defined: -no-such-flag")


def test_the_status_says_how_long_the_login_has_left(bed: Bed) -> None:
    """`up` and `wait` print it while they wait; null once the login is over."""
    timeout = bed.m.cfg.timeout
    assert bed.m.status().login_deadline_left == timeout
    bed.m.handle(ev.ApiReady(bed.tailscaled))
    bed.clock.advance(12.5)
    assert bed.m.status().login_deadline_left == timeout - 12.5
    assert bed.m.status().to_json()["login_deadline_left"] == timeout - 12.5
    bed.running()
    assert bed.m.status().login_deadline_left is None


def test_a_frozen_localapi_is_tailscaleds_trouble_not_the_control_servers(bed: Bed) -> None:
    """The manager's own words are never read again as tailscale's: "did not answer (timed
    out)" is a local daemon that froze, with advice about it, not about TS_LOGIN_SERVER."""
    bed.m.handle(ev.ApiTimeout(bed.tailscaled, "timed out"))
    login = bed.m.status().login
    assert login.kind == FailureClass.TAILSCALED_UNRESPONSIVE.value
    assert login.reason == "tailscaled's LocalAPI did not answer (timed out)"
    assert "TS_LOGIN_SERVER" not in (login.advice or "") and "LocalAPI" in (login.advice or "")
    assert bed.m.status().to_json()["kind"] == "tailscaled-unresponsive"


def test_a_tailscaled_that_cannot_be_kept_running_says_so_by_its_kind(bed: Bed) -> None:
    bed.running()
    for _ in range(MAX_RESTARTS):
        bed.kill_tailscaled()
        bed.m.timers(bed.clock.advance(10))
        bed.m.handle(ev.ApiReady(bed.tailscaled))
        bed.m.handle(ev.StateChanged(bed.tailscaled, "Running"))
    bed.kill_tailscaled()
    assert bed.m.status().login.kind == FailureClass.TAILSCALED_CRASH_LOOP.value


def test_last_stop_names_its_kind(bed: Bed) -> None:
    """What last-stop.json says is named: the ending's kind, or the verdict's that ended it."""
    from spacetail.state.report import last_stop
    from spacetail.state.status import Problem

    lifetime = Ending(Cause.MAX_LIFETIME, "reached its max lifetime (60s)")
    words = last_stop(lifetime, Problem(), never_ran=False, log_offset=0)
    assert words.kind == "lifetime" and "SPACETAIL_MAX_LIFETIME" in (words.advice or "")
    shell = Ending(Cause.SHELL_EXITED, "the phase's shell (pid 7) exited")
    shell_stop = last_stop(shell, Problem(), never_ran=False, log_offset=0)
    assert shell_stop.kind == FailureClass.SHELL_EXIT.value
    refused = Problem(reason="invalid key", kind="key-rejected", advice="new key")
    failed = last_stop(Ending(Cause.LOGIN_FAILED, "the login failed"), refused, True, 0)
    assert (failed.kind, failed.advice) == ("key-rejected", "new key")
    assert failed.to_json()["kind"] == "key-rejected"
