"""Why a manager ends (`Ending`: a named cause and its words), and the two endings it watches for
by itself: the phase's shell has exited (seen through a pidfd the moment it happens, or by its
start time twice a second where the kernel has no pidfds), or the maximum lifetime is reached,
so that nothing can hold a run until Spacelift's timeout."""

from __future__ import annotations

import enum
import selectors
from collections.abc import Callable
from dataclasses import dataclass

from spacetail.state.identity import ProcessIdentity
from spacetail.state.kinds import FailureClass

SHELL_POLL = 0.5


class Cause(enum.Enum):
    SHELL_EXITED = "shell-exited"
    MAX_LIFETIME = "max-lifetime"
    DOWN = "down"  # `spacetail down` asked
    SIGNAL = "signal"
    LOGIN_FAILED = "login-failed"  # a login that never succeeded leaves nothing running
    INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True)
class Ending:
    cause: Cause
    text: str  # what the log and last-stop.json say

    @property
    def failure(self) -> bool:
        """An end the user must hear about: `status` and `wait` report it as a failure."""
        return self.cause in (Cause.LOGIN_FAILED, Cause.INTERNAL_ERROR, Cause.MAX_LIFETIME)

    @property
    def kind(self) -> FailureClass | None:
        """Its kind, for the status and last-stop.json; None after a failed login, whose kind
        is the verdict's."""
        return _KINDS.get(self.cause)


_KINDS = {
    Cause.SHELL_EXITED: FailureClass.SHELL_EXIT,
    Cause.MAX_LIFETIME: FailureClass.LIFETIME,
    Cause.DOWN: FailureClass.DOWN,
    Cause.SIGNAL: FailureClass.SIGNAL,
    Cause.INTERNAL_ERROR: FailureClass.INTERNAL,
}


class Lifetime:
    def __init__(
        self,
        clock: Callable[[], float],
        max_lifetime: float,
        shell_pid: int | None,
        shell_pidfd: int | None,
    ) -> None:
        self.clock = clock
        self.max_lifetime = max_lifetime
        self.deadline = clock() + max_lifetime if max_lifetime > 0 else None
        self.shell_pid = shell_pid
        self.shell_pidfd = shell_pidfd
        polled = shell_pid is not None and shell_pidfd is None
        self._shell_ident = ProcessIdentity.of(shell_pid) if polled and shell_pid else None
        self._next_check = clock() if self._shell_ident else None

    def register(self, sel: selectors.BaseSelector, on_end: Callable[[Ending], None]) -> None:
        if self.shell_pidfd is not None:
            fd = self.shell_pidfd

            def shell_exited() -> None:
                sel.unregister(fd)
                on_end(self.shell_gone())

            sel.register(fd, selectors.EVENT_READ, shell_exited)

    def shell_gone(self) -> Ending:
        return Ending(Cause.SHELL_EXITED, f"the phase's shell (pid {self.shell_pid}) exited")

    def describe(self) -> str:
        watching = f"shell pid {self.shell_pid}" if self.shell_pid else "no shell"
        lifetime = f"max lifetime {self.max_lifetime:.0f}s" if self.deadline else "no max lifetime"
        return f"watching {watching}, {lifetime}"

    def left(self) -> float | None:
        return round(self.deadline - self.clock(), 1) if self.deadline else None

    def next_deadline(self) -> float | None:
        return min((t for t in (self.deadline, self._next_check) if t is not None), default=None)

    def check(self, now: float) -> Ending | None:
        """The reason to stop now, if there is one (each is given once)."""
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            lifetime = f"{self.max_lifetime:.0f}s"
            return Ending(
                Cause.MAX_LIFETIME, f"reached its max lifetime ({lifetime}, SPACETAIL_MAX_LIFETIME)"
            )
        if self._next_check is not None and now >= self._next_check:
            self._next_check = now + SHELL_POLL
            if self._shell_ident is not None and not self._shell_ident.alive():
                self._next_check = None
                return self.shell_gone()
        return None
