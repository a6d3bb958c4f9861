"""`spacetail run -- CMD`: up, the command with the tailnet's proxies (and without the
credentials: it needs the tailnet, not the key), then down, whatever happens to the command.

Once up has returned, `run` replaces itself (execve, same process) with a fresh Python started
with the command's own environment: /proc/PID/environ shows what a process was exec'd with,
whatever it later does to os.environ, so a process that merely dropped the credentials from
os.environ would still show them to the command (`cat /proc/$PPID/environ`). The manager keeps
watching the same PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

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
SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What the clean process runs: the caller's sys.path, then cli.run_after_up with the rest.
_BOOT = (
    "import json, sys; a = json.loads(sys.argv[1]); sys.path[:] = a['sys_path']; "
    "from spacetail.cli import run_after_up; raise SystemExit(run_after_up(a))"
)


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

    def note(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    # Installed before up: a signal that comes while connecting still ends in down.
    previous = {s: signal.signal(s, note) for s in SIGNALS}
    connected = False
    try:
        reply = up(replace(cfg, watch_shell=False), paths, env, watch_pid=os.getpid(),
                   watching="`spacetail run`")  # fmt: skip
        connected = True
        child_env = {k: v for k, v in env.items() if k not in TAILNET_CREDENTIALS}
        if reply.proxies is not None:
            child_env.update(proxy_variables(reply.proxies.to_json()))
        # Held from here until the clean process has its handlers: none is lost on the way.
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        if received:
            return 128 + received[0]
        _exec_clean(paths, program, command, child_env)
    finally:  # reached only when up failed or a signal came: the exec does not return
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        for s, handler in previous.items():
            signal.signal(s, handler)
        done = down(paths, env)
        if connected:  # after a failed up, its own error says it all
            say(sys.stderr, "; ".join(done) if done else "nothing was running")


def _exec_clean(
    paths: Paths, program: str, command: Sequence[str], env: dict[str, str]
) -> NoReturn:
    """Become a fresh Python whose environment is ENV (the command's: no credential), which
    runs the command and then down (run_after_up). Returns only by raising."""
    payload = {"sys_path": sys.path, "root": str(paths.root), "runtime": str(paths.runtime),
               "setting": paths.setting, "program": program, "command": list(command)}  # fmt: skip
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    python = sys.executable or "python3"
    try:
        os.execve(python, [python, "-S", "-c", _BOOT, json.dumps(payload)], env)  # noqa: S606
    except OSError as exc:
        raise OperationFailed(
            f"run: cannot start a clean process for {command[0]} ({python}: "
            f"{exc.strerror or exc}); nothing was started"
        ) from exc


def after_up(payload: Mapping[str, Any], *, down: Down) -> int:
    """In the clean process (its environment is the command's): run the command, pass signals
    on, then down. Exit with the command's status."""
    paths = Paths(Path(payload["root"]), Path(payload["runtime"]), payload["setting"])
    command: list[str] = payload["command"]
    child: list[subprocess.Popen[bytes]] = []
    received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        for proc in child:
            proc.send_signal(signum)

    for s in SIGNALS:
        signal.signal(s, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # held ones arrive here
    try:
        if received:
            return 128 + received[0]
        try:
            child.append(subprocess.Popen(command, executable=payload["program"]))
        except OSError as exc:
            raise OperationFailed(f"run: cannot start {command[0]}: {exc.strerror or exc}") from exc
        for signum in received:  # arrived while the child was being started
            child[0].send_signal(signum)
        code = child[0].wait()
        return 128 - code if code < 0 else code
    finally:
        done = down(paths, os.environ)
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
