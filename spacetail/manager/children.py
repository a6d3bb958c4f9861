"""The manager's child processes: started with subprocess, dying with the manager
(PR_SET_PDEATHSIG), each reaped by a thread that reports its exit the moment it happens."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import IO

PR_SET_PDEATHSIG = 1
OUTPUT_LIMIT = 64 * 1024

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
