"""Waiting in tests: one poll with a deadline for every condition, and one wait for a port to
listen before a test dials it (a proxy, a forward, a server the test started). No test sleeps
to synchronize."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def poll(
    check: Callable[[], T | None],
    timeout: float,
    what: str | Callable[[], str],
    every: float = 0.01,
) -> T:
    """Call CHECK until it returns something other than None/False; fail after TIMEOUT (WHAT,
    or what it returns then, says what was awaited)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"not within {timeout:g}s: {what if isinstance(what, str) else what()}"
            )
        time.sleep(every)


def listening(port: int) -> bool:
    """Whether a TCP socket of this network namespace listens on PORT (any address, IPv4 or
    IPv6), read from /proc/net: no connection is made, so the listener sees nothing."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_listening(
    port: int,
    timeout: float = 10.0,
    what: str = "",
    gone: Callable[[], str | None] = lambda: None,
) -> None:
    """Return once PORT listens; fail after TIMEOUT, or at once when GONE says why the listener
    never will (its process exited, say)."""

    def ready() -> bool:
        why = gone()
        if why is not None:
            raise AssertionError(f"{what or f'port {port}'} will never listen: {why}")
        return listening(port)

    poll(ready, timeout, f"{what or 'port'} {port} to listen")
