"""Fault injection with real processes, signals and files: tailscaled and the manager killed at
chosen points, commands killed mid-way, hostile files in the state folder, a read-only and a full
workspace, and up/down/status/wait racing from many processes.

Every wait is a poll for a condition with a deadline, or a pidfd; figures worth reporting are
printed as `FIGURE name value` lines (run with -s to see them; docs/faults.md quotes them)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from spacetail.state.identity import ProcessIdentity
from tests.faultkit import (
    alive,
    ask,
    assert_clean,
    children_of,
    chown_user,
    daemons,
    down_ok,
    figure,
    fill_disk,
    in_phase,
    logs,
    managers,
    marked,
    popen,
    record_path,
    remount,
    sock_path,
    state_dir,
    stopped_after,
    tmpfs,
    up_ok,
)
from tests.helpers import SPACELIFT_UID, Userland, st, status, wait_gone
from tests.waiting import poll

# --- 1. supervision -----------------------------------------------------------------------


def test_sigkill_of_tailscaled_while_running_is_restarted(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    with stopped_after(userland, fake_env):
        before = up_ok(userland, fake_env)
        old = int(before["tailscaled_pid"])
        assert before["restarts"] == 0 and before["last_exit"] is None
        started = time.monotonic()
        os.kill(old, signal.SIGKILL)
        assert wait_gone(old, 5)

        def restarted() -> dict[str, Any] | None:
            s = ask(fake_env)
            ok = s and s["phase"] == "running" and s["tailscaled_pid"] not in (None, old)
            return s if ok else None

        poll(restarted, 20, "tailscaled restarted and Running again")
        figure("restart_after_sigkill", time.monotonic() - started)
        after = status(userland, fake_env)  # what the user sees
        assert after["restarts"] == 1
        assert after["last_exit"] == "tailscaled killed by SIGKILL"
        assert after["backend_state"] == "Running" and after["manager_pid"] == before["manager_pid"]
        assert len(daemons(fake_env)) == 1
        assert st(userland, fake_env, "wait", "--timeout", "5").returncode == 0
        assert "restarting tailscaled in" in logs(userland, fake_env)
    assert_clean(userland, fake_env)


# The manager's restart schedule (docs/faults.md #2): min(8, 0.5 * 2 ** (n - 1)) s before restart
# n, no jitter, at most 5 restarts.
CRASH_BACKOFF = tuple(min(8.0, 0.5 * 2 ** (n - 1)) for n in range(1, 6))


def test_tailscaled_crashing_repeatedly_ends_in_failed(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    env = {**fake_env, "FAKE_TAILSCALED_CRASH_AFTER": "0.3", "FAKE_TAILSCALE_LOGIN_DELAY": "0.1"}
    with stopped_after(userland, env):
        first = up_ok(userland, env)
        manager = int(first["manager_pid"])
        started = time.monotonic()

        def failed() -> dict[str, Any] | None:
            s = ask(env)
            return s if s and s["phase"] == "failed" else None

        poll(failed, 60, lambda: f"the manager gives up; now {ask(env)}\n{logs(userland, env)}")
        took = time.monotonic() - started
        figure("crash_loop_until_failed", took)
        # The backoff really waited: 0.5, 1, 2, 4, 8 s between the restarts (a loop without it
        # ends in a few seconds and still counts 5 restarts).
        delays = [
            float(d) for d in re.findall(r"restarting tailscaled in ([\d.]+)s", logs(userland, env))
        ]
        assert delays == list(CRASH_BACKOFF), delays
        assert took >= sum(CRASH_BACKOFF), f"{took:.1f}s for backoffs of {sum(CRASH_BACKOFF)}s"
        info = status(userland, env)
        assert info["phase"] == "failed" and info["manager_pid"] == manager
        assert info["restarts"] == 5  # MAX_RESTARTS: bounded
        assert info["last_exit"] == "tailscaled exited with status 1"
        reason = str(info["reason"])
        assert "could not be kept running (5 restarts)" in reason, reason
        assert "\n" not in reason and "Traceback" not in reason
        assert daemons(env) == []  # no tailscaled left while failed
        waited = st(userland, env, "wait", "--timeout", "5")
        assert waited.returncode == 1
        assert "the tailnet is not usable" in waited.stderr and "could not be kept" in waited.stderr
        down = down_ok(userland, env)
        assert f"stopped manager pid {manager}" in down
    assert_clean(userland, env)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_manager_signal_is_a_clean_shutdown(
    userland: Userland, fake_env: dict[str, str], signum: signal.Signals
) -> None:
    with stopped_after(userland, fake_env):
        info = up_ok(userland, fake_env)
        manager, tailscaled = int(info["manager_pid"]), int(info["tailscaled_pid"])
        started = time.monotonic()
        os.kill(manager, signum)
        assert wait_gone(manager, 10), "the manager did not exit"
        figure(f"shutdown_on_{signum.name}", time.monotonic() - started)
        assert wait_gone(tailscaled, 1), "tailscaled outlived the manager"
        assert_clean(userland, fake_env)
        text = logs(userland, fake_env)
        assert f"stopping: received {signum.name}" in text
        assert f"manager {manager} stopped" in text and "logged out" in text
        assert "nothing was running" in down_ok(userland, fake_env)


def test_manager_sigkill_takes_tailscaled_along_and_down_cleans(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    with stopped_after(userland, fake_env):
        info = up_ok(userland, fake_env)
        manager, tailscaled = int(info["manager_pid"]), int(info["tailscaled_pid"])
        started = time.monotonic()
        os.kill(manager, signal.SIGKILL)
        assert wait_gone(manager, 5)
        assert wait_gone(tailscaled, 5), "tailscaled outlived a SIGKILLed manager"
        figure("tailscaled_gone_after_manager_sigkill", time.monotonic() - started)
        assert record_path(fake_env).exists()  # what a killed manager leaves
        stale = status(userland, fake_env)
        assert stale["running"] is False and stale["stale"]
        assert f"pid {manager} has exited" in stale["stale"]
        down = down_ok(userland, fake_env)
        assert "removed stale" in down and "manager.json" in down and "control.sock" in down
        assert_clean(userland, fake_env)
        again = up_ok(userland, fake_env)
        assert again["backend_state"] == "Running" and again["restarts"] == 0
        down_ok(userland, fake_env)
    assert_clean(userland, fake_env)


# --- 2. SIGKILL at chosen points ----------------------------------------------------------


def _settled(env: dict[str, str]) -> str:
    """After `up` was killed: the manager is complete (answers, one of it) or absent."""

    def decided() -> str | None:
        if not marked(env):
            return "absent"
        found = managers(env)
        s = ask(env)
        if s and s["phase"] in ("login", "running") and found == [s["manager_pid"]]:
            return "complete"
        return None

    return poll(decided, 15, "the manager complete or absent")


@pytest.mark.parametrize("point", ["forked", "record", "login"])
def test_sigkill_of_up_leaves_the_manager_complete_or_absent(
    userland: Userland, fake_env: dict[str, str], point: str
) -> None:
    """forked: the instant up's first child exists (the socket is bound, the manager not started;
    freezing that child instead would get it a SIGHUP from the kernel as its process group is
    orphaned); record: the manager wrote manager.json; login: up waits while tailscale logs in."""
    env = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "2"}
    with stopped_after(userland, env):
        proc = popen(userland, env, "up", "--no-watch")
        record_before_kill = grandchild = False
        try:
            if point == "forked":
                # No sleep between looks here: the window is a few milliseconds wide, and on a
                # loaded machine this loop may not run at all while it is open. Then up is
                # killed at the first look after it (the record is there): the promise, complete
                # or absent, is checked all the same.
                deadline = time.monotonic() + 15
                while not (kids := children_of(proc.pid)):
                    if record_path(env).exists():
                        break
                    assert time.monotonic() < deadline, "up neither forked nor wrote its record"
                os.kill(proc.pid, signal.SIGKILL)
                record_before_kill = record_path(env).exists()
                grandchild = bool(kids) and bool(children_of(kids[0]))
            elif point == "record":
                poll(record_path(env).exists, 15, "manager.json written")
            else:
                poll(lambda: (ask(env) or {}).get("phase") == "login", 15, "login under way")
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(5) == -signal.SIGKILL
        finally:
            proc.kill()
            proc.wait()
        outcome = _settled(env)
        if point == "forked":
            print(f"\nkill point forked: record existed {record_before_kill}, manager forked "
                  f"{grandchild}; outcome {outcome}")  # fmt: skip
        else:
            print(f"\nkill point {point}: {outcome}")
        if outcome == "complete":
            assert st(userland, env, "wait", "--timeout", "20").returncode == 0
            again = st(userland, env, "up", "--no-watch")
            assert again.returncode == 0 and "already runs" in again.stderr, again.stderr
        else:
            up_ok(userland, env)
        assert len(managers(env)) == 1 and len(daemons(env)) == 1
        down_ok(userland, env)
        assert_clean(userland, env)
        up_ok(userland, env)  # and the next cycle works too
        down_ok(userland, env)
    assert_clean(userland, env)


def test_sigkill_of_manager_during_login(userland: Userland, fake_env: dict[str, str]) -> None:
    # The CLI holds the key (FAKE_TAILSCALE_UP_DELAY) so that the state never reaches Starting,
    # when the manager would remove the file itself: the kill surely finds it there.
    slow = {**fake_env, "FAKE_TAILSCALE_LOGIN_DELAY": "60", "FAKE_TAILSCALE_UP_DELAY": "60",
            "SPACETAIL_TIMEOUT": "90"}  # fmt: skip
    secrets = Path(fake_env["XDG_RUNTIME_DIR"]) / "spacetail"
    with stopped_after(userland, fake_env):
        assert st(userland, slow, "up", "--no-wait", "--no-watch").returncode == 0
        info = poll(lambda: in_phase(slow, "login"), 15, "logging in")
        manager = int(info["manager_pid"])
        left = poll(lambda: list(secrets.glob("k-*/auth-*")), 5, "the key file of the attempt")
        children = [pid for pid, _ in marked(slow) if pid != manager]
        assert len(children) == 2  # tailscaled and `tailscale up`
        os.kill(manager, signal.SIGKILL)
        assert wait_gone(manager, 5)
        for pid in children:
            assert wait_gone(pid, 5), f"pid {pid} outlived the manager"
        assert all(p.exists() for p in left)  # a SIGKILL leaves the key file: down removes it
        down = down_ok(userland, fake_env)
        assert "removed stale" in down and "auth-" in down
        assert not list(secrets.glob("k-*/*"))
        assert_clean(userland, fake_env)
        up_ok(userland, fake_env)
        down_ok(userland, fake_env)
    assert_clean(userland, fake_env)


LOGOUT_LIMIT = 1.0  # the manager gives `tailscale logout` 1 s (docs/faults.md #8)
TERM_GRACE = 0.8  # then tailscaled gets 0.8 s after SIGTERM before SIGKILL (docs/faults.md #9)


@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["term", "ignores-term"])
def test_sigkill_of_down_while_the_manager_stops(
    userland: Userland, fake_env: dict[str, str], ignore_sigterm: bool
) -> None:
    env = {**fake_env, "FAKE_TAILSCALE_LOGOUT_DELAY": "0.5"}
    if ignore_sigterm:
        env["FAKE_TAILSCALED_IGNORE_SIGTERM"] = "1"
    with stopped_after(userland, env):
        info = up_ok(userland, env)
        manager, tailscaled = int(info["manager_pid"]), int(info["tailscaled_pid"])
        down = popen(userland, env, "down")
        try:
            # The manager removes its socket as its shutdown begins.
            poll(lambda: not sock_path(env).exists(), 15, "the manager stopping")
            started = time.monotonic()
            os.kill(down.pid, signal.SIGKILL)
            assert down.wait(5) == -signal.SIGKILL
        finally:
            down.kill()
            down.wait()
        assert alive(manager), "the manager had already finished: no shutdown to interrupt"
        assert wait_gone(manager, 10), "the manager did not finish its shutdown"
        took = time.monotonic() - started
        figure(f"shutdown_{'sigkill_path' if ignore_sigterm else 'sigterm_path'}", took)
        # Its worst case: the logout's limit, then tailscaled's SIGTERM grace before SIGKILL;
        # 0.5 s of slack for the measurement on a loaded machine.
        assert took <= LOGOUT_LIMIT + TERM_GRACE + 0.5, f"shutdown took {took:.2f}s"
        assert wait_gone(tailscaled, 1)
        assert_clean(userland, env)
        text = logs(userland, env)
        assert ("SIGTERM: SIGKILL" in text) == ignore_sigterm
        assert f"manager {manager} stopped" in text
        assert "nothing was running" in down_ok(userland, env)
        up_ok(userland, env)
        down_ok(userland, env)
    assert_clean(userland, env)


# --- 4. files -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["root-owned", "world-writable", "group-writable", "symlink"])
def test_unsafe_state_folder_is_refused_with_the_fix(
    userland: Userland, fake_env: dict[str, str], home: Path, kind: str
) -> None:
    folder = state_dir(fake_env)
    if kind == "symlink":
        real = home / "elsewhere"
        real.mkdir(mode=0o700)
        chown_user(real)
        folder.symlink_to(real)
        chown_user(folder)
    else:
        folder.mkdir()
        if kind != "root-owned":
            chown_user(folder)
        folder.chmod({"root-owned": 0o755, "world-writable": 0o777, "group-writable": 0o770}[kind])
    result = st(userland, fake_env, "up", "--no-watch")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "spacetail: error: SPACETAIL_DIR: "
    )
    fix = {
        "root-owned": "belongs to uid 0, not to you (uid 1983); point SPACETAIL_DIR at a folder",
        "world-writable": f"writable by other users (mode 777); run: chmod 700 {folder}",
        "group-writable": f"writable by other users (mode 770); run: chmod 700 {folder}",
        "symlink": "is not a plain folder (a symlink or a file)",
    }[kind]
    assert fix in result.stderr
    assert not marked(fake_env) and not sock_path(fake_env).exists()
    if kind == "symlink":
        assert os.listdir(home / "elsewhere") == []


def plant_symlink(env: dict[str, str], home: Path, name: str) -> tuple[Path, Path]:
    """A state folder of the user's whose NAME is a symlink to a precious file of theirs."""
    folder = state_dir(env)
    folder.mkdir(mode=0o700)
    chown_user(folder)
    victim = home / "victim"
    victim.write_text("precious\n")
    chown_user(victim)
    (folder / name).symlink_to(victim)
    chown_user(folder / name)
    return folder, victim


@pytest.mark.parametrize("name", ["manager.json", "control.sock", "tailscaled.sock"])
def test_symlink_at_socket_or_record_is_replaced_not_followed(
    userland: Userland, fake_env: dict[str, str], home: Path, name: str
) -> None:
    folder, victim = plant_symlink(fake_env, home, name)
    with stopped_after(userland, fake_env):
        up = st(userland, fake_env, "up", "--no-watch")
        assert up.returncode == 0, up.stderr
        assert f"removed stale files from an earlier manager: {name}" in up.stderr
        assert not (folder / name).is_symlink()
        down_ok(userland, fake_env)
    assert victim.read_text() == "precious\n"
    assert_clean(userland, fake_env)


@pytest.mark.parametrize("name", ["spacetail.lock", "manager.lock"])
def test_symlink_at_a_lock_is_removed_not_followed(
    userland: Userland, fake_env: dict[str, str], home: Path, name: str
) -> None:
    folder, victim = plant_symlink(fake_env, home, name)
    with stopped_after(userland, fake_env):
        up_ok(userland, fake_env)
        assert not (folder / name).is_symlink()  # the link itself went, the target untouched
        down_ok(userland, fake_env)
    assert victim.read_text() == "precious\n"
    assert_clean(userland, fake_env)


@pytest.mark.parametrize("name", ["manager.log", "tailscaled.log"])
def test_symlink_at_a_log_is_not_followed(
    userland: Userland, fake_env: dict[str, str], home: Path, name: str
) -> None:
    _folder, victim = plant_symlink(fake_env, home, name)
    with stopped_after(userland, fake_env):
        up_ok(userland, fake_env)
        down_ok(userland, fake_env)
    assert_clean(userland, fake_env)
    assert victim.read_text() == "precious\n"


def _identity_json(pid: int, **changes: Any) -> dict[str, Any]:
    ident = ProcessIdentity.of(pid)
    assert ident is not None
    return {**ident.to_json(), **changes}


@pytest.mark.parametrize(
    "content",
    ["binary", "truncated", "array", "empty", "reused-pid", "other-container"],
)
def test_bad_record_is_recognized_and_replaced(
    userland: Userland, fake_env: dict[str, str], content: str
) -> None:
    folder = state_dir(fake_env)
    folder.mkdir(mode=0o700)
    chown_user(folder)
    # A live process of the same user that an old record could name by its PID.
    bystander = subprocess.Popen(["sleep", "120"], env=fake_env, user=SPACELIFT_UID,
                                 group=SPACELIFT_UID, extra_groups=[])  # fmt: skip
    try:
        record: bytes
        if content == "binary":
            record = b"\x00\xff\xfegarbage\n" * 10
        elif content == "truncated":
            record = b'{"version": "0.1.0", "manager": {"pid": 12, "start_ti'
        elif content == "array":
            record = b"[1, 2, 3]"
        elif content == "empty":
            record = b""
        else:
            # The PID is live, but the start time (or the PID namespace) says it is another
            # process: down must not signal it.
            changes: dict[str, Any] = (
                {"start_time": 1} if content == "reused-pid" else {"pid_ns": "pid:[1]"}
            )
            ident = _identity_json(bystander.pid, **changes)
            record = json.dumps({"manager": ident, "tailscaled": ident}).encode()
        record_path(fake_env).write_bytes(record)
        chown_user(record_path(fake_env))
        stale = status(userland, fake_env)
        assert stale["running"] is False and stale["stale"], stale
        with stopped_after(userland, fake_env):
            down = down_ok(userland, fake_env)
            assert "removed stale" in down and "manager.json" in down
            assert "orphaned" not in down
            assert not record_path(fake_env).exists()
            assert bystander.poll() is None, "down signalled a process it could not prove"
            up_ok(userland, fake_env)
            data = json.loads(record_path(fake_env).read_text())
            assert data["manager"]["pid"] == status(userland, fake_env)["manager_pid"]
            down_ok(userland, fake_env)
    finally:
        bystander.kill()
        bystander.wait()
    assert_clean(userland, fake_env)


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing-folder"])
def test_read_only_workspace(
    userland: Userland, fake_env: dict[str, str], home: Path, existing: bool
) -> None:
    with tmpfs(home / "ws", "1m") as ws:
        env = {**fake_env, "SPACETAIL_DIR": str(ws / ".spacetail")}
        if existing:  # an earlier phase used it; then the volume went read-only
            up_ok(userland, env)
            down_ok(userland, env)
        remount(ws, "ro")
        try:
            result = st(userland, env, "up", "--no-watch")
            assert "Read-only file system" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
            if existing:
                assert result.returncode == 1
                assert f"cannot lock {ws / '.spacetail' / 'spacetail.lock'}" in result.stderr
            else:
                assert result.returncode == 2 and result.stderr.count("\n") == 1
                assert "point SPACETAIL_DIR at a writable folder" in result.stderr
            assert not marked(env) and not sock_path(env).exists()
            assert st(userland, env, "status").returncode == 0
        finally:
            remount(ws, "rw")
        assert_clean(userland, env)


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "existing-folder"])
def test_full_disk_starts_nothing_half_way(
    userland: Userland, fake_env: dict[str, str], home: Path, existing: bool
) -> None:
    with tmpfs(home / "ws", "64k") as ws:
        env = {**fake_env, "SPACETAIL_DIR": str(ws / ".spacetail")}
        if existing:
            up_ok(userland, env)
            down_ok(userland, env)
        fill_disk(ws)
        result = st(userland, env, "up", "--no-watch")
        print(f"\nfull disk, {'existing' if existing else 'fresh'} folder: {result.stderr}")
        assert result.returncode == 1 and "Traceback" not in result.stderr.splitlines()[0]
        first = result.stderr.splitlines()[0]
        assert first.startswith("spacetail: error: the manager did not start: cannot write ")
        assert first.endswith("manager.json: No space left on device"), result.stderr
        assert_clean(userland, env)
        assert not list((ws / ".spacetail").glob(".manager.json.*"))
        assert "nothing was running" in down_ok(userland, env)
        os.unlink(ws / "filler")
        up_ok(userland, env)  # once there is room, it works
        down_ok(userland, env)
        assert_clean(userland, env)


# --- 5. concurrency -----------------------------------------------------------------------


class Watcher(threading.Thread):
    """Samples /proc while commands race: the most managers and tailscaleds seen at once."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.env = env
        self.stop = threading.Event()
        self.most_managers = 0
        self.most_daemons = 0
        self.samples = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.most_managers = max(self.most_managers, len(managers(self.env)))
            self.most_daemons = max(self.most_daemons, len(daemons(self.env)))
            self.samples += 1
            self.stop.wait(0.01)  # a sampling interval, not a synchronization


# What each command promises, plus 1 s for 20 interpreters starting at once on 2 cores (the
# slowest command measured 1.3 s): up within SPACETAIL_TIMEOUT (20 here), wait within its
# --timeout (8), status within its 3 s probe, down within its logout (1 s) and tailscaled's
# SIGTERM grace (0.8 s) plus the manager's exit.
RACE_TIMEOUT = 20
BOUNDS = {"up": RACE_TIMEOUT + 1.0, "down": 4.0, "status": 4.0, "wait": 9.0}


def test_racing_commands_make_at_most_one_manager(
    userland: Userland, fake_env: dict[str, str]
) -> None:
    env = {**fake_env, "SPACETAIL_TIMEOUT": str(RACE_TIMEOUT)}
    rng = random.Random(5)
    commands = {
        "up": ("up", "--no-watch"),
        "down": ("down",),
        "status": ("status", "--json"),
        "wait": ("wait", "--timeout", "8"),
    }

    def one(name: str) -> tuple[str, int, float, str]:
        started = time.monotonic()
        result = st(userland, env, *commands[name], timeout=BOUNDS[name] + 15)
        return name, result.returncode, time.monotonic() - started, result.stderr

    watcher = Watcher(env)
    watcher.start()
    results: list[tuple[str, int, float, str]] = []
    try:
        with stopped_after(userland, env):
            for _round in range(3):
                names = ["up"] * 6 + ["down"] * 4 + ["status"] * 5 + ["wait"] * 5
                rng.shuffle(names)
                with ThreadPoolExecutor(len(names)) as pool:
                    results += list(pool.map(one, names))
            up_ok(userland, env)  # still usable after the storm
            assert len(managers(env)) == 1
    finally:
        watcher.stop.set()
        watcher.join()
    for name, code, took, err in results:
        assert took < BOUNDS[name], f"{name} took {took:.1f}s: {err}"
        assert "Traceback" not in err, err
        assert code in (0, 1), (name, code, err)
        if name in ("status", "down"):
            assert code == 0, (name, err)
        if code == 1:  # the expected loser of a race: up/wait cut short by a down
            assert "spacetail: error: " in err, err
    figure("race_slowest_command", max(r[2] for r in results))
    print(f"\nrace: {watcher.samples} samples, outcomes "
          f"{sorted({(r[0], r[1]) for r in results})}")  # fmt: skip
    assert watcher.samples > 20
    assert watcher.most_managers <= 1 and watcher.most_daemons <= 1
    # The log proves it for every instant, not just the samples: starts and stops alternate.
    text = (state_dir(env) / "manager.log").read_text()
    events = re.findall(r"manager (\d+) (started|stopped)", text)
    open_manager: str | None = None
    for pid, what in events:
        if what == "started":
            assert open_manager is None, f"manager {pid} started while {open_manager} ran"
            open_manager = pid
        else:
            assert open_manager == pid
            open_manager = None
    assert open_manager is None and len(events) >= 2
    assert_clean(userland, env)
