"""What `up` and `wait` print while they wait, and how they ask the manager to wait one interval
at a time without moving the deadline: a fake clock and a scripted manager, no process."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from spacetail.progress import EVERY, SHORTEST, Progress, login_line, pending_line
from spacetail.state import control, verdict
from spacetail.state.paths import Paths
from spacetail.state.phases import Phase
from spacetail.state.status import Node, Problem, Status, reply
from tests.unit.fakes import Clock

ERROR = 'fetch control key: Get "https://controlplane.tailscale.com/key?v=133": connection refused'


def logging_in(attempts: int = 2, left: float | None = 50.0) -> Status:
    return Status(
        running=True, phase=Phase.LOGIN, node=Node(backend_state="Starting"),
        login=Problem(reason=ERROR), login_attempts=attempts, login_deadline_left=left,
    )  # fmt: skip


def test_the_login_line_says_state_attempt_error_and_time_left() -> None:
    assert login_line(logging_in(), 43.4) == (
        f"waiting for the tailnet (43s left): Starting, login attempt 2; last error: {ERROR}"
    )
    quiet = Status(running=True, phase=Phase.STARTING)
    assert login_line(quiet, 59.6) == "waiting for the tailnet (60s left): tailscaled starting"
    long = logging_in().replace(login=Problem(reason="x" * 1000))
    assert len(login_line(long, 1)) < 400


def test_the_pending_line_names_each_with_its_last_error() -> None:
    last = {"db:5432": "connection refused", "api:443": ""}
    assert pending_line("targets", last, 12.2) == (
        "waiting for targets (12s left): db:5432 (connection refused), api:443"
    )


def test_a_line_every_interval_and_none_when_off() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress(out, clock=clock)
    assert progress.slice(60.0) == EVERY  # the next wait ends when the first line is due
    progress.login(logging_in(), clock() + 60)
    assert out.getvalue() == ""  # not due yet
    clock.advance(EVERY)
    progress.login(logging_in(), clock() + 55)
    assert out.getvalue().startswith("spacetail: waiting for the tailnet (50s left): Starting")
    assert progress.slice(3.0) == 3.0  # less left than an interval: all of it
    clock.advance(EVERY - SHORTEST / 2)
    assert progress.slice(60.0) == SHORTEST  # due a moment ago: never a wait of 0, a spin
    off = Progress(None, clock=clock)
    clock.advance(100)
    off.login(logging_in(), clock() + 60)
    assert off.slice(60.0) == 60.0 and not off.due()


def test_the_time_left_is_the_sooner_of_the_commands_and_the_managers() -> None:
    clock, out = Clock(), io.StringIO()
    progress = Progress(out, clock=clock)
    clock.advance(EVERY)
    progress.login(logging_in(left=9.0), clock() + 30)  # a joined manager gives up first
    assert "(9s left)" in out.getvalue()
    clock.advance(EVERY)
    progress.login(logging_in(left=None), clock() + 30)  # it is not logging in: ours
    assert "(30s left)" in out.getvalue()


class Manager:
    """The manager's side of `wait`, scripted: it holds each request for its timeout (moving the
    fake clock) and answers timed out, until the node runs at RUNNING_AT."""

    def __init__(self, clock: Clock, running_at: float) -> None:
        self.clock = clock
        self.running_at = running_at
        self.timeouts: list[float] = []

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.timeouts.append(message["timeout"])
        assert timeout == message["timeout"] + 5
        until = self.clock() + message["timeout"]
        if self.running_at <= until:
            self.clock.now = max(self.clock(), self.running_at)
            return reply(Status(running=True, phase=Phase.RUNNING), ok=True, timed_out=False)
        self.clock.now = until
        return reply(logging_in(left=100.0), ok=False, timed_out=True)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", tmp_path / "run")


def scripted(monkeypatch: pytest.MonkeyPatch, clock: Clock, running_at: float) -> Manager:
    manager = Manager(clock, running_at)
    monkeypatch.setattr(control.ControlClient, "request", manager.request)
    return manager


def test_the_wait_is_asked_an_interval_at_a_time_with_a_line_each(
    monkeypatch: pytest.MonkeyPatch, paths: Paths
) -> None:
    clock, out = Clock(), io.StringIO()
    start = clock()
    manager = scripted(monkeypatch, clock, running_at=start + 12.0)
    answer, status = verdict.await_verdict(
        paths, "running", start + 60, Progress(out, clock=clock), clock=clock
    )
    assert answer["ok"] is True and status.phase is Phase.RUNNING
    assert manager.timeouts == [EVERY, EVERY, EVERY]
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # at 5 s and 10 s; Running at 12 s
    assert lines[0].startswith("spacetail: waiting for the tailnet (55s left): Starting")


@pytest.mark.parametrize("margin", [0.0, 5.0])
def test_the_last_answer_comes_at_the_one_deadline(
    monkeypatch: pytest.MonkeyPatch, paths: Paths, margin: float
) -> None:
    """A manager this `up` started gets 5 s more to say why it gave up; a joined one none."""
    clock = Clock()
    start = clock()
    manager = scripted(monkeypatch, clock, running_at=start + 1000)
    answer, _status = verdict.await_verdict(
        paths, "running", start + 12.5, Progress(io.StringIO(), clock=clock), margin=margin,
        clock=clock,
    )  # fmt: skip
    assert answer["timed_out"] is True
    assert clock() == start + 12.5 + margin
    assert sum(manager.timeouts) == 12.5 + margin
    assert manager.timeouts[-1] == pytest.approx((12.5 + margin) % EVERY or EVERY)


def test_without_lines_the_wait_is_one_request(
    monkeypatch: pytest.MonkeyPatch, paths: Paths
) -> None:
    clock = Clock()
    manager = scripted(monkeypatch, clock, running_at=clock() + 1000)
    verdict.await_verdict(paths, "running", clock() + 60, Progress(None, clock=clock), clock=clock)
    assert manager.timeouts == [60.0]
