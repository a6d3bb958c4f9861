"""Asking the manager for its verdict on the login, for `wait` and `up`: it holds the request
and answers from its loop (it never waits itself), asked one progress interval at a time within
the caller's one deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

from spacetail.progress import Progress
from spacetail.state import control
from spacetail.state.paths import Paths
from spacetail.state.status import Status

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
