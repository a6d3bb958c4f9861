"""The login state machine's decisions, driven by scripted events and a fake clock, in
milliseconds and without processes: when it retries, when it gives up, what happens to the key."""

from __future__ import annotations

import signal
import stat
from pathlib import Path

import pytest

from spacetail.manager.lifecycle import Lifecycle
from spacetail.manager.lifetime import Cause, Ending
from spacetail.manager.login import FRESH_READ_WAIT, Login
from spacetail.state.phases import IllegalTransition, Phase
from spacetail.tailnet.failures import Failure, FailureClass
from tests.unit.fakes import KEY, Clock, FakeAPI, FakeChild, Spawner, phase, settings

UNREACHABLE = (
    'fetch control key: Get "https://controlplane.tailscale.com/key?v=133": connection refused'
)
EXPIRED = "invalid key: API key kUnit not valid"
TIMEOUT = (
    "timeout waiting for Tailscale service to enter a Running state; "
    'check health with "tailscale status"'
)


STOP = Ending(Cause.DOWN, "asked to stop (spacetail down)")


class Outcome:
    """The manager's side, as far as the login sees it: the lifecycle moves as it would."""

    def __init__(self, life: Lifecycle) -> None:
        self.life = life
        self.notes: list[str] = []
        self.succeeded_count = 0
        self.failures: list[str] = []
        self.kinds: list[FailureClass] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def succeeded(self) -> None:
        self.succeeded_count += 1
        self.life.running()

    def failed(self, failure: Failure) -> None:
        self.failures.append(failure.line)
        self.kinds.append(failure.kind)
        self.life.fail(failure)


class Bed:
    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.clock = Clock()
        self.api = FakeAPI()
        self.spawn = Spawner()
        self.life = Lifecycle()
        self.outcome = Outcome(self.life)
        cfg, self.paths, binaries = settings(tmp_path, **env)
        self.refreshes = 0
        self.login = Login(
            cfg, self.paths, binaries, spawn=self.spawn, outcome=self.outcome, life=self.life,
            clock=self.clock, refresh=self.asked, jitter=lambda low, high: high,
        )  # fmt: skip

    def report(self) -> str | None:
        return self.life.report(self.login.problem).reason

    def asked(self) -> None:
        self.refreshes += 1

    def read(self) -> None:
        """The status reader's next read (as the manager hands it over)."""
        self.login.on_node(self.api.node(), self.clock())

    @property
    def attempt(self) -> FakeChild:
        assert self.login.attempt is not None
        return self.login.attempt.proc  # type: ignore[return-value]

    def end_attempt(self, code: int, output: str = "") -> None:
        """The attempt exits; a failed one is judged once a fresh read arrives."""
        child = self.attempt
        child.exit(code, output)
        asked = self.refreshes
        assert self.login.on_up_exit(child, code)
        if self.refreshes > asked:
            self.read()


@pytest.fixture
def bed(tmp_path: Path) -> Bed:
    return Bed(tmp_path)


def test_waits_for_the_localapi_before_the_first_attempt(bed: Bed) -> None:
    assert phase(bed.login) is Phase.STARTING
    bed.login.tick(bed.clock.advance(5))
    assert bed.spawn.children == []
    bed.login.api_ready()
    assert phase(bed.login) is Phase.LOGIN
    assert len(bed.spawn.named("up")) == 1


def test_flaky_login_is_retried_with_backoff_then_runs(bed: Bed) -> None:
    bed.login.api_ready()
    bed.api.login_error(UNREACHABLE)
    bed.end_attempt(1, TIMEOUT)
    assert phase(bed.login) is Phase.BACKOFF
    assert bed.login.retry_at == bed.clock() + 1.0  # 2**0, jitter at its top
    bed.login.tick(bed.clock.advance(0.99))
    assert len(bed.spawn.named("up")) == 1  # not before the backoff is over
    bed.login.tick(bed.clock.advance(0.01))
    assert len(bed.spawn.named("up")) == 2 and phase(bed.login) is Phase.LOGIN
    bed.end_attempt(1, TIMEOUT)
    assert bed.login.retry_at == bed.clock() + 2.0  # the backoff doubles
    bed.login.tick(bed.clock.advance(2.0))
    bed.login.on_state("Running")
    assert phase(bed.login) is Phase.RUNNING and bed.outcome.succeeded_count == 1
    bed.end_attempt(0)
    assert phase(bed.login) is Phase.RUNNING and bed.outcome.failures == []
    assert bed.login.attempts == 3


def test_expired_key_fails_at_once_without_retry(bed: Bed) -> None:
    bed.login.api_ready()
    bed.api.login_error(EXPIRED)
    bed.clock.advance(0.25)
    bed.read()  # the status reader brings tailscale's verdict
    assert signal.SIGTERM in bed.attempt.signals
    bed.end_attempt(-signal.SIGTERM)
    assert phase(bed.login) is Phase.FAILED
    assert bed.outcome.failures == [EXPIRED]
    assert bed.login.retry_at is None
    bed.login.tick(bed.clock.advance(60))
    assert len(bed.spawn.named("up")) == 1


def test_login_that_never_finishes_fails_at_the_deadline(bed: Bed) -> None:
    bed.login.api_ready()
    bed.login.on_state("Starting")
    bed.login.tick(bed.clock.advance(59.9))
    assert phase(bed.login) is Phase.LOGIN
    bed.login.tick(bed.clock.advance(0.1))
    assert phase(bed.login) is Phase.FAILED
    assert bed.outcome.failures == ["not Running after 60s (state Starting)"]
    assert signal.SIGTERM in bed.attempt.signals


def test_no_retry_when_less_than_a_second_is_left(bed: Bed) -> None:
    bed.login.api_ready()
    bed.clock.advance(59.5)
    bed.api.login_error(UNREACHABLE)
    bed.end_attempt(1, TIMEOUT)
    assert phase(bed.login) is Phase.FAILED and bed.login.retry_at is None
    assert bed.outcome.failures == [UNREACHABLE]  # tailscale's own words, not "timeout"


def test_the_last_retry_leaves_a_second_before_the_deadline(bed: Bed) -> None:
    bed.login.api_ready()
    bed.clock.advance(58.5)
    bed.api.login_error(UNREACHABLE)
    bed.end_attempt(1, TIMEOUT)
    assert bed.login.retry_at == pytest.approx(bed.login.deadline - 1.0)


def test_key_file_is_private_and_gone_once_tailscale_starts(bed: Bed) -> None:
    bed.login.api_ready()
    assert bed.login.attempt is not None and bed.login.attempt.secret is not None
    secret = bed.login.attempt.secret
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text() == KEY
    assert f"--auth-key=file:{secret}" in bed.attempt.argv
    assert not any(KEY in arg for arg in bed.attempt.argv)
    bed.login.on_state("Starting")
    assert not secret.exists()  # before `tailscale up` has even returned


def test_halted_login_takes_no_more_decisions(bed: Bed) -> None:
    bed.login.api_ready()
    bed.life.stop(STOP)
    bed.api.login_error(UNREACHABLE)
    bed.end_attempt(1, TIMEOUT)
    assert phase(bed.login) is Phase.STOPPING and bed.login.retry_at is None
    assert bed.outcome.failures == []
    bed.login.tick(bed.clock.advance(120))
    assert bed.outcome.failures == [] and len(bed.spawn.named("up")) == 1


def test_stop_ends_the_attempt_and_removes_its_key(bed: Bed) -> None:
    bed.login.api_ready()
    assert bed.login.attempt is not None and bed.login.attempt.secret is not None
    secret = bed.login.attempt.secret
    bed.life.stop(STOP)
    bed.login.stop()
    assert phase(bed.login) is Phase.STOPPING
    assert signal.SIGTERM in bed.attempt.signals
    assert not secret.exists()


def test_tailscaled_lost_during_backoff_cancels_the_retry(bed: Bed) -> None:
    bed.login.api_ready()
    bed.api.login_error(UNREACHABLE)
    bed.end_attempt(1, TIMEOUT)
    assert bed.login.retry_at is not None
    bed.login.tailscaled_lost()
    bed.login.restarting(0.5)
    bed.life.change(Phase.STARTING)  # (the manager's move)
    assert phase(bed.login) is Phase.STARTING and bed.login.retry_at is None
    bed.login.tick(bed.clock.advance(5))
    assert len(bed.spawn.named("up")) == 1  # no attempt against a tailscaled not yet back
    assert bed.login.deadline == pytest.approx(bed.clock() - 5 + 0.5 + 60)


def test_news_of_another_process_is_not_the_attempts(bed: Bed) -> None:
    bed.login.api_ready()
    assert not bed.login.on_up_exit(FakeChild(["tailscaled"]), 1)
    assert bed.login.attempt is not None


def test_a_failed_attempt_waits_for_a_fresh_read_then_judges_without(bed: Bed) -> None:
    bed.login.api_ready()
    bed.api.login_error(UNREACHABLE)
    child = bed.attempt
    child.exit(1, TIMEOUT)
    assert bed.login.on_up_exit(child, 1)
    assert bed.refreshes == 1 and phase(bed.login) is Phase.LOGIN  # not judged on old news
    bed.login.tick(bed.clock.advance(FRESH_READ_WAIT - 0.01))
    assert bed.login.retry_at is None
    bed.login.tick(bed.clock.advance(0.01))  # tailscaled never answered: judged without
    assert phase(bed.login) is Phase.BACKOFF
    # Only the CLI's "timeout waiting" was known: the reason says so, not a guess.
    assert bed.report() == "not Running after 60s (state no state)"


def test_a_read_begun_before_the_attempt_ended_does_not_judge_it(bed: Bed) -> None:
    bed.login.api_ready()
    before = bed.clock()
    bed.clock.advance(0.1)
    child = bed.attempt
    child.exit(1, TIMEOUT)
    bed.login.on_up_exit(child, 1)
    bed.api.login_error(EXPIRED)
    bed.login.on_node(bed.api.node(), before)
    assert phase(bed.login) is Phase.LOGIN and bed.outcome.failures == []
    bed.read()
    assert bed.outcome.failures == [EXPIRED]


def test_the_phase_changes_only_as_the_table_allows(bed: Bed) -> None:
    bed.login.api_ready()
    bed.life.stop(STOP)
    assert phase(bed.login) is Phase.STOPPING
    with pytest.raises(IllegalTransition, match="stopping cannot change to login"):
        bed.life.change(Phase.LOGIN)
    with pytest.raises(IllegalTransition):
        bed.life.running()


def test_the_verdict_outlives_the_stop_that_follows_it(tmp_path: Path) -> None:
    """A manager whose login failed stops at once; `up` may read the verdict only then (from
    last-stop.json): its setting and exit code must still be there."""
    bed = Bed(tmp_path, TS_EXTRA_ARGS="--bogus")
    bed.login.api_ready()
    bed.end_attempt(2, "flag provided but not defined: -bogus\nUSAGE of tailscale up")
    assert phase(bed.login) is Phase.FAILED
    bed.life.stop(STOP)
    bed.login.stop()
    report = bed.life.report(bed.login.problem)
    assert report.setting == "TS_EXTRA_ARGS" and report.exit_code == 2 and report.advice
    assert (report.reason or "").startswith("flag provided but not defined: -bogus")
