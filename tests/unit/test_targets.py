"""Waiting for targets to answer, with a scripted dialer and a fake clock: retried until each
connects, within the one deadline, and a failure that names each silent target and its last
error. (Real servers through the fake tailnet: tests/integration/test_wait_for.py.)"""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest

from spacetail.config import hostport
from spacetail.errors import OperationFailed
from spacetail.progress import Progress
from spacetail.state.status import Status
from spacetail.tailnet.ready import AT_ONCE, PAUSE, TRY_AT_MOST, Try, each_answers, wait_for_targets
from spacetail.tailnet.socks5 import Dialer, DialError
from tests.unit.fakes import Clock

REFUSED = "tailscale could not connect (no such host, refused, or unreachable)"


class ScriptedDialer(Dialer):
    """Each target answers from its time in ANSWERS_AT on (None: never); a dial that fails
    takes TAKES seconds of the fake clock, and never more than its timeout."""

    def __init__(self, clock: Clock, answers_at: dict[str, float | None], takes: float = 0.01):
        super().__init__(("127.0.0.1", 1))
        self.clock = clock
        self.answers_at = answers_at
        self.takes = takes
        self.dials: list[tuple[str, float]] = []
        self.sockets: list[socket.socket] = []

    def dial(self, host: str, port: int) -> socket.socket:
        name = hostport.format(host, port)
        self.dials.append((name, self.timeout))
        at = self.answers_at[name]
        if at is not None and self.clock() >= at:
            a, b = socket.socketpair()
            b.close()
            self.sockets.append(a)
            return a
        self.clock.advance(min(self.takes, self.timeout))
        raise DialError(f"cannot reach {name}: {REFUSED}", 1, REFUSED)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def run(clock: Clock, dialer: ScriptedDialer, targets: list[str], timeout: float,
        out: io.StringIO | None = None) -> list[float]:  # fmt: skip
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    parsed = tuple((t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in targets)
    wait_for_targets(
        Status(), parsed, clock() + timeout, Progress(out, clock=clock), dialer=dialer,
        clock=clock, sleep=sleep, start=lambda work: work(),  # each try at once, in this thread
    )  # fmt: skip
    return slept


def test_targets_that_answer_at_once_need_one_dial_each(clock: Clock) -> None:
    dialer = ScriptedDialer(clock, {"db:5432": 0.0, "api:443": 0.0})
    assert run(clock, dialer, ["db:5432", "api:443"], 60) == []
    assert [name for name, _ in dialer.dials] == ["db:5432", "api:443"]
    assert all(s.fileno() == -1 for s in dialer.sockets)  # each connection closed again


def test_a_target_that_comes_up_later_is_asked_again_until_it_answers(clock: Clock) -> None:
    start = clock()
    dialer = ScriptedDialer(clock, {"db:5432": 0.0, "late:80": start + 7.0})
    out = io.StringIO()
    slept = run(clock, dialer, ["db:5432", "late:80"], 60, out)
    # a pause between tries (cut short for the line due at 5 s), never a spin
    assert all(0.05 < s <= PAUSE + 1e-9 for s in slept) and len(slept) <= 7.0 / PAUSE + 2
    assert start + 7.0 <= clock() < start + 7.0 + PAUSE + 0.1
    assert [n for n, _ in dialer.dials].count("db:5432") == 1  # an answered one is done
    assert out.getvalue().splitlines()[0] == (
        f"spacetail: waiting for targets (55s left): late:80 ({REFUSED})"
    )


def test_silent_targets_fail_at_the_deadline_named_with_their_last_error(clock: Clock) -> None:
    start = clock()
    dialer = ScriptedDialer(clock, {"db:5432": 0.0, "gone:1": None, "[fd7a::9]:22": None})
    with pytest.raises(OperationFailed) as failed:
        run(clock, dialer, ["db:5432", "gone:1", "fd7a::9:22"], 4.0)
    assert clock() == pytest.approx(start + 4.0, abs=0.02)  # the deadline, not a try beyond it
    message = str(failed.value)
    first = message.splitlines()[0]
    assert first == (
        f"no TCP connection through the tailnet in time to gone:1: {REFUSED}; "
        f"[fd7a::9]:22: {REFUSED}"
    )
    assert "db:5432" not in message
    assert "spacetail doctor --target" in message and "--timeout" in message


def test_a_dial_never_outlasts_the_deadline(clock: Clock) -> None:
    """A target that never completes its handshake takes each dial's whole timeout."""
    start = clock()
    dialer = ScriptedDialer(clock, {"black:5432": None}, takes=1000.0)
    with pytest.raises(OperationFailed):
        run(clock, dialer, ["black:5432"], 7.0)
    timeouts = [t for _, t in dialer.dials]
    assert max(timeouts) == TRY_AT_MOST
    assert clock() == pytest.approx(start + 7.0)


class Stamped(io.StringIO):
    """Progress lines, each with when it was written."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def write(self, text: str) -> int:
        if text.strip():
            self.at.append(time.monotonic())
        return super().write(text)


class Tries:
    """Real tries in real threads: silent ones take all the time they are given; counts how
    many are in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flying = self.most = 0
        self.answered_at: dict[str, float] = {}
        self.asked: dict[str, int] = {}

    def _count(self, name: str, step: int) -> None:
        with self.lock:
            self.flying += step
            self.most = max(self.most, self.flying)
            self.asked[name] = self.asked.get(name, 0) + (step > 0)

    def silent(self, name: str) -> Try:
        def once(left: float) -> str | None:
            self._count(name, 1)
            threading.Event().wait(min(TRY_AT_MOST, left))
            self._count(name, -1)
            return "timed out"

        return once

    def third_time(self, name: str) -> Try:
        def once(_left: float) -> str | None:
            self._count(name, 1)
            self._count(name, -1)
            if self.asked[name] < 3:
                return "refused"
            self.answered_at[name] = time.monotonic()
            return None

        return once


def test_silent_targets_never_hold_up_another_nor_the_line() -> None:
    """Issue 28 item 3: each target was dialled in turn for up to 3 s, and the line every 5 s
    waited for the round (4 silent targets: the first line at 12.7 s; 10: none at all). Ten
    silent tries beside one that answers at its third: that one is done after two pauses, and
    a line comes every interval."""
    tries = Tries()
    asked = {f"silent{i}:1": tries.silent(f"silent{i}:1") for i in range(10)}
    asked["late:1"] = tries.third_time("late:1")
    out = Stamped()
    begin = time.monotonic()
    missing = each_answers("targets", asked, begin + 1.5, Progress(out, every=0.25))
    took = time.monotonic() - begin
    assert missing == dict.fromkeys([f"silent{i}:1" for i in range(10)], "timed out")
    assert tries.answered_at["late:1"] - begin < 2 * PAUSE + 0.3
    assert tries.most == 11 and tries.flying == 0  # side by side, and every one ended
    assert 1.5 <= took < 1.5 + 0.3
    assert out.at and out.at[0] - begin < 0.25 + 0.15, out.getvalue()
    gaps = [b - a for a, b in zip([begin, *out.at], out.at, strict=False)]
    assert max(gaps) < 0.25 + 0.15 and len(out.at) >= 4, out.getvalue()
    assert out.getvalue().splitlines()[0].startswith("spacetail: waiting for targets (1s left): ")


def test_at_most_at_once_are_in_flight() -> None:
    tries = Tries()
    asked = {f"silent{i}:1": tries.silent(f"silent{i}:1") for i in range(AT_ONCE + 4)}
    missing = each_answers("targets", asked, time.monotonic() + 0.3, Progress(None))
    assert tries.most == AT_ONCE
    assert list(missing.values()) == ["timed out"] * AT_ONCE + ["no answer yet"] * 4
