"""The status: what a manager says about itself, the one contract between the manager and every
reader (`status --json`, `wait`, `up`, `env`, `nc`, `doctor`, the hooks' scripts).

One typed value, built in one place (`Manager.status`) from what the manager's loop already
holds, turned into JSON only at the control socket and at `--json`, and parsed back into the
same type by every reader (`Status.from_json`). Its JSON keys are the interface scripts use:
they stay flat and keep their names; `schema` says which version of this contract a reply
follows, and `docs/status.schema.json` describes it (a test validates real output against it
in every state).
"""

from __future__ import annotations

from spacetail.config.scope import Scope
from spacetail.state.identity import ProcessIdentity
from spacetail.state.phases import Phase
from spacetail.state.records import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self

SCHEMA = 1


class Node(Record):
    """What tailscale says about this node, as the manager last read it."""

    backend_state: str | None = None
    tailscale_ips: tuple[str, ...] = ()
    hostname: str | None = None
    dns_name: str | None = None
    health: tuple[str, ...] = ()


class Problem(Record):
    """The last thing that went wrong with the login, in tailscale's words where it gave any:
    a transient error while retrying, or (with advice, setting and exit code) the verdict."""

    reason: str | None = None
    # What went wrong, named: a FailureClass value (state/kinds.py, read with kind_of); the
    # advice is chosen by it. A string, so that a kind a newer manager names is still read.
    kind: str | None = None
    advice: str | None = None
    setting: str | None = None  # the user's setting it is about
    exit_code: int | None = None  # what `up` exits with: 2 for a setting of the user's


class Proxies(Record):
    http: str
    socks5: str


class Forward(Record):
    """One local forward and what it has carried."""

    listen: str
    target: str
    open: int = 0
    total: int = 0
    refused: int = 0  # over the cap of open connections
    refused_other_uid: int = 0  # from another local user, closed at once
    bytes_sent: int = 0
    bytes_received: int = 0
    buffered: int = 0  # read from one side, not yet taken by the other
    last_error: str | None = None
    max_open: int | None = None  # the cap, fitted to the descriptor limit
    fd_limit: int | None = None  # the soft RLIMIT_NOFILE the forwards run under
    fd_limit_raised_from: int | None = None  # the soft limit before the manager raised it
    accept_paused: bool = False  # out of descriptors: not accepting for a moment
    accept_pauses: int = 0


class LastStop(Record):
    """Why the last manager stopped on its own (last-stop.json), for status and wait after it is
    gone, and for `up` when the manager failed before `up` could ask it."""

    at: str
    reason: str
    kind: str | None = None  # why it stopped, named as Problem.kind (the verdict's after a failure)
    advice: str | None = None
    failure: bool = False
    manager_pid: int | None = None
    login_reason: str | None = None
    setting: str | None = None
    exit_code: int | None = None
    tailscaled_log_offset: int = 0


class Status(Record):
    _inline: ClassVar[tuple[str, ...]] = ("node", "login")

    schema: int = SCHEMA
    running: bool = False  # a manager answered
    state_dir: str = ""
    version: str | None = None  # the answering manager's spacetail
    phase: Phase | None = None
    connected: bool = False  # Running, and the manager's login agrees
    node: Node = Node()
    login: Problem = Problem()
    proxies: Proxies | None = None
    manager_pid: int | None = None
    manager: ProcessIdentity | None = None  # boot, PID namespace, start time: never just a PID
    tailscaled_pid: int | None = None
    tailscaled_socket: str | None = None
    tailscale: str | None = None  # the CLI the manager uses
    login_attempts: int = 0
    login_deadline_left: float | None = None  # until the login is given up; None: not logging in
    restarts: int = 0
    last_exit: str | None = None
    tailscaled_log_offset: int = 0
    watch_pid: int | None = None
    uptime: float | None = None
    max_lifetime_left: float | None = None
    forwards: tuple[Forward, ...] = ()
    # What the node joined with: the scope of the phase's Spacelift token (None when it was not
    # read, or had none) and the tags it advertised.
    scope: Scope | None = None
    tags: tuple[str, ...] = ()
    # What the reader found beside (or instead of) an answer; a manager never sends these.
    foreign: bool = False  # the answer came from a manager of another container
    problem: str | None = None  # a lock held by a silent manager, a foreign one, ...
    stale: str | None = None  # files of a manager that is gone
    last_stop: LastStop | None = None

    # A key that predates this type: a stop that was a failure is under `last_failure`.
    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        last = out.pop("last_stop")
        failed = last is not None and last.get("failure")
        out["last_failure"] = last if failed else None
        out["last_stop"] = None if failed else last
        return out

    @classmethod
    def from_json(cls, data: object) -> Self:
        if not isinstance(data, dict):
            raise ValueError("Status: expected a JSON object")
        data = {**data, "last_stop": data.get("last_failure") or data.get("last_stop")}
        status = super().from_json(data)
        if status.schema < 1:
            raise ValueError(f"Status: unknown schema {status.schema}")
        return status

    @property
    def backend_state(self) -> str | None:
        return self.node.backend_state

    @property
    def name(self) -> str | None:
        """The node's name as a person reads it: its MagicDNS name, else its hostname."""
        return self.node.dns_name or self.node.hostname

    @property
    def failed(self) -> bool:
        return self.phase is Phase.FAILED


def reply(status: Status, **envelope: object) -> dict[str, Any]:
    """The JSON a manager sends: the status, with the request's own answer (`ok`, and for a
    wait `timed_out`) beside it."""
    return {**status.to_json(), **envelope}
