"""What each command does (up, down, wait, status), as functions of plain values: the CLI parses
arguments, these functions act, talking to the manager over its control socket. The state
folder's files are statedir.py's business."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from spacetail import control, statedir
from spacetail.errors import OperationFailed
from spacetail.identity import ProvenProcess, terminate
from spacetail.paths import Paths, remove_file
from spacetail.progress import Progress
from spacetail.statedir import Probe
from spacetail.status import LastStop, Proxies, Status

TYPE_CHECKING = False  # keeps typing and config out of `spacetail status`
if TYPE_CHECKING:
    from typing import Any, TextIO


STOPPING_GRACE = 5.0  # a manager's shutdown takes under 2 s (logout 1 s, SIGTERM grace 0.8 s)


def say(out: TextIO, message: str) -> None:
    print(f"spacetail: {message}", file=out, flush=True)


def indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


# --- down ---------------------------------------------------------------------------------


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


# --- status and wait ----------------------------------------------------------------------


def status(paths: Paths) -> Status:
    """What runs here; works, and says so, when nothing runs."""
    exists = statedir.check(paths)
    p = statedir.probe(paths) if exists else statedir.NOTHING
    if p.status is not None:
        if not p.foreign:
            return p.status
        return p.status.replace(
            foreign=True,
            problem=(
                f"{p.describe_foreign()}: its proxies and PIDs are not this container's; "
                "`spacetail down` asks it to stop"
            ),
        )
    last, last_garbage = read_last_stop(paths) if exists else (None, False)
    problem = stale = None
    if p.lock_held:
        problem = "a manager holds the lock but does not answer"
    elif p.record is not None or p.record_garbage or last_garbage or paths.control_socket.exists():
        stale = p.describe_stale() + "; `spacetail down` or `up` cleans them"
    return Status(
        running=False, state_dir=str(paths.root), problem=problem, stale=stale, last_stop=last
    )


def read_last_stop(paths: Paths) -> tuple[LastStop | None, bool]:
    """(last stop, garbage): a file that is not one of ours is garbage, so stale."""
    last, garbage = statedir.read_record(paths.last_stop)
    if last is None:
        return None, garbage
    try:
        return LastStop.from_json(last), False
    except ValueError:
        return None, True


def await_verdict(
    paths: Paths,
    until: str,
    deadline: float,
    progress: Progress,
    *,
    margin: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], Status]:
    """Ask the manager to wait until the node is Running (UNTIL "running") or its LocalAPI
    answers ("api"), the login fails, or DEADLINE + MARGIN; return its answer and status. The
    manager holds the request and answers it from its loop: it never waits itself. With
    progress lines, the wait is asked one interval at a time and each timed-out answer's status
    makes a line; every request's timeout is what is left of the one deadline, so the last
    answer comes exactly when one request would have. Raises ControlUnavailable, ValueError."""
    client = control.ControlClient(paths.control_socket)
    end = deadline + margin
    while True:
        left = max(0.0, end - clock())
        timeout = progress.slice(left)
        answer = client.request(
            {"cmd": "wait", "until": until, "timeout": timeout}, timeout=timeout + 5
        )
        reply = Status.from_json(answer)
        if answer.get("timed_out") is not True or timeout >= left:
            return answer, reply
        progress.login(reply, deadline)


def wait(
    paths: Paths,
    timeout: float,
    peers: tuple[str, ...] = (),
    targets: tuple[tuple[str, int], ...] = (),
    progress: Progress | None = None,
) -> Status:
    deadline = time.monotonic() + timeout
    progress = progress or Progress(None)
    statedir.check(paths)
    try:
        answer, reply = await_verdict(paths, "running", deadline, progress)
    except (control.ControlUnavailable, ValueError):
        record, garbage = statedir.read_record(paths.record)
        last, last_garbage = read_last_stop(paths)
        stale = ""
        if record is not None or garbage or last_garbage:
            stale = f" (only stale {Probe(None, record, garbage, False).describe_stale()})"
        if last is not None:
            stale += f"; the last one stopped at {last.at}: {last.reason}"
        raise OperationFailed(
            f"no manager runs for {paths.root}{stale}; run `spacetail up` first"
        ) from None
    probe = Probe(reply, None, False, True)
    if probe.foreign:
        raise OperationFailed(
            f"{probe.describe_foreign()}: its tailnet is not reachable "
            "from this container; set SPACETAIL_DIR to a folder of this phase's own"
        )
    if answer.get("ok") is not True:
        if answer.get("timed_out") is True:
            raise OperationFailed(
                f"timed out after {timeout:g}s: tailscale is {reply.backend_state} "
                f"({reply.login.reason or 'still logging in'})"
            )
        raise OperationFailed(f"the tailnet is not usable: {reply.login.reason}")
    if peers:
        wait_for_peers(reply, peers, deadline, progress)
    if targets:
        from spacetail.targets import wait_for_targets

        wait_for_targets(reply, targets, deadline, progress)
    return reply


def wait_for_peers(
    reply: Status, peers: tuple[str, ...], deadline: float, progress: Progress | None = None
) -> None:
    """Until each peer answers `tailscale ping` (a relayed answer counts)."""
    import subprocess

    from spacetail.tailscale import ping_argv

    tailscale = Path(str(reply.tailscale))
    sock = Path(str(reply.tailscaled_socket))
    from spacetail.tailscale import Binaries

    binaries = Binaries(tailscale, tailscale)
    pending = list(peers)
    last: dict[str, str] = {}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            details = "; ".join(f"{p}: {last.get(p, 'no answer')}" for p in pending)
            raise OperationFailed(f"peer(s) did not answer in time: {details}")
        for peer in list(pending):
            per_try = max(1.0, min(3.0, deadline - time.monotonic()))
            try:
                result = subprocess.run(
                    ping_argv(binaries, sock, peer, per_try),
                    capture_output=True,
                    text=True,
                    timeout=per_try + 2,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                last[peer] = "no answer"
                continue
            if result.returncode == 0:
                pending.remove(peer)
            else:
                text = (result.stdout + result.stderr).strip().splitlines()
                last[peer] = text[-1] if text else f"exit {result.returncode}"
        if pending:
            if progress is not None:
                progress.pending("peers", {p: last.get(p, "") for p in pending}, deadline)
            # A new node's view of the tailnet fills in over seconds: ask again, not in a spin.
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


# --- logs ---------------------------------------------------------------------------------


def logs(paths: Paths, *, tailscaled: bool, lines: int) -> tuple[Path, str]:
    """The log asked for and its last LINES lines (empty when there is none), read only from a
    state folder that passes the same checks as every other command's."""
    from spacetail.log import tail

    statedir.check(paths)
    path = paths.tailscaled_log if tailscaled else paths.manager_log
    return path, tail(path, lines, max_bytes=max(16384, lines * 400))
