"""What `up` and `wait` say while they wait: a line on stderr every few seconds, so that a hook's
log (all a Spacelift user sees) never looks hung during a 60 s login. Each line says what is
waited on and for how long still: the node's state, the login attempt, tailscale's words on the
last failed one; or the targets and peers that have not answered yet, with their last error.

Never on stdout: `up --env`'s stdout is eval'ed. `SPACETAIL_PROGRESS=false` (`--no-progress`)
turns the lines off. The schedule is one for the whole wait (the login, then the peers, then the
targets): a line every EVERY seconds, whatever is being waited on."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from spacetail.console import say
from spacetail.state.status import Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

EVERY = 5.0  # a hook silent for longer reads as hung; more often crowds the run's log
SHORTEST = 0.1  # the least a wait is cut to: a line due a moment ago never makes a spin
MAX_ERROR = 300  # characters of tailscale's error in one line: the log keeps all of it


class Progress:
    """The lines of one wait, to OUT (None: none at all), every EVERY seconds from now."""

    def __init__(
        self,
        out: TextIO | None,
        *,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.every = every
        self.clock = clock
        self.next_at = clock() + every

    def slice(self, left: float) -> float:
        """How long the next wait may last, of the LEFT seconds: until the next line is due (at
        least SHORTEST), or all of them when no line is printed or none falls due before."""
        if self.out is None:
            return left
        return min(left, max(SHORTEST, self.next_at - self.clock()))

    def due(self) -> bool:
        """Whether a line is due now (its time, less SHORTEST, has come); then the next one is
        EVERY seconds away."""
        now = self.clock()
        if self.out is None or now < self.next_at - SHORTEST:
            return False
        self.next_at = now + self.every
        return True

    def say(self, text: str) -> None:
        if self.out is not None:
            say(self.out, text)

    def login(self, status: Status, deadline: float) -> None:
        """A line on the login, if one is due: DEADLINE is the waiting command's own; the
        manager's may come sooner (a manager joined, not started, has its own)."""
        if self.due():
            self.say(login_line(status, _left(self.clock, deadline, status.login_deadline_left)))

    def pending(self, what: str, last: Mapping[str, str], deadline: float) -> None:
        """A line on the peers or targets (WHAT) not answering yet, with LAST, their last error
        each, if one is due."""
        if self.due():
            self.say(pending_line(what, last, _left(self.clock, deadline, None)))


def _left(clock: Callable[[], float], deadline: float, manager_left: float | None) -> float:
    left = deadline - clock()
    if manager_left is not None:
        left = min(left, manager_left)
    return max(0.0, left)


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."


def login_line(status: Status, left: float) -> str:
    """e.g. `waiting for the tailnet (43s left): Starting, login attempt 2; last error: ...`"""
    state = status.backend_state or "tailscaled starting"
    text = f"waiting for the tailnet ({left:.0f}s left): {state}"
    if status.login_attempts:
        text += f", login attempt {status.login_attempts}"
    if status.login.reason:
        text += f"; last error: {_short(status.login.reason)}"
    return text


def pending_line(what: str, last: Mapping[str, str], left: float) -> str:
    """e.g. `waiting for targets (12s left): db:5432 (connection refused), api:443`"""
    named = ", ".join(f"{name} ({_short(err)})" if err else name for name, err in last.items())
    return f"waiting for {what} ({left:.0f}s left): {named}"
