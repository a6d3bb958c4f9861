"""What `wait` and `up` wait for: the manager's verdict on the login (it holds the request and
answers from its loop, asked one progress interval at a time within one deadline); then, for
`wait`, the peers and the targets (tailnet/ready.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from spacetail.errors import OperationFailed
from spacetail.progress import Progress
from spacetail.state import control, statedir
from spacetail.state.lookup import read_last_stop, still_running
from spacetail.state.paths import Paths
from spacetail.state.statedir import Probe
from spacetail.state.status import Status
from spacetail.state.verdict import await_verdict

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass


def wait(
    paths: Paths,
    timeout: float,
    env: Mapping[str, str],
    *,
    peers: tuple[str, ...] = (),
    targets: tuple[tuple[str, int], ...] = (),
    progress: Progress | None = None,
    started: float | None = None,
) -> Status:
    """STARTED: when the caller's clock started (before it parsed its arguments: 10,000
    targets take argparse seconds), on time.monotonic()."""
    deadline = (time.monotonic() if started is None else started) + timeout
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
    if peers or targets:
        from spacetail.tailnet.ready import (
            wait_beyond_running,  # the dialer's imports: only when asked
        )

        wait_beyond_running(reply, peers=peers, targets=targets, deadline=deadline, env=env,
                            progress=progress, check=still_running(paths, reply))  # fmt: skip
    return reply
