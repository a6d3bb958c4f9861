"""Process identity: a PID from a file is only trusted with the same boot, namespace and start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from spacetail.state import identity


def test_identity_of_self_is_alive() -> None:
    me = identity.ProcessIdentity.of(os.getpid())
    assert me is not None and me.alive()
    assert me.why_not_alive() == "alive"


def test_round_trip_and_garbage() -> None:
    me = identity.ProcessIdentity.of(os.getpid())
    assert me is not None
    assert identity.ProcessIdentity.from_json(me.to_json()) == me
    for junk in (None, 3, "x", {}, {"pid": "a"}, {**me.to_json(), "pid": 1}):
        assert identity.ProcessIdentity.from_json(junk) is None


def changed(ident: identity.ProcessIdentity, **fields: object) -> identity.ProcessIdentity:
    """The identity with some fields changed, as a record from elsewhere would hold it."""
    other = identity.ProcessIdentity.from_json({**ident.to_json(), **fields})
    assert other is not None
    return other


def test_recycled_pid_is_not_the_same_process() -> None:
    me = identity.ProcessIdentity.of(os.getpid())
    assert me is not None
    other = changed(me, start_time=me.start_time - 1)
    assert not other.alive()
    assert "another process" in other.why_not_alive()
    assert identity.ProvenProcess.open(other) is None


def test_other_container_or_boot_is_never_alive() -> None:
    me = identity.ProcessIdentity.of(os.getpid())
    assert me is not None
    assert not changed(me, pid_ns="pid:[1]").alive()
    assert "another container" in changed(me, pid_ns="pid:[1]").why_not_alive()
    assert not changed(me, boot_id="0000").alive()


def running_until_stdin_closes() -> subprocess.Popen[bytes]:
    """A child that lives exactly until we close its stdin: its identity is taken while it runs,
    whatever the scheduler does."""
    return subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def test_exited_process() -> None:
    proc = running_until_stdin_closes()
    ident = identity.ProcessIdentity.of(proc.pid)
    assert ident is not None and ident.alive()
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait()
    assert not ident.alive()


def test_proven_process_signal_and_wait() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ident = identity.ProcessIdentity.of(proc.pid)
        assert ident is not None
        handle = identity.ProvenProcess.open(ident)
        assert handle is not None
        with handle:
            assert not handle.wait(0.05)
            assert handle.signal(15)
            proc.wait(5)
            assert handle.wait(5)
    finally:
        proc.kill()
        proc.wait()


def test_zombie_counts_as_exited() -> None:
    proc = running_until_stdin_closes()
    ident = identity.ProcessIdentity.of(proc.pid)
    assert ident is not None and ident.alive()
    assert proc.stdin is not None
    proc.stdin.close()
    # Not reaped yet: a zombie until wait(); it must not count as running.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    assert identity.start_time(proc.pid) is None
    assert not ident.alive()
    proc.wait()


def test_phase_shell_is_the_outermost_shell() -> None:
    script = (
        "import os, sys; sys.path.insert(0, os.environ['REPO']); "
        "from spacetail.state.identity import phase_shell; print(phase_shell())"
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # outer sh -> inner bash (a "wrapper") -> python: the outer shell is the phase's shell.
    out = subprocess.run(
        ["sh", "-c", 'echo $$; bash -c "$PY -c \\"$SCRIPT\\"; true"; true'],
        env={**os.environ, "PY": sys.executable, "SCRIPT": script, "REPO": repo},
        capture_output=True, text=True, check=True, start_new_session=True,
    )  # fmt: skip
    outer, found = out.stdout.split()
    assert found == outer


def test_phase_shell_without_any_shell_is_the_parent() -> None:
    script = (
        "from spacetail.state.identity import phase_shell; import os; "
        "print(phase_shell(), os.getppid())"
    )
    outer = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {script!r}])"
    out = subprocess.run(
        [sys.executable, "-c", outer],
        capture_output=True, text=True, check=True, start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )  # fmt: skip
    found, parent = out.stdout.split()
    assert found == parent


def test_proc_of_this_namespace_is_trusted() -> None:
    assert identity.proc_mismatch() is None


def test_nothing_is_proven_where_proc_counts_another_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A /proc of another PID namespace (`unshare --pid --fork` without --mount-proc) proves
    nothing, so nothing is signalled: tests/faults/test_host_proc.py has the real one."""
    me = identity.ProcessIdentity.of(os.getpid())
    assert me is not None
    monkeypatch.setitem(identity._PROC_CHECKED, os.getpid(), "/proc belongs to another one")
    assert identity.start_time(os.getpid()) is None
    assert identity.ProcessIdentity.of(os.getpid()) is None
    assert identity.ProvenProcess.open(me) is None
