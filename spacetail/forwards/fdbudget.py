"""How many connections the forwards may hold under the descriptor limit (RLIMIT_NOFILE) the
manager runs under.

A forwarded connection holds up to FDS_PER_CONNECTION descriptors: the client, the target, and
a pipe (two descriptors) per direction for splice(2). 256 connections need about 1,550, more
than the soft limit of 1024 many shells start with. So, once at the manager's start: the soft
limit is raised towards the hard one, as far as the forwards need (not beyond: tailscaled and
`tailscale up` inherit it); and whatever it then is, each forward's cap is lowered to what it
allows, with FD_RESERVE left for the manager itself (its log, control clients, tailscaled's
pipes, dials in flight). `spacetail status` says which of the two happened."""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass

FDS_PER_CONNECTION = 6
FD_RESERVE = 64

GetLimit = Callable[[], tuple[int, int]]
SetLimit = Callable[[tuple[int, int]], None]


@dataclass(frozen=True)
class Budget:
    max_open: int  # connections each forward may hold
    fd_limit: int  # the soft RLIMIT_NOFILE the forwards run under
    raised_from: int | None = None  # the soft limit before spacetail raised it

    def as_dict(self) -> dict[str, object]:
        return {
            "max_open": self.max_open,
            "fd_limit": self.fd_limit,
            "fd_limit_raised_from": self.raised_from,
        }


def _get() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _set(limits: tuple[int, int]) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def budget(
    forwards: int, max_open: int, *, get: GetLimit = _get, set_limit: SetLimit = _set
) -> Budget:
    """Raise the soft limit as far as FORWARDS forwards of MAX_OPEN connections need (never past
    the hard limit), then cap each forward at what the limit allows (one at least)."""
    soft, hard = get()
    if soft == resource.RLIM_INFINITY:
        return Budget(max_open, soft)
    need = FD_RESERVE + forwards * max_open * FDS_PER_CONNECTION
    raised_from: int | None = None
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if target > soft:
            try:
                set_limit((target, hard))
                raised_from, soft = soft, target
            except (OSError, ValueError):
                pass  # keep the limit we have, and fit the cap to it
    per_forward = (soft - FD_RESERVE) // (FDS_PER_CONNECTION * max(forwards, 1))
    return Budget(max(1, min(max_open, per_forward)), soft, raised_from)
