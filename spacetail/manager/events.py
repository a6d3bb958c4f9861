"""What the helper threads tell the manager's loop. Each is a small typed record: the loop
matches on the type, never on a string, and every record names the child it is about so that
news from a process already replaced is recognized and ignored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from spacetail.state.status import Node


class ChildProcess(Protocol):
    """What the manager needs of a child: spacetail.manager.children.Child, or a test's fake."""

    pid: int
    exit_code: int | None
    output: bytes

    def signal(self, signum: int) -> None: ...

    def wait(self, timeout: float) -> bool: ...


@dataclass(frozen=True)
class ChildExited:
    child: ChildProcess
    code: int


@dataclass(frozen=True)
class ApiReady:
    """tailscaled's LocalAPI answered the watch request."""

    child: ChildProcess


@dataclass(frozen=True)
class ApiTimeout:
    """tailscaled's LocalAPI never answered."""

    child: ChildProcess
    error: str


@dataclass(frozen=True)
class StateChanged:
    """tailscale's backend state, as watch-ipn-bus reported it."""

    child: ChildProcess
    state: str


@dataclass(frozen=True)
class BusClosed:
    """The watch-ipn-bus stream ended while tailscaled may still live."""

    child: ChildProcess
    error: str


@dataclass(frozen=True)
class ErrMessage:
    child: ChildProcess
    text: str


@dataclass(frozen=True)
class NodeRead:
    """What a read of tailscale's status (begun at READ_AT) found."""

    child: ChildProcess
    node: Node
    read_at: float


Event = ChildExited | ApiReady | ApiTimeout | StateChanged | BusClosed | ErrMessage | NodeRead
