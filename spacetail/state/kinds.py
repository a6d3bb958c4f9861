"""What kind of thing went wrong (`FailureClass`): the name `status --json` gives it (`kind`),
from which `up`, `status` and `doctor` choose their advice without reading the sentence again.

Two families: what tailscale said (tailnet/failures.py reads its words into one of these), and
what the manager itself saw of tailscaled and of its own life (a LocalAPI that stopped
answering, a tailscaled that would not stay up, the maximum lifetime, the shell's exit). The
status carries the kind's value, a string (`spacetail status` does not even import this
module); `kind_of` reads it back."""

from __future__ import annotations

import enum


class FailureClass(enum.Enum):
    # --- tailscale's words ---------------------------------------------------------------
    USAGE = "usage"  # a command line tailscale refuses
    LOCAL = "local"  # this machine: a port in use, a socket path, a binary that cannot run
    KEY_REJECTED = "key-rejected"
    TAGS_NOT_PERMITTED = "tags-not-permitted"
    CONTROL_UNREACHABLE = "control-unreachable"
    DNS_FAILURE = "dns-failure"
    TIMEOUT_STARTING = "timeout-starting"  # not Running in time, with no reason given
    WIF_REJECTED = "wif-rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    # --- what the manager saw --------------------------------------------------------------
    TAILSCALED_UNRESPONSIVE = "tailscaled-unresponsive"  # alive, but its LocalAPI froze
    TAILSCALED_EXITED = "tailscaled-exited"  # it ended (or could not start) with no reason
    TAILSCALED_CRASH_LOOP = "tailscaled-crash-loop"  # restarted as often as allowed, in vain
    LOGGED_OUT = "logged-out"  # logged out behind the manager's back while Running
    LIFETIME = "lifetime"  # SPACETAIL_MAX_LIFETIME reached
    SHELL_EXIT = "shell-exit"  # the watched shell of the phase exited
    SIGNAL = "signal"  # the manager was sent SIGTERM, SIGINT or SIGHUP
    DOWN = "down"  # `spacetail down` asked
    MANAGER_GONE = "manager-gone"  # it stopped answering before it gave a verdict
    INTERNAL = "internal-error"  # a bug in spacetail


def kind_of(value: str | None) -> FailureClass | None:
    """The kind a status or last-stop.json names (its value, a string there: a newer manager
    may name one this spacetail does not know, and the status must still be read); None when
    it names none, or none known."""
    try:
        return FailureClass(value) if value else None
    except ValueError:
        return None
