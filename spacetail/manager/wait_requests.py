"""The `wait` requests a manager holds: each is answered once the node is usable, the login has
failed, the manager is stopping, or its own time is up, whichever comes first."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spacetail.state.control import Request


class Until(enum.Enum):
    RUNNING = "running"  # the node is Running
    API = "api"  # tailscaled's LocalAPI answers (up --no-wait)


@dataclass
class Waiter:
    request: Request
    deadline: float
    until: Until


Verdict = Callable[[Until], "dict[str, Any] | None"]


class Waiters:
    def __init__(self) -> None:
        self._waiting: list[Waiter] = []

    def add(self, waiter: Waiter, verdict: Verdict) -> None:
        """Answer at once when the VERDICT is in, else hold the request."""
        reply = verdict(waiter.until)
        if reply is None:
            self._waiting.append(waiter)
        else:
            waiter.request.reply(reply)

    def answer(self, verdict: Verdict) -> None:
        """Something changed: answer every waiter whose verdict is now in."""
        for waiter in list(self._waiting):
            reply = verdict(waiter.until)
            if reply is not None:
                self._waiting.remove(waiter)
                waiter.request.reply(reply)

    def expire(self, now: float, timed_out: Callable[[], dict[str, Any]]) -> None:
        for waiter in [w for w in self._waiting if now >= w.deadline]:
            self._waiting.remove(waiter)
            waiter.request.reply(timed_out())

    def next_deadline(self) -> float | None:
        return min((w.deadline for w in self._waiting), default=None)
