"""The manager's child processes behind one small interface: tailscaled through subprocess (a
long-lived daemon whose descriptors and death signal must be exact), the short tailscale CLI
commands through sh. A thread reaps each child and reports its exit."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import IO, Any

PR_SET_PDEATHSIG = 1
OUTPUT_LIMIT = 64 * 1024
# Exit codes as sh reports them: -N for death by signal N. Accepting all of them means sh never
# raises; the manager reads the code.
_OK_CODES = list(range(-64, 256))

ExitCallback = Callable[["Child", int], None]


def die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec function: the child gets SIGKILL when the manager dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died before prctl: then nobody would ever send the signal.
        if os.getppid() != parent:
            os._exit(1)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    return preexec


def prefetch_sh() -> None:
    """Import sh in the background: it takes tens of milliseconds, and the first CLI command
    is only needed once tailscaled answers."""
    threading.Thread(target=lambda: __import__("sh"), daemon=True).start()


class Child:
    """A process started with subprocess; `output` holds what it printed when not redirected."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        preexec: Callable[[], None],
        on_exit: ExitCallback,
        stdout: IO[bytes] | None = None,
    ) -> None:
        self._popen = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.STDOUT,
            # The preexec function only calls prctl and getppid: no lock another thread could
            # hold across the fork, which is what makes preexec_fn unsafe in general.
            preexec_fn=preexec,  # noqa: PLW1509
            close_fds=True,
        )
        self.pid = self._popen.pid
        self.exit_code: int | None = None
        self.output = b""
        self._exited = threading.Event()
        self._on_exit = on_exit
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        pipe = self._popen.stdout
        if pipe is not None:
            with pipe:
                while chunk := pipe.read(4096):
                    if len(self.output) < OUTPUT_LIMIT:
                        self.output += chunk
        self.exit_code = self._popen.wait()
        self._exited.set()
        self._on_exit(self, self.exit_code)

    def signal(self, signum: int) -> None:
        # Popen refuses to signal a child it has already reaped, so a recycled PID is safe.
        with contextlib.suppress(ProcessLookupError):
            self._popen.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        return self._exited.wait(timeout)


class ShChild:
    """The same interface over an sh background command (the tailscale CLI)."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        preexec: Callable[[], None],
        on_exit: ExitCallback,
    ) -> None:
        import sh

        self._exited = threading.Event()
        self._on_exit = on_exit
        self.exit_code: int | None = None
        self._cmd: Any = sh.Command(argv[0])(
            *argv[1:],
            _bg=True,
            _bg_exc=False,
            _env=dict(env),
            _in=os.devnull,
            _err_to_out=True,
            _tty_out=False,
            _ok_code=_OK_CODES,
            _preexec_fn=preexec,
            _done=lambda _cmd, _ok, code: self._done(code),
        )
        self.pid: int = self._cmd.pid

    def _done(self, code: int) -> None:
        self.exit_code = code
        self._exited.set()
        self._on_exit(self, code)  # type: ignore[arg-type]

    @property
    def output(self) -> bytes:
        if self.exit_code is None:
            return b""
        try:
            out = self._cmd.stdout
        except Exception:
            return b""
        return out if isinstance(out, bytes) else str(out).encode()

    def signal(self, signum: int) -> None:
        if self.exit_code is None:
            with contextlib.suppress(Exception):
                self._cmd.signal(signum)

    def wait(self, timeout: float) -> bool:
        return self._exited.wait(timeout)


def run_sh(argv: list[str], env: Mapping[str, str], preexec: Callable[[], None],
           timeout: float) -> tuple[int | None, str]:  # fmt: skip
    """Run a short CLI command with sh; (exit code, output), or (None, ...) on timeout."""
    import sh

    result: Any
    try:
        result = sh.Command(argv[0])(
            *argv[1:],
            _env=dict(env),
            _in=os.devnull,
            _err_to_out=True,
            _tty_out=False,
            _ok_code=_OK_CODES,
            _timeout=timeout,
            _timeout_signal=signal.SIGKILL,
            _preexec_fn=preexec,
            _return_cmd=True,
        )
    except sh.TimeoutException:
        return None, ""
    out = result.stdout
    text = out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out)
    return int(result.exit_code), text
