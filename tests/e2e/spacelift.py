"""An emulator of Spacelift runs: each phase in a fresh container, hooks chained the way Spacelift
chains them, the environment carried from phase to phase through a saved file, and a worker that
waits for every process of the container to exit before the phase is over.

See tests/e2e/README.md for how this maps to Spacelift and what it leaves out.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import spacelift_oidc
from tests.helpers import MARKER, SPACELIFT_UID, Userland

WORKER = Path(__file__).resolve().with_name("worker.py")
WORKSPACE = "/mnt/workspace"
SOURCE = f"{WORKSPACE}/source"
SAVED_ENV = ".env_hooks_after"
OIDC_FILE = "spacelift.oidc"
USERLAND = "/mnt/userland"
HOME = "/mnt/home"
UNSHARE = ["unshare", "--pid", "--fork", "--mount", "--uts", "--propagation", "private"]
# Beyond the worker's own deadline: if the worker itself hangs, the emulator kills the container.
GUARD = 20.0


def container_support() -> str | None:
    """Why containers cannot be built here, or None when they can."""
    if os.getuid() != 0:
        return "the Spacelift emulator needs root (it builds PID, mount and UTS namespaces)"
    if shutil.which("unshare") is None:
        return "the Spacelift emulator needs unshare(1) (util-linux)"
    if not os.path.isdir("/mnt"):
        return "the Spacelift emulator mounts a tmpfs on /mnt inside its containers: no /mnt here"
    try:
        probe = subprocess.run(
            [*UNSHARE, "--kill-child", "sh", "-c", "mount -t proc proc /proc && [ $$ -eq 1 ]"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare cannot create the namespaces: {exc}"
    if probe.returncode != 0:
        return f"unshare cannot create the namespaces: {probe.stderr.strip() or probe.returncode}"
    return None


def hook_chain(before: Sequence[str], command: str, after: Sequence[str]) -> str:
    """Spacelift's chain: `{ before1; } && { before2; } && COMMAND && { after1; }`."""
    parts = [f"{{ {hook}; }}" for hook in before]
    parts.append(command)
    parts += [f"{{ {hook}; }}" for hook in after]
    return " && ".join(parts)


def phase_script(chain: str) -> str:
    """The phase shell's script. Spacelift saves the shell's environment at the end of a phase
    and starts the next one from it; we emulate that with `export -p` into the file seen in the
    wild, sourced at the start of the next phase. (`. missing-file` makes a POSIX shell exit,
    hence the test first.) The phase's own OIDC token (when the run has one) is put back after
    the restore: Spacelift issues each phase its token, and an earlier phase's saved one must not
    pass for it."""
    saved = f"{WORKSPACE}/{SAVED_ENV}"
    keep = "_oidc=${SPACELIFT_OIDC_TOKEN-}"
    restore = f"if [ -f {saved} ]; then . {saved}; fi"
    put_back = '[ -z "$_oidc" ] || export SPACELIFT_OIDC_TOKEN="$_oidc"; unset _oidc'
    return f"{keep}\n{restore}\n{put_back}\n{chain}\nrc=$?\nexport -p > {saved}\nexit $rc\n"


def oidc_scope(run_type: str, autodeploy: bool, confirmed: bool) -> str:
    """The token scope Spacelift gives a phase (its OIDC documentation, "About scopes"): read for
    proposed runs, and for a tracked run that waits for approval until it is confirmed; write
    for the rest (an autodeployed tracked run, the approved apply, tasks, destroy, testing)."""
    if run_type == "PROPOSED":
        return "read"
    if run_type == "TRACKED" and not autodeploy and not confirmed:
        return "read"
    return "write"


@dataclass
class PhaseResult:
    """What one phase did. Times are seconds after the phase shell exited."""

    name: str
    hostname: str
    status: int | None  # the phase shell's exit status (-N: killed by signal N); None: no exit
    quiet_after: float | None  # until no process was left in the container; None: never
    leftovers: list[str]  # what still ran at the worker's deadline (then killed)
    log_eof_after: float | None  # until the phase's output pipe reached end-of-file
    log: str  # the phase shell's stdout and stderr, as the worker forwarded them
    killed: bool = False  # the emulator killed the container mid-phase
    worker_log: str = ""  # the worker's own complaints (stderr)
    duration: float = 0.0  # wall time of the whole phase, container included
    events: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        """For assertion messages: everything a failing scenario should show."""
        return (
            f"phase {self.name} (container {self.hostname}): status {self.status}, "
            f"quiet after {self.quiet_after}, log EOF after {self.log_eof_after}, "
            f"killed {self.killed}, leftovers {self.leftovers}\n--- log ---\n{self.log}"
            + (f"\n--- worker ---\n{self.worker_log}" if self.worker_log else "")
        )


class WorkerFailed(RuntimeError):
    pass


class SpaceliftRun:
    """One run: a workspace shared by its phases, each phase in a container of its own."""

    def __init__(
        self,
        workspace: Path,
        userland: Userland,
        env: Mapping[str, str],
        deadline: float = 15.0,
        *,
        stack_id: str = "spacetail-e2e",
        run_type: str = "TRACKED",
        oidc: bool = False,
        autodeploy: bool = False,
    ) -> None:
        self.workspace = workspace
        self.userland = userland
        self.deadline = deadline
        self.run_id = "01E2E" + secrets.token_hex(10).upper()
        self.stack_id = stack_id
        self.run_type = run_type
        self.oidc = oidc  # each phase gets a Spacelift-shaped token (a paid account)
        self.autodeploy = autodeploy
        self.confirmed = False  # a tracked run that waits for approval: until confirm()
        self.env = dict(env)
        self.results: list[PhaseResult] = []
        source = workspace / "source"
        source.mkdir(exist_ok=True)
        os.chown(workspace, SPACELIFT_UID, SPACELIFT_UID)
        os.chown(source, SPACELIFT_UID, SPACELIFT_UID)

    # --- what a phase sees ----------------------------------------------------------------

    def phase_env(self, name: str) -> dict[str, str]:
        env = {
            "PATH": f"{USERLAND}/fakes:{USERLAND}/bin:/usr/local/bin:/usr/bin:/bin",
            "HOME": HOME,
            "USER": "spacelift",
            "LANG": "C.UTF-8",
            "TF_IN_AUTOMATION": "true",
            "TF_VAR_spacelift_workspace_root": WORKSPACE,
            "TF_VAR_spacelift_project_root": ".",
            "TF_VAR_spacelift_run_id": self.run_id,
            "TF_VAR_spacelift_stack_id": self.stack_id,
            "TF_VAR_spacelift_run_type": self.run_type,
            "TF_VAR_spacelift_run_state": name.upper(),
            "TF_VAR_spacelift_space_id": "root",
            "TF_VAR_spacelift_commit_sha": "0" * 40,
            "TF_VAR_spacelift_account_name": "spacetail-tests",
        }
        env.update(self.env)
        return env

    def confirm(self) -> None:
        """A person approves the plan: the phases from now on get write-scope tokens."""
        self.confirmed = True

    @property
    def scope(self) -> str:
        return oidc_scope(self.run_type, self.autodeploy, self.confirmed)

    def oidc_token(self, text: str | None = None) -> str:
        """This phase's token (TEXT: another one, for a test), as Spacelift gives it: in the
        environment, and written to the workspace's spacelift.oidc."""
        if text is None:
            text = spacelift_oidc.token(
                self.scope, run_type=self.run_type, stack=self.stack_id, run_id=self.run_id
            )
        path = self.workspace / OIDC_FILE
        path.write_text(text)
        path.chmod(0o600)
        os.chown(path, SPACELIFT_UID, SPACELIFT_UID)
        return text

    @property
    def saved_env_path(self) -> Path:
        return self.workspace / SAVED_ENV

    def saved_env(self) -> str:
        try:
            return self.saved_env_path.read_text()
        except FileNotFoundError:
            return ""

    def write_source(self, name: str, text: str, mode: int = 0o755) -> Path:
        """A file of the project (under /mnt/workspace/source), owned by the Spacelift user."""
        path = self.workspace / "source" / name
        path.write_text(text)
        path.chmod(mode)
        os.chown(path, SPACELIFT_UID, SPACELIFT_UID)
        return path

    # --- running one phase ----------------------------------------------------------------

    def phase(
        self,
        name: str,
        command: str,
        before: Sequence[str] = (),
        after: Sequence[str] = (),
        *,
        kill_on: str | None = None,
        kill_after: float | None = None,
        token: str | None = None,
    ) -> PhaseResult:
        """Run one phase in a fresh container and wait until the worker calls it over.

        kill_on: SIGKILL the container's PID 1 (so every process in it) as soon as the phase's
        log contains this text; kill_after: or after this many seconds. A container killed that
        way reports no status. token: this phase's OIDC token instead of the one the run's
        type and state give it (a run with `oidc`).
        """
        hostname = f"{name[:20]}-{secrets.token_hex(6)}"
        report_r, report_w = os.pipe()
        cfg = {
            "uid": SPACELIFT_UID,
            "workspace": str(self.workspace),
            "userland": str(self.userland.root),
            "hostname": hostname,
            "cwd": SOURCE,
            "env": self.phase_env(name)
            | ({"SPACELIFT_OIDC_TOKEN": self.oidc_token(token)} if self.oidc else {}),
            "script": phase_script(hook_chain(before, command, after)),
            "deadline": self.deadline,
            "report_fd": report_w,
        }
        python = os.path.realpath(sys.executable)  # not through a venv that may sit in /tmp
        started = time.monotonic()
        proc = subprocess.Popen(
            [*UNSHARE, "--kill-child", python, "-I", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(report_w,),
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", MARKER: self.env.get(MARKER, "")},
            cwd="/",
        )
        os.close(report_w)
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(cfg).encode())
            proc.stdin.close()
            result = self._follow(proc, report_r, name, hostname, started, kill_on, kill_after)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            os.close(report_r)
        self.results.append(result)
        return result

    def _follow(
        self,
        proc: subprocess.Popen[bytes],
        report_r: int,
        name: str,
        hostname: str,
        started: float,
        kill_on: str | None,
        kill_after: float | None,
    ) -> PhaseResult:
        assert proc.stdout is not None and proc.stderr is not None
        sel = selectors.DefaultSelector()
        streams = {proc.stdout.fileno(): "log", proc.stderr.fileno(): "err", report_r: "report"}
        chunks: dict[str, bytearray] = {k: bytearray() for k in streams.values()}
        for fd, stream in streams.items():
            sel.register(fd, selectors.EVENT_READ, stream)
        pidfd: int | None = None
        killed = False
        guard = started + self.deadline + GUARD
        events: list[dict[str, Any]] = []
        try:
            while sel.get_map():
                now = time.monotonic()
                if now >= guard:
                    proc.kill()  # --kill-child: the container's PID 1 dies with unshare
                    guard = float("inf")
                wait = guard - now
                if kill_after is not None and not killed:
                    wait = min(wait, max(0.0, started + kill_after - now))
                for key, _ in sel.select(wait):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fd)
                        continue
                    chunks[key.data] += data
                    if key.data == "report":
                        events, pidfd = self._events(chunks["report"], pidfd, proc.pid)
                want_kill = (kill_on is not None and kill_on.encode() in chunks["log"]) or (
                    kill_after is not None and time.monotonic() >= started + kill_after
                )
                if want_kill and not killed and pidfd is not None:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    killed = True
        finally:
            if pidfd is not None:
                os.close(pidfd)
            sel.close()
        proc.wait()
        duration = time.monotonic() - started
        log = chunks["log"].decode(errors="replace")
        worker_log = chunks["err"].decode(errors="replace")
        done = next((e for e in events if e["event"] == "done"), None)
        errors = [str(e["message"]) for e in events if e["event"] == "error"]
        if errors or (done is None and not killed):
            raise WorkerFailed(
                f"the worker of phase {name} failed (exit {proc.returncode}): "
                f"{'; '.join(errors)}\n{worker_log}\n--- log ---\n{log}"
            )
        if done is None:
            return PhaseResult(name, hostname, None, None, [], None, log, True, worker_log,
                               duration, events)  # fmt: skip
        exit_at = done["shell_exit_at"]

        def after(t: float | None) -> float | None:
            return None if t is None or exit_at is None else round(t - exit_at, 3)

        return PhaseResult(
            name=name,
            hostname=hostname,
            status=done["status"],
            quiet_after=after(done["quiet_at"]),
            leftovers=list(done["leftovers"]),
            log_eof_after=after(done["log_eof_at"]),
            log=log,
            killed=killed,
            worker_log=worker_log,
            duration=duration,
            events=events,
        )

    @staticmethod
    def _events(
        raw: bytearray, pidfd: int | None, unshare_pid: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        lines = bytes(raw).split(b"\n")
        events = [json.loads(line) for line in lines[:-1] if line.strip()]
        if pidfd is None:
            for event in events:
                if event["event"] == "started" and event.get("host_pid"):
                    with contextlib.suppress(OSError):
                        fd = os.pidfd_open(int(event["host_pid"]))
                        if _parent(int(event["host_pid"])) == unshare_pid:
                            pidfd = fd
                        else:
                            os.close(fd)
        return events, pidfd


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def quote(text: str) -> str:
    return shlex.quote(text)
