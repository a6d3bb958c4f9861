"""Where a secret is and how it is read: a value, or a file that only its owner can read or
write, read by the one guarded reader `up` and `doctor` share (a regular file only, never
blocking, bounded in size, judged again on the open descriptor). A Secret never prints itself."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from spacetail.errors import ConfigError


@dataclass(frozen=True)
class Secret:
    """A secret value or a file holding one; never printed."""

    source: str  # the variable it came from, for messages
    value: str | None = field(default=None, repr=False)
    path: Path | None = None
    # Spacelift's own token file in the workspace: its mode is Spacelift's business, and a
    # symlink planted there is not followed.
    spacelift_file: bool = False

    def read(self) -> str:
        if self.value is not None:
            return self.value.strip()
        assert self.path is not None
        if self.spacelift_file:
            return read_secret_file(self.source, self.path, check_mode=False,
                                    follow_symlinks=False, fix=SPACELIFT_FILE_FIX)  # fmt: skip
        return read_secret_file(self.source, self.path)

    def __repr__(self) -> str:
        where = f"file:{self.path}" if self.path else "<redacted>"
        return f"Secret({self.source}, {where})"


# A key is about 100 bytes, an ID token a few KiB: this is far above both, and far below what
# would hurt to hold in memory (/dev/zero never ends; a sparse file can claim gigabytes).
MAX_SECRET_BYTES = 64 * 1024
FILE_FIX = "point file: at the secret"
SPACELIFT_FILE = "spacelift.oidc"
SPACELIFT_FILE_FIX = "remove it (Spacelift writes a regular file there), or set TS_ID_TOKEN"
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink"))  # fmt: skip


def read_secret_file(
    source: str,
    path: Path,
    *,
    check_mode: bool = True,
    follow_symlinks: bool = True,
    fix: str = FILE_FIX,
) -> str:
    """The one reader of a file holding a key or token, for `up` and `doctor` alike. Only a
    regular file, judged before it is opened (a device is never opened) and again on the open
    descriptor (it may have been swapped); opened without blocking (a FIFO would wait for a
    writer for ever); at most MAX_SECRET_BYTES; UTF-8. With CHECK_MODE, a file that others may
    read (they would have the key) or write (they could swap in their own) is refused.
    Raises ConfigError: one line naming SOURCE and the fix."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        _judge(source, path, os.stat(path, follow_symlinks=follow_symlinks), fix, check_mode)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: file {path} does not exist; create it or fix the path after file:"
        ) from None
    except PermissionError:
        raise ConfigError(
            f"{source}: {path} is not readable by uid {os.getuid()}; fix its owner"
        ) from None
    except OSError as exc:
        raise _unreadable(source, path, exc) from None
    try:
        _judge(source, path, os.fstat(fd), fix, check_mode)
        data = b""
        while len(data) <= MAX_SECRET_BYTES and (chunk := os.read(fd, MAX_SECRET_BYTES + 1)):
            data += chunk
    except OSError as exc:
        raise _unreadable(source, path, exc) from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:  # a file that grew, or one whose size says 0 (/proc)
        raise _too_large(source, path, len(data), fix)
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: {path} is not text (UTF-8); {fix}") from None


def _judge(source: str, path: Path, st: os.stat_result, fix: str, check_mode: bool) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
        raise ConfigError(f"{source}: {path} is not a regular file ({kind}); {fix}")
    mode = stat.S_IMODE(st.st_mode)
    if check_mode and mode & 0o044:
        raise ConfigError(
            f"{source}: {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
        )
    if check_mode and mode & 0o022:
        raise ConfigError(
            f"{source}: {path} is writable by other users (mode {mode:o}), who could put their "
            f"own key in it; run: chmod 600 {path}"
        )
    if st.st_size > MAX_SECRET_BYTES:
        raise _too_large(source, path, st.st_size, fix)


def _unreadable(source: str, path: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"{source}: cannot read {path} ({exc.strerror}); check the file")


def _too_large(source: str, path: Path, size: int, fix: str) -> ConfigError:
    return ConfigError(
        f"{source}: {path} is {size} bytes, too large for a key or token "
        f"(at most {MAX_SECRET_BYTES}); {fix}"
    )
