"""Promises under attack (issue: "keep every promise under attack"): a process of another PID
namespace is never signalled, "Running, or nothing left" holds against silent peers, signals,
a logout behind spacetail's back and a second `up`, the manager does not spin out of file
descriptors, a read-only or full workspace ends cleanly, and a frozen tailscaled does not stretch
the shutdown past its 2 seconds. Each test failed on the code before its fix."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faultkit import (
    alive,
    ask,
    assert_clean,
    concurrent_status,
    daemons,
    fill_disk,
    host_pid,
    in_phase,
    logs,
    marked,
    popen,
    sleeper,
    sock_path,
    stopped_after,
    tmpfs,
    up_ok,
)
from tests.helpers import SPACELIFT_UID, Userland, st, status, wait_gone
from tests.status_contract import validate
from tests.waiting import poll

pytestmark = pytest.mark.userns

# --- 1. a manager of another PID namespace --------------------------------------------------

CONTAINER = textwrap.dedent(
    """
    import json, os, subprocess, sys
    spacetail, role, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    env = dict(os.environ)
    user = dict(user=1983, group=1983, extra_groups=[])

    def st(*args):
        r = subprocess.run([spacetail, *args], env=env, capture_output=True, text=True,
                           timeout=60, **user)
        return {"rc": r.returncode, "out": r.stdout, "err": r.stderr}

    if role == "a":
        result = st("up", "--no-watch")
        result["status"] = json.loads(st("status", "--json")["out"])
        print(json.dumps(result), flush=True)
        sys.stdin.read()  # until the test is done: then this PID 1 exits and takes all along
    else:
        target, owner = int(arg), sys.argv[4]
        keep = None
        while keep is None:  # PIDs are handed out in order in a new namespace
            p = subprocess.Popen(["sleep", "300"], **(user if owner == "user" else {}))
            if p.pid == target:
                keep = p
            elif p.pid > target:
                print(json.dumps({"error": f"pid {target} passed"}), flush=True)
                sys.exit(1)
            else:
                p.kill()
                p.wait()
        out = {"status": st("status", "--json"), "up": st("up", "--no-watch"),
               "wait": st("wait", "--timeout", "2"), "down": st("down")}
        out["bystander_alive"] = keep.poll() is None
        keep.kill()
        keep.wait()
        print(json.dumps(out), flush=True)
    """
)


def _container(userland: Userland, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", userland.python, "-c",
         CONTAINER, str(userland.spacetail), *args],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd="/",
    )  # fmt: skip


@pytest.mark.parametrize("owner", ["user", "root"])
def test_down_in_another_pid_namespace_never_signals_a_stranger(
    userland: Userland, fake_env: dict[str, str], owner: str
) -> None:
    """Container A runs a manager; container B shares the state folder and has its own,
    unrelated process with the manager's PID number. B's status, up and wait must not take
    A's manager for theirs, and B's down asks A's manager over the socket: B's process lives."""
    if os.getuid() != 0:
        pytest.skip("needs root for PID namespaces")
    a = _container(userland, fake_env, "a", "-")
    try:
        assert a.stdout is not None
        started = json.loads(a.stdout.readline())
        assert started["rc"] == 0, started["err"]
        target = int(started["status"]["manager_pid"])
        host_manager = host_pid(fake_env, target, "spacetail")
        b = _container(userland, fake_env, "b", str(target), owner)
        out, err = b.communicate(timeout=90)
        result: dict[str, Any] = json.loads(out.splitlines()[-1]) if out.strip() else {"error": err}
        assert "error" not in result, result
        assert result["bystander_alive"], f"down killed B's pid {target}: {result['down']}"
        shown = validate(json.loads(result["status"]["out"]))  # the contract holds here too
        assert shown.get("foreign") is True and "another container" in shown["problem"]
        assert result["up"]["rc"] == 1 and "another container" in result["up"]["err"]
        assert result["wait"]["rc"] == 1 and "another container" in result["wait"]["err"]
        assert result["down"]["rc"] == 0, result["down"]["err"]
        assert "Traceback" not in result["down"]["err"] + result["up"]["err"]
        assert "asked a manager of another container" in result["down"]["err"]
        assert wait_gone(host_manager, 5), "A's manager was asked to stop and did not"
    finally:
        if a.stdin:
            a.stdin.close()
        a.wait(timeout=30)
    assert_clean(userland, fake_env)


# --- 3. Running, or nothing left ---------------------------------------------------------------


def test_up_whose_peer_never_answers_leaves_nothing(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    started = time.monotonic()
    result = st(userland, fake_env, "up", "--no-watch", "--peer", "nosuchpeer", "--timeout", "3")
    took = time.monotonic() - started
    assert result.returncode == 1 and "did not answer" in result.stderr, result.stderr
    assert not marked(fake_env), "up failed on its peer but left processes running"
    # The node runs: what this up started is asked to stop at once, not after a wait for it to
    # stop by itself as after a failed login (about 3.5 s now, 4.5 s with that wait; the bound
    # leaves a loaded machine its slack).
    assert took < 3 + 1.5, f"up took {took:.1f}s for --timeout 3"
    assert_clean(userland, fake_env)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_a_waiting_up_stops_what_it_started(
    userland: Userland, fake_env: dict[str, str], signum: signal.Signals
) -> None:
    env = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "20"}
    proc = subprocess.Popen(
        [str(userland.spacetail), "up", "--env", "--no-watch"], env=env, cwd="/",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        user=SPACELIFT_UID, group=SPACELIFT_UID, extra_groups=[],
    )  # fmt: skip
    try:
        poll(lambda: (ask(env) or {}).get("phase") == "login", 15, "login under way")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signum, err
    assert out.strip().endswith("false"), out  # the hook's eval fails too
    assert f"interrupted by {signum.name}" in err
    poll(lambda: not marked(env), 3, lambda: f"nothing left: {marked(env)}")
    assert_clean(userland, env)


def test_logout_behind_the_managers_back_logs_in_again(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    with stopped_after(userland, fake_env):
        info = up_ok(userland, fake_env)
        fake_cli = userland.fakes / "tailscale"
        subprocess.run(
            [str(fake_cli), f"--socket={info['tailscaled_socket']}", "logout"], env=fake_env,
            check=True, timeout=10, user=SPACELIFT_UID, group=SPACELIFT_UID, extra_groups=[],
        )  # fmt: skip

        def back() -> dict[str, Any] | None:
            s = ask(fake_env)
            ok = s and s["backend_state"] == "Running" and s["login_attempts"] == 2
            return s if ok else None

        poll(back, 10, lambda: f"logged in again; now {ask(fake_env)}")
        assert st(userland, fake_env, "wait", "--timeout", "5").returncode == 0
        assert "logging in again" in logs(userland, fake_env)
    assert_clean(userland, fake_env)


def test_a_second_up_with_a_short_timeout_does_not_stop_the_first(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    env = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "5"}
    with stopped_after(userland, env):
        first = subprocess.Popen(
            [str(userland.spacetail), "up", "--no-watch", "--timeout", "60"], env=env, cwd="/",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, user=SPACELIFT_UID, group=SPACELIFT_UID, extra_groups=[],
        )  # fmt: skip
        try:
            poll(lambda: (ask(env) or {}).get("phase") == "login", 15, "login under way")
            started = time.monotonic()
            second = st(userland, env, "up", "--no-watch", "--timeout", "2")
            took = time.monotonic() - started
            assert second.returncode == 1
            assert "already running goes on" in second.stderr, second.stderr
            assert took < 2 + 1, f"the joining up took {took:.1f}s for --timeout 2"
            _, err = first.communicate(timeout=30)
            assert first.returncode == 0, err
        finally:
            first.kill()
            first.wait()
        assert status(userland, env)["backend_state"] == "Running"
    assert_clean(userland, env)


def test_longest_timeout_is_accepted_end_to_end(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    with stopped_after(userland, fake_env):
        result = st(userland, fake_env, "up", "--no-watch", "--no-wait", "--timeout", "24h")
        assert result.returncode == 0, result.stderr
    too_long = st(userland, fake_env, "up", "--no-watch", "--timeout", "86401")
    assert too_long.returncode == 2 and too_long.stderr.count("\n") == 1
    assert "--timeout: '86401' is too long; at most 86400 seconds" in too_long.stderr
    assert_clean(userland, fake_env)


# --- 5. out of file descriptors ---------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _soft_nofile(pid: int, limit: int) -> None:
    """Set PID's soft limit on descriptors, as its own uid (root may lack CAP_SYS_RESOURCE)."""
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:"], check=True,
                   user=SPACELIFT_UID, group=SPACELIFT_UID, extra_groups=[])  # fmt: skip


def test_out_of_descriptors_the_manager_backs_off(
    userland: Userland, fake_env: dict[str, str]
) -> None:

    with stopped_after(userland, fake_env):
        info = up_ok(userland, fake_env)
        manager = int(info["manager_pid"])
        open_fds = len(os.listdir(f"/proc/{manager}/fd"))
        _soft_nofile(manager, open_fds)
        log = Path(info["state_dir"]) / "manager.log"
        lines_before = log.read_text().count("\n")
        cpu_before = _cpu_seconds(manager)
        clients = []
        try:
            for _ in range(5):
                c = socket.socket(socket.AF_UNIX)
                c.connect(str(Path(info["tailscaled_socket"]).with_name("control.sock")))
                clients.append(c)
            window = time.monotonic() + 2.0  # a measurement window, not a synchronization
            while time.monotonic() < window:
                time.sleep(0.1)
            cpu = _cpu_seconds(manager) - cpu_before
            added = log.read_text().count("\n") - lines_before
        finally:
            for c in clients:
                c.close()
            _soft_nofile(manager, 1024)
        assert cpu < 0.3, f"the manager spun: {cpu:.2f}s of CPU in 2 s"
        assert added < 20, f"{added} log lines in 2 s"
        assert "out of file descriptors" in logs(userland, fake_env)
        assert alive(manager)
        assert poll(lambda: ask(fake_env), 5, "the manager answers again")
    assert_clean(userland, fake_env)


# --- 6. read-only and full workspaces -------------------------------------------------------


def test_down_on_a_workspace_turned_read_only_stops_everything(
    userland: Userland, fake_env: dict[str, str], home: Path
) -> None:
    with tmpfs(home / "ws", "1m") as ws:
        env = {**fake_env, "SPACETAIL_DIR": str(ws / ".spacetail")}
        up_ok(userland, env)
        # A read-only bind mount over the volume: the manager's open logs keep writing to the
        # volume underneath, everything reached by path is read-only (as after a remount).
        subprocess.run(["mount", "--bind", str(ws), str(ws)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(ws)], check=True)
            result = st(userland, env, "down")
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr and "stopped manager" in result.stderr
            poll(lambda: not marked(env), 3, lambda: f"nothing left: {marked(env)}")
        finally:
            subprocess.run(["umount", str(ws)], check=True)
        assert "logged out" in logs(userland, env)


def test_full_disk_during_a_restart_still_restarts(
    userland: Userland, fake_env: dict[str, str], home: Path
) -> None:
    with tmpfs(home / "ws", "256k") as ws:
        env = {**fake_env, "SPACETAIL_DIR": str(ws / ".spacetail")}
        with stopped_after(userland, env):
            info = up_ok(userland, env)
            fill_disk(ws)
            old = int(info["tailscaled_pid"])
            os.kill(old, signal.SIGKILL)

            def restarted() -> dict[str, Any] | None:
                s = ask(env)
                ok = s and s["backend_state"] == "Running" and s["tailscaled_pid"] != old
                return s if ok else None

            poll(restarted, 15, lambda: f"restarted on a full disk; now {ask(env)}")
            assert len(daemons(env)) == 1
            os.unlink(ws / "filler")
        assert_clean(userland, env)


# --- 8. a frozen tailscaled -------------------------------------------------------------------


def test_shutdown_with_a_frozen_tailscaled_takes_under_2_seconds(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    env = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "30"}
    shell = sleeper(env)
    try:
        assert st(userland, env, "up", "--no-wait", "--watch-pid", str(shell.pid)).returncode == 0
        info = poll(lambda: in_phase(env, "login"), 10, "login under way")
        manager, tailscaled = int(info["manager_pid"]), int(info["tailscaled_pid"])
        os.kill(tailscaled, signal.SIGSTOP)
        shell.kill()
        started = time.monotonic()
        shell.wait()
        assert wait_gone(manager, 5)
        took = time.monotonic() - started
        print(f"\nFIGURE shutdown_with_frozen_tailscaled {took:.3f}s")
        assert took <= 2.0, f"shutdown took {took:.2f}s with a frozen tailscaled"
    finally:
        shell.kill()
        shell.wait()
    assert_clean(userland, env)


def test_a_frozen_tailscaled_never_stalls_an_answer(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    """The manager answers from what it knows: 50 clients asking at once while tailscaled is
    SIGSTOPped each get the status within 100 ms, and the shell's exit still ends it all within
    2 s (each status used to ask the frozen LocalAPI, 0.5 s each, one after the other)."""
    shell = sleeper(fake_env)
    try:
        up = st(userland, fake_env, "up", "--watch-pid", str(shell.pid))
        assert up.returncode == 0, up.stderr
        info = status(userland, fake_env)
        manager = int(info["manager_pid"])
        os.kill(int(info["tailscaled_pid"]), signal.SIGSTOP)
        times = concurrent_status(sock_path(fake_env), 50)
        slowest = max(times)
        print(f"\nFIGURE status_x50_frozen_tailscaled max {slowest * 1000:.1f}ms")
        assert slowest <= 0.1, f"slowest of 50 answers took {slowest * 1000:.0f} ms"
        shell.kill()
        started = time.monotonic()
        shell.wait()
        assert wait_gone(manager, 5)
        took = time.monotonic() - started
        assert took <= 2.0, f"shutdown took {took:.2f}s after the shell's exit"
    finally:
        shell.kill()
        shell.wait()
    assert_clean(userland, fake_env)


def test_up_with_a_frozen_tailscaled_keeps_its_timeout(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    env = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "30"}
    started = time.monotonic()
    proc = popen(userland, env, "up", "--no-watch", "--timeout", "4")
    try:
        info = poll(lambda: in_phase(env, "login"), 10, "login under way")
        os.kill(int(info["tailscaled_pid"]), signal.SIGSTOP)
        proc.wait(timeout=15)
        took = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    print(f"\nFIGURE up_timeout_4_with_frozen_tailscaled {took:.3f}s")
    assert proc.returncode == 1
    assert took <= 4 + 1, f"up --timeout 4 took {took:.2f}s"
    assert_clean(userland, env)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
