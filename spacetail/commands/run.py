"""`spacetail run -- CMD`: up, the command with the tailnet's proxies (and without the
credentials: it needs the tailnet, not the key), then down, whatever happens to the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import FrameType

from spacetail.config.credentials import TAILNET_CREDENTIALS
from spacetail.config.loader import Config
from spacetail.console import say
from spacetail.errors import OperationFailed
from spacetail.state.paths import Paths
from spacetail.state.proxyenv import proxy_variables
from spacetail.state.status import Status

# The two commands run is made of, given by the caller (cli): no command imports another.
Up = Callable[..., Status]
Down = Callable[[Paths, Mapping[str, str]], list[str]]


def run(
    cfg: Config,
    paths: Paths,
    env: Mapping[str, str],
    command: Sequence[str],
    *,
    up: Up,
    down: Down,
) -> int:
    """Exit with COMMAND's status; the manager watches this process, so even a SIGKILL of
    `spacetail run` cannot leave it behind."""
    program = _find_program(command[0], env)  # a shell says 127 before anything starts
    received: list[int] = []
    child: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        for proc in child:
            proc.send_signal(signum)

    # Installed before up: a signal that comes while connecting still ends in down.
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    connected = False
    try:
        reply = up(replace(cfg, watch_shell=False), paths, env, watch_pid=os.getpid(),
                   watching="`spacetail run`")  # fmt: skip
        connected = True
        if received:
            return 128 + received[0]
        child_env = {k: v for k, v in env.items() if k not in TAILNET_CREDENTIALS}
        if reply.proxies is not None:
            child_env.update(proxy_variables(reply.proxies.to_json()))
        try:
            child.append(subprocess.Popen(list(command), executable=program, env=child_env))
        except OSError as exc:
            raise OperationFailed(f"run: cannot start {command[0]}: {exc.strerror or exc}") from exc
        for signum in received:  # arrived while the child was being started
            child[0].send_signal(signum)
        code = child[0].wait()
        return 128 - code if code < 0 else code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        done = down(paths, env)
        if connected:  # after a failed up, its own error says it all
            say(sys.stderr, "; ".join(done) if done else "nothing was running")


class ProgramNotFound(OperationFailed):
    exit_code = 127


def _find_program(name: str, env: Mapping[str, str]) -> str:
    """NAME as a shell would find it on the command's PATH; exit 127 when it is not there."""
    if "/" in name:
        found: str | None = name if os.access(name, os.X_OK) and os.path.isfile(name) else None
    else:
        from spacetail.install.locate import which

        found = which(name, env.get("PATH", os.defpath))
    if found is None:
        raise ProgramNotFound(f"run: {name}: command not found (nothing was started)")
    return found
