"""What spacetail says to a person: one line on stderr, prefixed so that a Spacelift log shows
whose line it is, and detail indented under it."""

from __future__ import annotations

TYPE_CHECKING = False  # keeps typing out of `spacetail status`
if TYPE_CHECKING:
    from typing import TextIO


def say(out: TextIO, message: str) -> None:
    print(f"spacetail: {message}", file=out, flush=True)


def indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())
