"""One-shot calls of tailscale's CLI, shared by `doctor` and the waiting for peers: the runner
(the `sh` package, as the design card asks: one call, output captured, no pty, a hard timeout,
an environment without our secrets) and `tailscale ping` through it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spacetail.config.credentials import SECRET_VARIABLES

PING_TIMEOUT = 5.0  # tailscale ping's own --timeout; the command gets 3 s more


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def output(self) -> str:
        return (self.stdout + "\n" + self.stderr).strip()


Runner = Callable[[Sequence[str], float], CommandResult]


def sh_runner(env: Mapping[str, str]) -> Runner:
    """One-shot CLI calls through the `sh` package: no pty (_tty_out=False), a hard timeout, any
    exit status accepted (the doctor reads it), and an environment without our secrets."""
    child_env = {k: v for k, v in env.items() if k not in SECRET_VARIABLES}

    def run(argv: Sequence[str], timeout: float) -> CommandResult:
        import sh

        try:
            done = sh.Command(argv[0])(
                *argv[1:], _tty_out=False, _timeout=timeout, _ok_code=list(range(256)),
                _env=child_env, _return_cmd=True, _in=None,
            )  # fmt: skip
        except sh.TimeoutException:
            return CommandResult(-1, "", f"no answer within {timeout:g} s", timed_out=True)
        except sh.CommandNotFound:
            return CommandResult(127, "", f"{argv[0]}: not found")
        except sh.ErrorReturnCode as exc:  # killed by a signal
            return CommandResult(exc.exit_code, _text(exc.stdout), _text(exc.stderr))
        except OSError as exc:
            return CommandResult(126, "", f"[Errno {exc.errno}] {exc.strerror}: {argv[0]}")
        return CommandResult(done.exit_code, _text(done.stdout), _text(done.stderr))

    return run


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


@dataclass(frozen=True)
class Pong:
    """A peer's answer to `tailscale ping`."""

    peer: str
    ip: str
    via: str  # `DERP(fra)`, or the address of a direct path
    derp: str | None  # the relay's region when the answer came relayed
    latency: str


@dataclass(frozen=True)
class PingResult:
    exit_code: int
    pong: Pong | None
    problem: str  # tailscale's own words when no answer came

    @property
    def answered(self) -> bool:
        return self.pong is not None


_PONG = re.compile(r"pong from (\S+) \(([^)]+)\) via (DERP\(([^)]+)\)|\S+) in ([\d.]+\s*[mµ]?s)")


def ping(
    run: Runner, tailscale: Path, socket_path: Path, peer: str, timeout: float = PING_TIMEOUT
) -> PingResult:
    """One `tailscale ping` of PEER through the one-shot runner (a relayed answer counts): how
    the doctor pings a target, and how a peer is waited for."""
    from spacetail.tailnet.failures import meaningful_line
    from spacetail.tailnet.tailscale import Binaries, ping_argv

    argv = ping_argv(Binaries(tailscale, tailscale), socket_path, peer, timeout)
    result = run(argv, timeout + 3)
    m = _PONG.search(result.stdout)
    if m is None:
        problem = meaningful_line(result.output) or f"exit {result.exit_code}"
        return PingResult(result.exit_code, None, problem)
    pong = Pong(m.group(1), m.group(2), m.group(3), m.group(4), m.group(5))
    return PingResult(result.exit_code, pong, "")
