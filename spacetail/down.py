"""`spacetail down`: ask the manager to log out and stop, wait until nothing is left, clean what a
dead one left, and take spacetail's proxy lines out of Spacelift's saved environment. Only a
manager proven to be a process of this container, and named by its own record, is ever
signalled; any other is asked over the socket."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from spacetail import control, statedir
from spacetail.console import say
from spacetail.errors import OperationFailed
from spacetail.identity import ProvenProcess, terminate
from spacetail.paths import Paths, remove_file
from spacetail.statedir import Probe
from spacetail.status import Proxies

TYPE_CHECKING = False  # keeps typing and config out of `spacetail status`
if TYPE_CHECKING:
    from typing import Any, TextIO


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


def down(
    paths: Paths, env: Mapping[str, str], *, logout: bool | None = None, out: TextIO = sys.stderr
) -> list[str]:
    """Stop the manager and tailscaled and clean up; returns what was done, for the report."""
    from spacetail.proxyenv import clean_saved_env, saved_env_files

    done: list[str] = []
    proxies: Proxies | None = None
    if statedir.check(paths):
        with statedir.control_lock(paths, best_effort=True) as locked:
            if not locked:
                done.append(f"could not lock {paths.ctl_lock} (read-only?); went on without")
            p = statedir.probe(paths)
            proxies = p.status.proxies if p.status else _recorded_proxies(p.record)
            if p.answering and p.status is not None:
                stop_manager(paths, p, logout=logout, out=out)
                if p.foreign:
                    done.append(f"asked {p.describe_foreign()} to stop; it has")
                elif p.proven_ident is None:
                    done.append(f"asked {p.describe_unrecorded(paths)} to stop; it has")
                else:
                    done.append(f"stopped manager pid {p.status.manager_pid} and tailscaled")
                p = statedir.probe(paths)
                if p.answering and p.proven_ident is None and not p.foreign:
                    raise OperationFailed(
                        f"{p.describe_unrecorded(paths)} still answers after it was asked to "
                        "stop; stop it yourself, or set SPACETAIL_DIR to a folder of your own"
                    )
            if p.lock_held:
                stop_unanswering(paths, p, out)
                done.append("terminated an unanswering manager")
            removed = statedir.clean_stale(paths, p)
            if removed:
                done.append(f"removed stale {p.describe_stale()}: {', '.join(removed)}")
            remove_file(paths.last_stop)
    for path in saved_env_files(env):
        count = clean_saved_env(path, (proxies or _default_proxies()).to_json())
        if count:
            done.append(f"removed {count} proxy line(s) from {path.name}")
    return done


def _recorded_proxies(record: dict[str, Any] | None) -> Proxies | None:
    try:
        return Proxies.from_json((record or {}).get("proxies"))
    except ValueError:
        return None


def _default_proxies() -> Proxies:
    from spacetail.config import DEFAULT_HTTP_PROXY, DEFAULT_SOCKS5

    return Proxies(http=f"http://{DEFAULT_HTTP_PROXY}", socks5=f"socks5://{DEFAULT_SOCKS5}")
