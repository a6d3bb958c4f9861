"""What `wait` and `up` wait for: the manager's verdict on the login (it holds the request and
answers from its loop), then the peers (`tailscale ping`) and the targets (a TCP connection
through the tailnet), all within one deadline, with a progress line while they wait."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from spacetail import control, statedir
from spacetail.errors import OperationFailed
from spacetail.lookup import read_last_stop
from spacetail.paths import Paths
from spacetail.progress import Progress
from spacetail.statedir import Probe
from spacetail.status import Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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
    env: Mapping[str, str],
    *,
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
        wait_for_peers(reply, peers, deadline, env, progress)
    if targets:
        from spacetail.targets import wait_for_targets

        wait_for_targets(reply, targets, deadline, progress)
    return reply


def wait_for_peers(
    reply: Status,
    peers: tuple[str, ...],
    deadline: float,
    env: Mapping[str, str],
    progress: Progress | None = None,
) -> None:
    """Until each peer answers `tailscale ping` (a relayed answer counts), through the one-shot
    runner the doctor uses: no pty, a hard timeout, and no secret in its environment."""
    from spacetail.checkup import ping, sh_runner

    run = sh_runner(env)
    tailscale, sock = Path(str(reply.tailscale)), Path(str(reply.tailscaled_socket))
    pending = list(peers)
    last: dict[str, str] = {}
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            details = "; ".join(f"{p}: {last.get(p, 'no answer')}" for p in pending)
            raise OperationFailed(f"peer(s) did not answer in time: {details}")
        for peer in list(pending):
            per_try = max(1.0, min(3.0, deadline - time.monotonic()))
            result = ping(run, tailscale, sock, peer, per_try)
            if result.answered:
                pending.remove(peer)
            else:
                last[peer] = result.problem or "no answer"
        if pending:
            if progress is not None:
                progress.pending("peers", {p: last.get(p, "") for p in pending}, deadline)
            # A new node's view of the tailnet fills in over seconds: ask again, not in a spin.
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
