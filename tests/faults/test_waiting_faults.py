"""Waiting beyond Running under attack (issue 28 items 3 and 4): targets that never complete a
handshake (each held the others and the progress line for its 3 s), and a manager that dies
while `up` waits, its freed SOCKS5 port taken by another uid that answers every CONNECT."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time

from tests.faultkit import figure
from tests.helpers import SPACELIFT_UID, Userland
from tests.loopback import blackhole


class Stamped:
    """A spacetail command as the Spacelift user, its stderr lines stamped as they come."""

    def __init__(self, userland: Userland, env: dict[str, str], *args: str) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(userland.spacetail), *args], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
            user=SPACELIFT_UID, group=SPACELIFT_UID, extra_groups=[],
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        self.stdout = ""
        self.readers = [threading.Thread(target=self._errors), threading.Thread(target=self._out)]
        for reader in self.readers:
            reader.start()

    def _errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def _out(self) -> None:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()

    def finish(self, timeout: float) -> tuple[int, float]:
        """Its exit code and how long it ran."""
        try:
            code = self.proc.wait(timeout)
        finally:
            self.proc.kill()
            for reader in self.readers:
                reader.join(10)
        return code, time.monotonic() - self.started

    def stderr(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def said(self, words: str) -> list[tuple[float, str]]:
        return [(at, line) for at, line in self.lines if words in line]


def test_ten_silent_targets_still_get_a_line_every_5s(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    """Issue 28 item 3: each target was dialled in turn for up to 3 s and the line every 5 s
    came only between rounds (4 silent targets: the first line at 12.7 s; 10: none before the
    error). Ten blackholed targets (their handshakes never complete) and --timeout 12: a line at
    5 s and 10 s naming all ten, the failure at 12 s naming them with their last words."""
    with contextlib.ExitStack() as holes:
        ports = [holes.enter_context(blackhole()) for _ in range(10)]
        targets = [arg for port in ports for arg in ("--wait-for", f"127.0.0.1:{port}")]
        up = Stamped(userland, fake_env, "up", "--no-watch", "--timeout", "12", *targets)
        code, took = up.finish(60)
    lines = up.said("waiting for targets")
    figure("ten_silent_targets_first_line", lines[0][0] if lines else -1)
    figure("ten_silent_targets_up_fails_after", took)
    assert code == 1, up.stderr()
    assert [at for at, _ in lines] and lines[0][0] < 5.0 + 1.0, up.stderr()
    assert len(lines) == 2 and lines[1][0] - lines[0][0] < 5.0 + 1.0, up.stderr()
    assert all(f"127.0.0.1:{port} (" in lines[0][1] for port in ports), lines[0][1]
    error = up.said("spacetail: error: no TCP connection")[0][1]
    assert all(f"127.0.0.1:{port}: " in error for port in ports), error
    assert "no answer yet" not in error  # each was asked, and said why
    assert 12.0 <= took < 12.0 + 3.0  # then what it started is stopped
    assert up.stdout == ""
