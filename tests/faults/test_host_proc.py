"""A PID namespace that still shows the host's /proc (`unshare --pid --fork` without
--mount-proc): there /proc numbers processes as the host does while getpid, kill and pidfd_open
use the namespace's numbers, so whatever spacetail read in /proc would be about other processes.
`up` refuses in one line and leaves nothing; with a /proc of the namespace's own, the shell's
exit ends the manager within its 2 seconds, as anywhere else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faultkit import ask, daemons, figure, host_pid, marked, record_path, sock_path
from tests.helpers import Userland, wait_gone
from tests.waiting import poll

pytestmark = pytest.mark.userns

SHELL_EXIT_WITHIN = 2.0

# PID 1 of the namespace: starts the phase's shell as uid 1983, which runs `spacetail up` and
# then waits on its standard input; says how `up` went; ends the shell when told (a line on
# its own standard input), says when the shell is gone, and stays until its input closes, so
# that the namespace (and whatever a broken manager left in it) lives until the test is done.
INIT = textwrap.dedent(
    """
    import json, subprocess, sys
    spacetail = sys.argv[1]
    script = '"$0" up 2>&1; echo "rc=$?"; read line'
    shell = subprocess.Popen(["sh", "-c", script, spacetail], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, user=1983, group=1983,
                             extra_groups=[])
    out = []
    for line in shell.stdout:
        if line.startswith("rc="):
            rc = int(line[3:])
            break
        out.append(line)
    print(json.dumps({"shell": shell.pid, "rc": rc, "out": "".join(out)}), flush=True)
    sys.stdin.readline()
    shell.stdin.close()
    shell.wait()
    print("shell exited", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def container(
    request: pytest.FixtureRequest, userland: Userland, fake_env: dict[str, str]
) -> Iterator[subprocess.Popen[str]]:
    if os.getuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for PID namespaces")
    mount_proc = ["--mount-proc"] if request.param else []
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", *mount_proc, "--kill-child", userland.python, "-c", INIT,
         str(userland.spacetail)],
        env=fake_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()


def started(container: subprocess.Popen[str]) -> dict[str, Any]:
    assert container.stdout is not None
    line = container.stdout.readline()
    assert line, "the namespace's init said nothing"
    result: dict[str, Any] = json.loads(line)
    return result


def launched(cmd: str) -> bool:
    """A spacetail command (`python .../bin/spacetail ...`), not the init that names it."""
    parts = cmd.split()
    return len(parts) > 1 and parts[1].endswith("/bin/spacetail")


def nothing_left(env: dict[str, str]) -> None:
    """No manager, no tailscaled, no socket, no record: in the namespace only its init is left."""

    def spacetails() -> list[str]:
        return [c for _p, c in marked(env) if launched(c)]

    poll(lambda: not spacetails() and not daemons(env), 5, lambda: f"left: {marked(env)}")
    assert not sock_path(env).exists() and not record_path(env).exists()


def end_shell(container: subprocess.Popen[str]) -> float:
    """Tell init to end the phase's shell; the moment it has reaped it."""
    assert container.stdin is not None and container.stdout is not None
    container.stdin.write("exit\n")
    container.stdin.flush()
    assert container.stdout.readline().strip() == "shell exited"
    return time.monotonic()


@pytest.mark.parametrize("container", [False], indirect=True, ids=["host-proc"])
def test_up_refuses_where_proc_is_not_the_namespaces(
    userland: Userland, fake_env: dict[str, str], container: subprocess.Popen[str]
) -> None:
    """(Before: `up` succeeded, the manager watched PID 2 (in /proc's numbering) instead of the
    shell, and stayed connected after the shell had exited, until its maximum lifetime.)"""
    result = started(container)
    out = result["out"].strip()
    assert result["rc"] == 1, out
    assert "\n" not in out and "Traceback" not in out, out
    assert "/proc belongs to another PID namespace" in out, out
    assert "mount a /proc of this namespace (unshare --pid --fork --mount-proc" in out, out
    nothing_left(fake_env)
    end_shell(container)


@pytest.mark.parametrize("container", [True], indirect=True, ids=["own-proc"])
def test_the_shells_exit_ends_the_manager_where_proc_is_the_namespaces(
    userland: Userland, fake_env: dict[str, str], container: subprocess.Popen[str]
) -> None:
    result = started(container)
    assert result["rc"] == 0, result["out"]
    reply = ask(fake_env)
    assert reply is not None and reply["watch_pid"] == result["shell"], reply
    manager = host_pid(fake_env, int(reply["manager_pid"]), "spacetail")
    exited = end_shell(container)
    assert wait_gone(manager, SHELL_EXIT_WITHIN + 3), "the manager outlived the shell"
    took = time.monotonic() - exited
    figure("manager_gone_after_the_shell_in_a_pid_namespace", took)
    assert took <= SHELL_EXIT_WITHIN + 0.2, f"{took:.2f}s"
    nothing_left(fake_env)
