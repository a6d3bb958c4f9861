"""Every command trusts only what this uid controls: another user (uid 1984) who prepared the
runtime folder before uid 1983 first used it gets nothing from `down`, `env`, `wait` or `status`
(no signal to one of 1983's processes, no proxies, no "usable", no file removed), not even from a
socket planted after the folders' check; a reply on the control socket makes a process eligible
for a signal only when the manager's own record names it; and another user who cannot even
enter the folders is told so in one line.

`XDG_RUNTIME_DIR` points at a `runtime-1983` folder in a sticky folder like /tmp: the same as the
default `/tmp/runtime-1983` when the variable is unset, without touching the machine's own /tmp."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spacetail.state.identity import ProcessIdentity
from spacetail.state.paths import Paths
from tests.faultkit import OTHER_UID, as_attacker, ask, chown_user, stopped_after, up_ok
from tests.helpers import SPACELIFT_UID, Userland, st

# A control socket that is not a manager's: it answers `status` and `wait` with REPLY (a live
# node, a manager that is some process of the victim's, proxies of the attacker's choosing) and
# hangs up on anything else, as a manager that exits would. It goes on answering afterwards.
IMPOSTOR = textwrap.dedent(
    """
    import json, os, socket, sys
    path, reply, become = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o777)
    if become:  # root binds where only 1983 could, then serves as another uid
        os.setgroups([])
        os.setgid(int(become))
        os.setuid(int(become))
    server.listen(16)
    print("READY", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                cmd = json.loads(data.split(b"\\n")[0] or b"{}").get("cmd")
                if cmd in ("status", "wait"):
                    conn.sendall(json.dumps(reply).encode() + b"\\n")
            except (OSError, ValueError):
                pass
    """
)

ATTACKER_PROXY = "127.0.0.1:6666"


def impostor_reply(victim: int) -> dict[str, Any]:
    ident = ProcessIdentity.of(victim)
    assert ident is not None
    return {
        "ok": True, "running": True, "connected": True, "phase": "running",
        "backend_state": "Running", "manager_pid": victim, "manager": ident.to_json(),
        "tailscale_ips": ["100.64.0.66"], "hostname": "attacker",
        "proxies": {"http": f"http://{ATTACKER_PROXY}", "socks5": f"socks5://{ATTACKER_PROXY}"},
    }  # fmt: skip


@pytest.fixture
def victim(fake_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A process of uid 1983 that no spacetail command may ever signal."""
    proc = subprocess.Popen(["sleep", "300"], env=fake_env, user=SPACELIFT_UID,
                            group=SPACELIFT_UID, extra_groups=[])  # fmt: skip
    yield proc
    proc.kill()
    proc.wait()


def impostor(
    userland: Userland, env: dict[str, str], path: Path, victim: int, uid: int, become: str = ""
) -> subprocess.Popen[str]:
    """Serve IMPOSTOR at PATH as UID (bound as UID, serving as BECOME if given); returns once it
    listens."""
    proc = subprocess.Popen(
        [userland.python, "-c", IMPOSTOR, str(path), json.dumps(impostor_reply(victim)), become],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, cwd="/",
        user=uid, group=uid, extra_groups=[],
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    return proc


def victim_state(home: Path, name: str = "state") -> Path:
    """The victim's own state folder (0700, uid 1983): only the runtime folder is hostile."""
    state = home / name
    state.mkdir(mode=0o700)
    chown_user(state)
    return state


def hostile_runtime(sticky_tmp: Path, how: str) -> Path:
    """uid 1984 creates `runtime-1983` first, with `spacetail` in it (mode 777): a folder of
    its own, or a symlink to one. Returns what XDG_RUNTIME_DIR names."""
    top = "runtime-1983" if how == "0777" else "loot"
    script = f"mkdir -m 777 {top} {top}/spacetail"
    if how == "symlink":
        script += " && ln -s loot runtime-1983"
    as_attacker(script, sticky_tmp)
    return sticky_tmp / "runtime-1983"


def refused_in_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line, line
    for needle in needles:
        assert needle in line, line
    return line


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


# --- a runtime folder prepared by another user ---------------------------------------------


@pytest.mark.parametrize("how", ["0777", "symlink"])
def test_down_never_signals_for_a_socket_another_user_planted(
    userland: Userland, fake_env: dict[str, str], home: Path, sticky_tmp: Path,
    victim: subprocess.Popen[bytes], how: str,
) -> None:  # fmt: skip
    """A state path over about 91 bytes moves the sockets into the runtime folder; uid 1984
    serves a control socket there whose status names one of 1983's processes as the manager.
    (Before: `down` asked it to stop, waited 5 s, then SIGTERMed 1983's process.)"""
    state = victim_state(home, "state-" + "x" * 70)
    env = {**fake_env, "SPACETAIL_DIR": str(state)}
    runtime = hostile_runtime(sticky_tmp, how)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    sockets = Paths.from_env(env).socket_dir
    assert sockets.parent == runtime / "spacetail", sockets  # the long path moved them
    as_attacker(f"mkdir -m 777 {sockets}", sticky_tmp)
    server = impostor(userland, env, sockets / "control.sock", victim.pid, OTHER_UID)
    try:
        down = st(userland, env, "down", timeout=30)
    finally:
        stop(server)
    refused_in_one_line(down, "XDG_RUNTIME_DIR:", "runtime-1983", "uid 1984",
                        "set XDG_RUNTIME_DIR to a folder of your own")  # fmt: skip
    assert victim.poll() is None, f"down signalled uid 1983's process: {down.stderr}"


def test_env_wait_and_status_never_take_another_users_socket_for_the_manager(
    userland: Userland, fake_env: dict[str, str], home: Path, sticky_tmp: Path,
    victim: subprocess.Popen[bytes],
) -> None:  # fmt: skip
    """The same planted socket answers with the attacker's proxies and a live node. (Before:
    `env` printed the attacker's proxies for the hook's eval, `wait` said the tailnet is usable.)"""
    state = victim_state(home, "state-" + "x" * 70)
    runtime = hostile_runtime(sticky_tmp, "0777")
    env = {**fake_env, "SPACETAIL_DIR": str(state), "XDG_RUNTIME_DIR": str(runtime)}
    sockets = Paths.from_env(env).socket_dir
    as_attacker(f"mkdir -m 777 {sockets}", sticky_tmp)
    server = impostor(userland, env, sockets / "control.sock", victim.pid, OTHER_UID)
    try:
        results = {
            args[0]: st(userland, env, *args, timeout=30)
            for args in (["env"], ["wait", "--timeout", "2"], ["status", "--json"], ["logs"])
        }
    finally:
        stop(server)
    for name, result in results.items():
        refused_in_one_line(result, "XDG_RUNTIME_DIR:", "runtime-1983", "uid 1984")
        assert ATTACKER_PROXY not in result.stdout, f"{name} printed the attacker's proxies"
        assert "usable" not in result.stderr, name


def test_down_never_removes_files_where_a_planted_key_folder_points(
    userland: Userland, fake_env: dict[str, str], home: Path, sticky_tmp: Path
) -> None:
    """uid 1984 plants `k-<digest>` in the runtime folder as a symlink to a folder of 1983's
    holding an `auth-*` file. (Before: `down` removed it, following the link.)"""
    victim_state(home)
    precious = home / "keep"
    precious.mkdir(mode=0o700)
    (precious / "auth-precious").write_text("1983's own file\n")
    for path in (precious, precious / "auth-precious"):
        chown_user(path)
    runtime = hostile_runtime(sticky_tmp, "0777")
    env = {**fake_env, "XDG_RUNTIME_DIR": str(runtime)}
    keys = Paths.from_env(env).secrets_dir
    as_attacker(f"ln -s {precious} {keys}", sticky_tmp)
    down = st(userland, env, "down", timeout=30)
    refused_in_one_line(down, "XDG_RUNTIME_DIR:", "runtime-1983", "uid 1984")
    assert (precious / "auth-precious").exists(), "down removed a file through the planted link"


def test_a_socket_another_user_serves_is_never_listened_to(
    userland: Userland, fake_env: dict[str, str], home: Path, victim: subprocess.Popen[bytes]
) -> None:
    """The gap after the folders' check: a runtime folder not there when a command looks, there
    a moment later (another user can swap a prepared one in and out until a command's look
    and its connect fall on either side). Here root leaves such a socket in 1983's own folder,
    served as uid 1984 (SO_PEERCRED names the uid that called listen). (Before: `env` printed
    the attacker's proxies, `wait` said the tailnet is usable.)"""
    state = victim_state(home)
    server = impostor(userland, fake_env, state / "control.sock", victim.pid, 0, str(OTHER_UID))
    try:
        env = st(userland, fake_env, "env", timeout=30)
        wait = st(userland, fake_env, "wait", "--timeout", "2", timeout=30)
        shown = st(userland, fake_env, "status", "--json", timeout=30)
        down = st(userland, fake_env, "down", timeout=30)
    finally:
        stop(server)
    for result in (env, wait, shown, down):
        assert "Traceback" not in result.stderr, result.stderr
        assert ATTACKER_PROXY not in result.stdout, result.stdout
    assert env.returncode == 0 and "no manager runs here" in env.stderr, env.stderr
    assert wait.returncode == 1 and "usable" not in wait.stderr, wait.stderr
    assert "is served by uid 1984, not by you (uid 1983)" in wait.stderr, wait.stderr
    assert json.loads(shown.stdout)["running"] is False
    assert down.returncode == 0 and victim.poll() is None, down.stderr


# --- a reply over the socket is not a proof ------------------------------------------------


@pytest.mark.parametrize("record", ["none", "another-process"])
def test_a_reply_names_a_process_for_a_signal_only_with_the_managers_record(
    userland: Userland, fake_env: dict[str, str], home: Path,
    victim: subprocess.Popen[bytes], record: str,
) -> None:  # fmt: skip
    """Something of uid 1983's own that is not a manager answers on the control socket, in a
    folder that passes every check, and names another process of 1983's as the manager. `down`
    asks it to stop over the socket and signals nothing: manager.json (written by the manager
    itself) does not name that process. (Before: `down` SIGTERMed it.)"""
    state = victim_state(home)
    if record == "another-process":
        me = ProcessIdentity.of(os.getpid())
        assert me is not None
        (state / "manager.json").write_text(json.dumps({"manager": me.to_json()}))
        chown_user(state / "manager.json")
    server = impostor(userland, fake_env, state / "control.sock", victim.pid, SPACELIFT_UID)
    try:
        down = st(userland, fake_env, "down", timeout=40)
    finally:
        stop(server)
        st(userland, fake_env, "down")
    assert victim.poll() is None, f"down signalled a process its record does not name: {down}"
    assert "Traceback" not in down.stderr, down.stderr
    assert down.returncode == 1, down.stderr
    assert "which manager.json does not name (so it is never signalled)" in down.stderr
    assert "still answers after it was asked to stop" in down.stderr


# --- another user who cannot enter the folders ---------------------------------------------


def test_another_user_behind_a_closed_folder_is_told_in_one_line(
    userland: Userland, fake_env: dict[str, str], home: Path
) -> None:
    """The workspace (here: the home) is 0700: uid 1984 cannot even look at the state folder.
    (Before: `down` ended in a PermissionError traceback; `wait` and `logs` said there was
    nothing there; `status` said it could not create the folder.)"""
    with stopped_after(userland, fake_env):
        manager = up_ok(userland, fake_env)["manager_pid"]
        assert home.stat().st_mode & 0o777 == 0o700
        for args in (["down"], ["status"], ["wait", "--timeout", "2"], ["env"], ["logs"]):
            result = st(userland, fake_env, *args, uid=OTHER_UID, timeout=30)
            refused_in_one_line(
                result, f"SPACETAIL_DIR: cannot reach {home}/state: {home} (uid 1983's, mode 700) "
                "is closed to uid 1984; run spacetail as the user who ran `spacetail up`",
            )  # fmt: skip
        reply = ask(fake_env)
        assert reply is not None and reply["manager_pid"] == manager, "another user touched it"
