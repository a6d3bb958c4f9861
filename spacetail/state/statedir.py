"""The state folder, in one place: finding, locking, reading, writing, proving and cleaning the
files a manager keeps there. Every other module goes through these functions, so the rules
(never follow a planted symlink, never write a file looser than 0600, never signal a process
that is not proven ours) are kept once."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from spacetail.errors import OperationFailed
from spacetail.state import control
from spacetail.state.identity import ProcessIdentity, ProvenProcess, terminate
from spacetail.state.paths import (
    Paths,
    check_existing_dir,
    ensure_private_dir,
    open_regular,
    remove_file,
)

TYPE_CHECKING = False  # keeps typing and filelock out of `spacetail status` until needed
if TYPE_CHECKING:
    import socket
    from collections.abc import Iterator
    from typing import Any

    from filelock import BaseFileLock

    from spacetail.config.loader import Config
    from spacetail.state.status import Status

LOCK_TIMEOUT = 120.0
SECRET_PREFIX = "auth-"  # noqa: S105 - a file name prefix, not a password
MAX_RECORD = 64 * 1024  # manager.json and last-stop.json hold about 1 kB
MAX_DEPTH = 8  # and nest two levels deep
_JSON_TOKENS = re.compile(rb'[\\"\[\]{}]')


# --- files --------------------------------------------------------------------------------


def inode(path: Path) -> int | None:
    """PATH's inode (not following a symlink), or None: tells our socket from a later one."""
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def unplant(path: Path) -> None:
    """A symlink at one of our paths is not ours to follow: remove the link itself."""
    if os.path.islink(path):
        os.unlink(path)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write PATH whole or not at all: a temporary file created with O_EXCL|O_NOFOLLOW (so a
    symlink planted at the temporary name is never followed) and MODE from its first instant,
    then renamed over PATH."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    remove_file(tmp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    except OSError:
        remove_file(tmp)
        raise


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode())


def write_record(
    paths: Paths, cfg: Config, *, tailscaled: ProcessIdentity | None, watch_pid: int | None
) -> None:
    """manager.json: who the manager and its tailscaled are, so that a later container can tell
    whether they still live (and never signal a stranger with the same PID)."""
    import time

    from spacetail import __version__

    me = ProcessIdentity.of(os.getpid())
    record = {
        "version": __version__,
        "manager": me.to_json() if me else None,
        "tailscaled": tailscaled.to_json() if tailscaled else None,
        "control_socket": str(paths.control_socket),
        "tailscaled_socket": str(paths.tailscaled_socket),
        "proxies": cfg.proxies,
        "hostname": cfg.hostname,
        "watch_pid": watch_pid,
        "started_at": time.time(),
    }
    write_private_json(paths.record, record)


def read_record(path: Path) -> tuple[dict[str, Any] | None, bool]:
    """(record, garbage): a missing file is (None, False); an unreadable one is (None, True).
    The one reader of the state folder's JSON records (manager.json, last-stop.json): a file
    that is not ours, larger than MAX_RECORD or nested deeper than MAX_DEPTH is garbage, like any
    other that does not parse, and so stale."""
    try:
        fd = open_regular(path, os.O_RDONLY)  # a planted FIFO must not hang status or down
    except FileNotFoundError:
        return None, False
    except OSError:
        return None, True
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.getuid() or st.st_size > MAX_RECORD:
                return None, True
            raw = f.read(MAX_RECORD + 1)
    except OSError:
        return None, True
    data = parse_record(raw)
    return (data, False) if data is not None else (None, True)


def parse_record(raw: bytes) -> dict[str, Any] | None:
    """RAW as a JSON object, or None: bounded in size and depth before json.loads (which
    recurses once per level) ever sees it."""
    if len(raw) > MAX_RECORD or not nested_within(raw, MAX_DEPTH):
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def nested_within(raw: bytes, limit: int) -> bool:
    """Whether RAW's arrays and objects nest at most LIMIT deep, strings skipped: a scan of the
    few bytes that matter, without recursion, that stops at the first level too deep."""
    depth = 0
    in_string = False
    escaped = -1  # the offset a backslash in a string makes ordinary
    for token in _JSON_TOKENS.finditer(raw):
        at = token.start()
        if at == escaped:
            continue
        c = raw[at]
        if in_string:
            if c == 0x5C:  # backslash
                escaped = at + 1
            elif c == 0x22:  # quote
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in b"[{":
            depth += 1
            if depth > limit:
                return False
        elif c in b"]}":
            depth -= 1
    return True


def check(paths: Paths, *, create: bool = False) -> bool:
    """The one gate before anything in the state or runtime folders is trusted, for every
    command: each private folder (state, keys, sockets) is ours, 0700, and below nothing another
    user could change. With CREATE (`up`, the manager) missing ones are made 0700; without,
    nothing is created. Raises ConfigError naming the folder and the fix; returns whether the
    state folder exists."""
    exists = True
    for folder in paths.private_dirs():
        setting = paths.setting if folder == paths.root else "XDG_RUNTIME_DIR"
        if create:
            ensure_private_dir(folder, setting)
        elif not check_existing_dir(folder, setting) and folder == paths.root:
            exists = False
    return exists


def prepare(paths: Paths) -> None:
    """Create the private folders (0700) or refuse ones that others could tamper with."""
    check(paths, create=True)


# --- secrets ------------------------------------------------------------------------------


def write_secret(paths: Paths, name: str, payload: str) -> Path:
    """A 0600 file in container-local storage (never the workspace that outlives the phase)."""
    paths.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = paths.secrets_dir / f"{SECRET_PREFIX}{name}"
    write_atomic(path, payload.encode())
    return path


def clear_secrets(paths: Paths) -> list[str]:
    """Remove secret files a killed manager may have left; returns what was removed. The key
    folder is opened without following a symlink and only if it is ours: a link planted in its
    place never leads the removal into someone else's folder."""
    removed: list[str] = []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(paths.secrets_dir, flags)
    except OSError:
        return removed
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return removed
        for name in os.listdir(fd):
            if name.startswith(SECRET_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=fd)
                    removed.append(name)
    finally:
        os.close(fd)
    return removed


def remove_run_files(paths: Paths, *, keep_node_state: bool) -> None:
    """What a stopping manager leaves nothing of: tailscaled's socket, the record, key files,
    and (unless the node's state is kept) tailscaled's folder. The logs stay, for after the
    fact; a file that cannot go (a read-only workspace) stays too."""
    for path in (paths.tailscaled_socket, paths.record):
        remove_file(path)
    clear_secrets(paths)
    if not keep_node_state:
        import shutil

        shutil.rmtree(paths.node_state_dir, ignore_errors=True)


# --- locks --------------------------------------------------------------------------------


def take_lock(path: Path, timeout: float) -> BaseFileLock:
    """Acquire the file lock at PATH (a planted symlink is removed, never followed).

    Created in the process that holds it: filelock refuses locks inherited over fork. Raises
    filelock.Timeout or OSError."""
    from filelock import FileLock

    unplant(path)
    lock = FileLock(str(path), timeout=timeout, mode=0o600)
    lock.acquire()
    return lock


def manager_lock_held(paths: Paths) -> bool:
    """A non-blocking try of the manager's lock: only a live manager holds it."""
    unplant(paths.manager_lock)
    if not paths.manager_lock.exists():
        return False
    from filelock import Timeout

    try:
        take_lock(paths.manager_lock, 0).release()
    except Timeout:
        return True
    except OSError:
        return False
    return False


@contextlib.contextmanager
def control_lock(
    paths: Paths, timeout: float = LOCK_TIMEOUT, *, best_effort: bool = False
) -> Iterator[bool]:
    """Held by up and down while they change things: serializes them. With BEST_EFFORT (down),
    a lock that cannot be created at all (a read-only workspace) is gone without: stopping a
    manager must not depend on writing a file. Yields whether the lock is held."""
    from filelock import Timeout

    try:
        lock = take_lock(paths.ctl_lock, timeout)
    except Timeout:
        raise OperationFailed(
            f"another spacetail up/down has held {paths.ctl_lock} for {timeout:.0f}s; "
            "is one stuck? (spacetail status)"
        ) from None
    except OSError as exc:
        if best_effort:
            yield False
            return
        raise OperationFailed(f"cannot lock {paths.ctl_lock}: {exc.strerror or exc}") from exc
    try:
        yield True
    finally:
        lock.release()


# --- what is there ------------------------------------------------------------------------


class Probe:
    """What a look at the state folder found."""

    def __init__(
        self,
        status: Status | None,  # the manager's answer, when one answered
        record: dict[str, Any] | None,
        record_garbage: bool,
        lock_held: bool,  # some live process holds manager.lock
    ) -> None:
        self.status = status
        self.record = record
        self.record_garbage = record_garbage
        self.lock_held = lock_held

    @property
    def answering(self) -> bool:
        return self.status is not None

    @property
    def manager_ident(self) -> ProcessIdentity | None:
        return ProcessIdentity.from_json((self.record or {}).get("manager"))

    @property
    def tailscaled_ident(self) -> ProcessIdentity | None:
        return ProcessIdentity.from_json((self.record or {}).get("tailscaled"))

    @property
    def answering_ident(self) -> ProcessIdentity | None:
        """Who the answering manager says it is (boot, PID namespace, PID, start time)."""
        return self.status.manager if self.status is not None else None

    @property
    def proven_ident(self) -> ProcessIdentity | None:
        """The answering manager's identity, only when manager.json (written by the manager
        itself, in a folder that passed `check`) names that very process: a reply over a socket
        alone never makes a process eligible for a signal."""
        ident = self.answering_ident
        if ident is None or self.foreign or ident != self.manager_ident:
            return None
        return ident

    @property
    def foreign(self) -> bool:
        """A manager answers, but from another container (or boot): its PID means nothing here,
        and its proxies are not this container's."""
        ident = self.answering_ident
        return self.answering and (ident is None or not ident.same_world())

    def describe_foreign(self) -> str:
        ident = self.answering_ident
        where = ident.container if ident else "an unknown place"
        return f"a manager of another container ({where}) answers for this state folder"

    def describe_unrecorded(self, paths: Paths) -> str:
        pid = self.status.manager_pid if self.status else None
        return (
            f"a process answering on {paths.control_socket} as manager pid {pid}, which "
            f"{paths.record.name} does not name (so it is never signalled),"
        )

    def describe_stale(self) -> str:
        ident = self.manager_ident
        if ident is None:
            return "files from an earlier manager"
        return f"files of manager pid {ident.pid} ({ident.why_not_alive()})"


NOTHING = Probe(None, None, False, False)


def probe(paths: Paths, timeout: float = 3.0) -> Probe:
    from spacetail.state.status import Status

    record, garbage = read_record(paths.record)
    try:
        answer = control.ControlClient(paths.control_socket).request({"cmd": "status"}, timeout)
        if answer.get("ok") is True:
            return Probe(Status.from_json(answer), record, garbage, True)
    except (control.ControlUnavailable, OperationFailed, ValueError):
        pass  # nobody answers, or an answer that is not a status: no manager to trust
    return Probe(None, record, garbage, manager_lock_held(paths))


def clean_stale(paths: Paths, p: Probe) -> list[str]:
    """Remove what a dead manager left; returns the names removed. Signals only a tailscaled
    proven to be the very process the record names, and only when no manager holds the lock."""
    removed = []
    for path in (paths.control_socket, paths.tailscaled_socket, paths.record):
        if remove_file(path):
            removed.append(path.name)
    for path in paths.socket_dir.glob(".control.sock.*"):
        if remove_file(path):
            removed.append(path.name)
    removed += clear_secrets(paths)
    # A tailscaled whose manager was killed dies with it (PR_SET_PDEATHSIG); if that ever
    # failed, stop it, but only once proven to be the very process the record names.
    td = p.tailscaled_ident
    if td is not None and not manager_lock_held(paths):
        handle = ProvenProcess.open(td)
        if handle is not None:
            with handle:
                terminate(handle, 2.0)
            removed.append(f"orphaned tailscaled (pid {td.pid})")
    return removed


# --- taking the folder ----------------------------------------------------------------------


class Claim:
    """The state folder held under the control lock: what was found there, and the means to
    take it over for a new manager."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.probe = probe(paths)

    def reprobe(self) -> Probe:
        self.probe = probe(self.paths)
        return self.probe

    def clean(self) -> list[str]:
        return clean_stale(self.paths, self.probe)

    def bind(self) -> socket.socket:
        """The control socket, bound 0600 from its first instant, listening."""
        try:
            return control.bind_listener(self.paths.control_socket)
        except OSError as exc:
            raise OperationFailed(
                f"cannot create the control socket {self.paths.control_socket}: "
                f"{exc.strerror or exc}"
            ) from exc


@contextlib.contextmanager
def claim(paths: Paths, lock_timeout: float = LOCK_TIMEOUT) -> Iterator[Claim]:
    """Prepare the folders, take the control lock and look at what is there: the one way `up`
    and the foreground manager begin."""
    prepare(paths)
    with control_lock(paths, lock_timeout):
        yield Claim(paths)
