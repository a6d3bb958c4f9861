"""The manager's log file: timestamped lines with every secret redacted, and the redaction
itself (`Redactor`): the shapes of keys and tokens, and the very secrets this process knows
(config/known_secrets.py), applied to every text that leaves the manager."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from spacetail.state.paths import open_regular, remove_file

TYPE_CHECKING = False  # keeps typing out of `spacetail status`
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TextIO

_SECRETS = (
    r"tskey-[A-Za-z0-9]+-[A-Za-z0-9_-]+(?:\?[^\s\"']*)?"  # auth keys and OAuth client secrets
    r"|eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # JWTs (ID tokens)
)


def holds_secret(text: str) -> bool:
    """Whether TEXT holds something shaped like a key, an OAuth secret or an ID token (any
    tskey- at all: older keys have fewer parts than redact() looks for)."""
    return "tskey-" in text or re.search(_SECRETS, text) is not None


def redact(text: str) -> str:
    return re.sub(_SECRETS, lambda m: m.group(0)[:11] + "…[redacted]", text)


HIDDEN = "[redacted]"
# Shorter secrets are not searched for in free text: a 3-letter password would garble every
# word that holds it (config/proxyurl.py masks them where the value itself is printed).
MIN_FREE_TEXT = 4


class Redactor:
    """redact() and, first, every secret SECRETS names, wherever it appears whole: the one
    redaction of every text that leaves the manager (its log, the status, wait's and up's
    words, last-stop.json, tailscaled's lines)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = {s for s in secrets if len(s) >= MIN_FREE_TEXT}
        ordered = sorted(known, key=len, reverse=True)  # a secret inside another: longest first
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(_hide, text)
        return redact(text)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)


def _hide(m: re.Match[str]) -> str:
    found = m.group(0)
    return found[:11] + "…" + HIDDEN if found.startswith("tskey-") else HIDDEN


def open_append(path: Path) -> int:
    """A descriptor appending to PATH (created 0600). Anything but a regular file planted at
    PATH (a symlink, a FIFO that would block the open or every write, a socket) is removed and
    replaced by a new file, never followed or written to."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        return open_regular(path, flags)
    except OSError:
        remove_file(path, strict=True)
    return open_regular(path, flags | os.O_EXCL)


class Log:
    """Append-only, line-buffered; writes never raise (a full disk must not kill the manager)."""

    def __init__(self, path: Path | None, redactor: Redactor | None = None) -> None:
        self.path = path
        self.redact = redactor or Redactor()
        self._file: TextIO | None = None
        if path:
            # backslashreplace: a path that is not UTF-8 (surrogate-escaped) is written as \\xff
            # escapes instead of raising and taking the manager down.
            fd = open_append(path)
            self._file = open(fd, "a", encoding="utf-8", errors="backslashreplace", buffering=1)  # noqa: SIM115

    def _write(self, level: str, message: str) -> None:
        if self._file is None:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}"
        try:
            self._file.write(f"{stamp} {level} {self.redact(message)}\n")
        except (OSError, ValueError):
            pass

    def info(self, message: str) -> None:
        self._write("info", message)

    def error(self, message: str) -> None:
        self._write("error", message)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def tail(path: Path, lines: int = 12, max_bytes: int = 16384) -> str:
    """The last LINES lines of a log file, redacted; empty if there is none."""
    try:
        with open(open_regular(path, os.O_RDONLY), "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return redact("\n".join(data.splitlines()[-lines:]))
