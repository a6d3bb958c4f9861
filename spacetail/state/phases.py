"""Where a manager stands (its phase) and where it may go from there.

The phase changes in one place (`Login.change`), against this table: a move it does not list
is a bug, and raises (supervisor's `change_state` with `_assertInState` is the model). The
status shows the value; readers compare against the enum, never against a string."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    STARTING = "starting"  # tailscaled is starting (or restarting)
    LOGIN = "login"  # a `tailscale up` attempt runs, or its verdict is being read
    BACKOFF = "backoff"  # waiting before the next attempt
    RUNNING = "running"
    FAILED = "failed"
    STOPPING = "stopping"

    @property
    def logging_in(self) -> bool:
        return self in (Phase.STARTING, Phase.LOGIN, Phase.BACKOFF)


_P = Phase
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    # tailscaled answers (LOGIN), or comes up Running by itself with a kept node state; it dies
    # and is restarted (STARTING), or cannot be kept running (FAILED)
    _P.STARTING: frozenset({_P.STARTING, _P.LOGIN, _P.RUNNING, _P.FAILED, _P.STOPPING}),
    _P.LOGIN: frozenset({_P.STARTING, _P.LOGIN, _P.BACKOFF, _P.RUNNING, _P.FAILED, _P.STOPPING}),
    # tailscaled's own retry may succeed while ours waits
    _P.BACKOFF: frozenset({_P.STARTING, _P.LOGIN, _P.RUNNING, _P.FAILED, _P.STOPPING}),
    # logged out behind our back (LOGIN), tailscaled restarted (STARTING) or lost (FAILED)
    _P.RUNNING: frozenset({_P.STARTING, _P.LOGIN, _P.FAILED, _P.STOPPING}),
    # After a failure that followed a success the manager stays, to report it: a tailscaled that
    # dies then is still restarted (and logs in afresh), and a later verdict replaces this one.
    _P.FAILED: frozenset({_P.STARTING, _P.FAILED, _P.STOPPING}),
    _P.STOPPING: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A phase change the table does not allow: a bug in the manager, never a user's doing."""


def check(current: Phase, new: Phase) -> None:
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"phase {current.value} cannot change to {new.value}")
