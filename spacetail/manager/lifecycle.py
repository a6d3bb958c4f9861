"""Where the manager stands, and why it ended: one object, the manager's, that holds the phase
(moved only as state/phases.py's table allows), the verdict (the failure it gave up on, with its
kind) and the ending (why it stops). The login changes only its own steps in it (an attempt
runs, a backoff waits) and reports `succeeded` or `failed`; whether that means Running, Failed
or the end is decided by the manager, here."""

from __future__ import annotations

from spacetail.manager.lifetime import Ending
from spacetail.state import phases
from spacetail.state.phases import Phase
from spacetail.state.status import Problem
from spacetail.tailnet.failures import Failure


class Lifecycle:
    def __init__(self) -> None:
        self._phase = Phase.STARTING
        self.verdict: Failure | None = None  # why the login gave up, until it runs again
        self.ending: Ending | None = None  # why the manager stops, once it decided to
        self.ran = False  # Running at least once: a failure is then reported, not an end

    @property
    def phase(self) -> Phase:
        return self._phase

    def change(self, new: Phase) -> None:
        """The one way the phase changes; a move the table does not allow raises."""
        phases.check(self._phase, new)
        self._phase = new

    @property
    def stopping(self) -> bool:
        """The manager decided to stop: no decision is taken any more (no retry, no verdict)."""
        return self.ending is not None

    def running(self) -> None:
        self.change(Phase.RUNNING)
        self.verdict = None
        self.ran = True

    def fail(self, failure: Failure) -> None:
        self.change(Phase.FAILED)
        self.verdict = failure

    def stop(self, ending: Ending) -> bool:
        """The decision to stop, once (the first ending is the one told); False if taken."""
        if self.ending is not None:
            return False
        self.ending = ending
        self.change(Phase.STOPPING)
        return True

    @property
    def never_ran(self) -> bool:
        """A login that failed before it was ever Running: there is nothing to log out."""
        return self.verdict is not None and not self.ran

    def report(self, problem: Failure | None) -> Problem:
        """What the status says of the login: the verdict with its advice (also while the
        manager stops after it: `up` reads it then), else PROBLEM, the last transient one."""
        v = self.verdict
        if v is not None:
            return Problem(reason=v.line, kind=v.kind.value, advice=v.advice, setting=v.setting,
                           exit_code=v.exit_code)  # fmt: skip
        if problem is None:
            return Problem()
        return Problem(reason=problem.line, kind=problem.kind.value)
