"""Where spacetail keeps its files, and the checks that make that folder safe to use."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from spacetail.errors import ConfigError, OperationFailed

# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
SOCKET_PATH_MAX = 107


def state_dir(env: Mapping[str, str]) -> Path:
    """SPACETAIL_DIR, else the Spacelift workspace, else the per-user runtime folder."""
    explicit = env.get("SPACETAIL_DIR", "").strip()
    if explicit:
        return Path(explicit).absolute()
    workspace = env.get("TF_VAR_spacelift_workspace_root", "").strip()
    if workspace:
        return Path(workspace).absolute() / ".spacetail"
    return runtime_dir(env) / "state"


def runtime_dir(env: Mapping[str, str]) -> Path:
    """A per-user folder local to this machine or container (never the shared workspace)."""
    xdg = env.get("XDG_RUNTIME_DIR", "").strip()
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "spacetail"
    # platformdirs falls back to /tmp/runtime-<uid>; importing it costs more than this line.
    return Path(f"/tmp/runtime-{os.getuid()}") / "spacetail"


def _digest(path: Path) -> str:
    """A short name for PATH, the same in every process: it only tells one state folder's
    private folders from another's (hashlib would cost `spacetail status` 3 ms to import)."""
    import zlib

    raw = os.fsencode(path)
    return f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"


class Paths:
    """Every file of one spacetail instance, derived from its state folder."""

    # A plain class, not a dataclass: `spacetail status` should not pay for importing dataclasses.
    __slots__ = ("root", "runtime", "setting")

    def __init__(self, root: Path, runtime: Path, setting: str = "SPACETAIL_DIR") -> None:
        self.root = root
        self.runtime = runtime
        self.setting = setting  # what a message about the state folder names: the variable or --dir

    def __repr__(self) -> str:
        return f"Paths({self.root!s}, {self.runtime!s})"

    @classmethod
    def from_env(cls, env: Mapping[str, str], setting: str = "SPACETAIL_DIR") -> Paths:
        return cls(state_dir(env), runtime_dir(env), setting)

    @property
    def ctl_lock(self) -> Path:
        """Held by up and down while they change things: serializes them."""
        return self.root / "spacetail.lock"

    @property
    def manager_lock(self) -> Path:
        """Held by the live manager for its whole life: free means no manager."""
        return self.root / "manager.lock"

    @property
    def record(self) -> Path:
        return self.root / "manager.json"

    @property
    def last_stop(self) -> Path:
        """Why the last manager stopped on its own: outlives it, for status and wait."""
        return self.root / "last-stop.json"

    @property
    def manager_log(self) -> Path:
        return self.root / "manager.log"

    @property
    def tailscaled_log(self) -> Path:
        return self.root / "tailscaled.log"

    @property
    def node_state_dir(self) -> Path:
        return self.root / "tailscaled"

    @property
    def socket_dir(self) -> Path:
        """The state folder, or a short private folder when socket paths would be too long."""
        if len(os.fsencode(self.root / "tailscaled.sock")) <= SOCKET_PATH_MAX:
            return self.root
        digest = _digest(self.root)
        short = self.runtime / f"s-{digest}"
        if len(os.fsencode(short / "tailscaled.sock")) <= SOCKET_PATH_MAX:
            return short
        return Path(f"/tmp/spacetail-{os.getuid()}") / digest

    @property
    def control_socket(self) -> Path:
        return self.socket_dir / "control.sock"

    @property
    def tailscaled_socket(self) -> Path:
        return self.socket_dir / "tailscaled.sock"

    @property
    def secrets_dir(self) -> Path:
        """Secrets go to container-local storage, never to the workspace that outlives the phase."""
        return self.runtime / f"k-{_digest(self.root)}"

    def private_dirs(self) -> list[Path]:
        dirs = [self.root, self.secrets_dir]
        if self.socket_dir != self.root:
            dirs.append(self.socket_dir)
        return dirs


def ensure_private_dir(path: Path, setting: str = "SPACETAIL_DIR") -> None:
    """Create PATH 0700 if missing; refuse one we do not own or that others can write, and one
    below a folder another user could change (OpenSSH's StrictModes, for every component)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        _create_private(path, setting)
    except OSError as exc:
        raise _unreachable(path, setting, exc) from exc
    check_private_dir(path, setting)


def check_existing_dir(path: Path, setting: str = "SPACETAIL_DIR") -> bool:
    """ensure_private_dir's checks, creating nothing (for the commands that only look): a PATH
    that exists must pass check_private_dir; a missing one must have nothing above it that
    another user could change, or they could create it a moment later. Whether PATH exists."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        check_ancestors(path, setting, missing_ok=True)
        return False
    except OSError as exc:
        raise _unreachable(path, setting, exc) from exc
    check_private_dir(path, setting)
    return True


def _create_private(path: Path, setting: str) -> None:
    """Create what is missing of PATH one level at a time, 0700. Before the first folder is
    made, everything above it is checked as written and as resolved (a symlink of our own may
    lead into a folder another user controls): nothing is created inside a folder another user
    could change, nor through a link into one."""
    checked = False
    for folder in [*reversed(path.parents), path]:
        try:
            os.lstat(folder)
            continue
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _unreachable(path, setting, exc) from exc
        if not checked:  # below it, only folders made here, 0700, ours
            check_ancestors(folder, setting, target=path)
            checked = True
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise _unusable(path, setting, exc) from exc


def check_private_dir(path: Path, setting: str = "SPACETAIL_DIR") -> None:
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _unreachable(path, setting, exc) from exc
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        check_ancestors(path, setting)  # planted in a folder another user controls: the cause
        raise ConfigError(
            f"{setting}: {path} is not a plain folder (a symlink or a file); "
            f"remove it or point {_dir_setting(setting)} elsewhere"
        )
    if st.st_uid != os.getuid():
        raise ConfigError(
            f"{setting}: {path} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}); "
            f"point {_dir_setting(setting)} at a folder of your own"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"{setting}: {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 700 {path}"
        )
    check_ancestors(path, setting)
    if stat.S_IMODE(st.st_mode) != 0o700:
        # Ours and not writable by others: tightening it is safe and makes sockets private.
        os.chmod(path, 0o700)


def _dir_setting(setting: str) -> str:
    """The state folder's own setting to fix; XDG_RUNTIME_DIR's folders are fixed there."""
    return setting if setting in ("SPACETAIL_DIR", "--dir") else "SPACETAIL_DIR"


def check_ancestors(
    path: Path, setting: str, *, missing_ok: bool = False, target: Path | None = None
) -> None:
    """Every folder above PATH, as written and as resolved, is one no other user can change:
    owned by root or by us, and not writable by others unless sticky (like /tmp, whose entries
    then belong to their creator); a symlink on the way belongs to root or to us. Otherwise
    another user could swap a folder on the way for one holding their own files. With
    MISSING_OK, folders that do not exist (yet) are skipped. TARGET is what messages name as
    the folder on the way to (PATH itself by default)."""
    literal = list(reversed(path.parents))
    resolved = list(reversed(Path(os.path.realpath(path.parent)).parents))
    resolved.append(Path(os.path.realpath(path.parent)))
    for folder in literal + resolved:
        _check_above(folder, target or path, setting, missing_ok=missing_ok)


def _check_above(folder: Path, path: Path, setting: str, *, missing_ok: bool = False) -> None:
    try:
        st = os.lstat(folder)
    except FileNotFoundError as exc:
        if missing_ok:
            return
        raise _unreachable(path, setting, exc) from exc
    except OSError as exc:
        raise _unreachable(path, setting, exc) from exc
    me = os.getuid()
    fix = f"set {setting} to a folder of your own"
    if st.st_uid not in (0, me):
        what = "is a symlink of" if stat.S_ISLNK(st.st_mode) else "belongs to"
        raise ConfigError(
            f"{setting}: {folder} (on the way to {path}) {what} uid {st.st_uid}, who could "
            f"redirect spacetail's files; {fix}"
        )
    if stat.S_ISLNK(st.st_mode):
        return  # root's or ours; where it leads is checked as resolved
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{setting}: {folder} (on the way to {path}) is not a folder; {fix}")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise ConfigError(
            f"{setting}: {folder} (on the way to {path}) is writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):o}), who could redirect spacetail's files; {fix}"
        )


def _unreachable(path: Path, setting: str, exc: OSError) -> ConfigError | OperationFailed:
    """Why PATH cannot even be looked at: a folder on the way that is closed to us is named,
    with whose it is (another user's folder, as `down` by the wrong user meets it)."""
    blocker = _closed_folder(path) if exc.errno == errno.EACCES else None
    if blocker is None:
        return _unusable(path, setting, exc)
    try:
        st = os.stat(blocker)
        whose = f"uid {st.st_uid}'s, mode {stat.S_IMODE(st.st_mode):o}"
    except OSError:
        whose = "not yours"
    return ConfigError(
        f"{setting}: cannot reach {path}: {blocker} ({whose}) is closed to uid {os.getuid()}; "
        f"run spacetail as the user who ran `spacetail up`, or point {_dir_setting(setting)} "
        "at a folder of your own"
    )


def _closed_folder(path: Path) -> Path | None:
    """The first folder on the way to PATH that we may not enter, if there is one."""
    for folder in reversed(path.parents):
        try:
            os.stat(folder)
        except OSError:
            return None
        if not os.access(folder, os.X_OK):
            return folder
    return None


def _unusable(path: Path, setting: str, exc: OSError) -> ConfigError | OperationFailed:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ConfigError(
            f"{setting}: cannot create {path} ({exc.strerror}); "
            f"point {_dir_setting(setting)} at a writable folder"
        )
    if exc.errno == errno.ENOSPC:
        return OperationFailed(f"{setting}: no space left to create {path}; free some disk space")
    return OperationFailed(f"{setting}: cannot use {path}: {exc.strerror or exc}")


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """A descriptor on PATH, only if PATH is a regular file: never following a symlink
    (O_NOFOLLOW) and never blocking on a FIFO planted there (O_NONBLOCK, then fstat). Raises
    OSError for anything else; the descriptor is blocking again when returned."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_file(path: Path, *, strict: bool = False) -> bool:
    """Unlink PATH (never following a symlink); True when something was removed. A file that is
    not there, or cannot go (a read-only workspace, a folder in its place), is left and False
    says so; with STRICT only a missing one is: what must go before we create ours (a file
    planted at a log's path) raises instead."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError:
        if strict:
            raise
        return False
    return True
