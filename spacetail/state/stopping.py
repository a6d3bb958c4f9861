"""Stopping a manager from outside, for `down` and for an `up` that must undo what it started:
ask an answering one over the socket and wait until it has exited; signal only one proven to be
a process of this container and named by its own record."""

from __future__ import annotations

from spacetail.console import say
from spacetail.errors import OperationFailed
from spacetail.state import control
from spacetail.state.identity import ProvenProcess, terminate
from spacetail.state.paths import Paths
from spacetail.state.statedir import Probe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO


STOPPING_GRACE = 5.0  # a manager's shutdown takes under 2 s (logout 1 s, SIGTERM grace 0.8 s)


def stop_manager(paths: Paths, p: Probe, *, logout: bool | None, out: TextIO) -> bool:
    """Ask an answering manager to stop and wait until it has exited. Only a manager proven to
    be a process of this container (boot, PID namespace, start time) and named by its record is
    ever signalled: any other is asked over the socket, and its PID is never looked up here."""
    assert p.status is not None
    ident = p.proven_ident
    handle = ProvenProcess.open(ident) if ident is not None else None
    try:
        try:
            _reply, closed = control.ControlClient(paths.control_socket).request_until_closed(
                {"cmd": "down", "logout": logout}, timeout=15.0
            )
        except control.ControlUnavailable:
            closed = True  # it went away between the probe and the request
        if handle is not None and not handle.wait(STOPPING_GRACE):
            say(out, f"manager pid {handle.ident.pid} did not exit after stopping; terminating it")
            terminate(handle, 2.0)
        elif handle is None and not closed:
            if p.foreign or ident is not None:
                who = p.describe_foreign() if p.foreign else "the manager"
                raise OperationFailed(
                    f"{who} was asked to stop and did not within 15s; run `spacetail down` in "
                    "its container"
                )
            raise OperationFailed(
                f"{p.describe_unrecorded(paths)} was asked to stop and did not within 15s; "
                "stop it yourself, or set SPACETAIL_DIR to a folder of this phase's own"
            )
        return closed
    finally:
        if handle is not None:
            handle.close()


def stop_unanswering(paths: Paths, p: Probe, out: TextIO) -> None:
    """The lock is held but nobody answers: a wedged manager, or one in another container."""
    ident = p.manager_ident
    handle = ProvenProcess.open(ident) if ident else None
    if handle is None:
        where = f" ({ident.why_not_alive()})" if ident else ""
        raise OperationFailed(
            f"{paths.manager_lock} is held by a live process that spacetail cannot identify"
            f"{where}: another container may share this state folder; set SPACETAIL_DIR to a "
            "folder of this phase's own"
        )
    with handle:
        # It may be in the middle of stopping (its socket is gone first): give it time.
        if handle.wait(STOPPING_GRACE):
            return
        say(out, f"manager pid {handle.ident.pid} does not answer; terminating it")
        terminate(handle, 3.0)
