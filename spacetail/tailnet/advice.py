"""What to do about a failure: one line of advice per kind, made precise where the explaining
line says more (the setting a refused flag is about, the port another program holds, a revoked
key). failures.py says what went wrong; this says what a person does next."""

from __future__ import annotations

import re

from spacetail.state.kinds import FailureClass

_ADVICE = {
    FailureClass.USAGE: "tailscale refused a flag from {setting}: fix it there; a retry can't help",
    FailureClass.LOCAL: "this machine refused: {local}; a retry can't help",
    FailureClass.KEY_REJECTED: (
        "the control server refused the auth key (wrong, expired, revoked, or a single-use key "
        "already used): create a new one and update TS_AUTHKEY (or TS_CLIENT_SECRET)"
    ),
    FailureClass.TAGS_NOT_PERMITTED: (
        "the key or OAuth client may not assign these tags: fix SPACETAIL_TAGS, or allow them "
        "in the tailnet policy's tagOwners"
    ),
    FailureClass.CONTROL_UNREACHABLE: (
        "the control server could not be reached: check TS_LOGIN_SERVER and the network "
        "(`spacetail doctor` tells more), or raise --timeout"
    ),
    FailureClass.DNS_FAILURE: (
        "the control server's name does not resolve: check TS_LOGIN_SERVER for a typo, and "
        "this machine's DNS (`spacetail doctor`)"
    ),
    FailureClass.TIMEOUT_STARTING: (
        "tailscale was not Running in time and gave no reason: raise --timeout "
        "(SPACETAIL_TIMEOUT), or run `spacetail doctor`"
    ),
    FailureClass.WIF_REJECTED: (
        "the tailnet refused the ID token: check TS_CLIENT_ID, TS_AUDIENCE and the federated "
        "identity's issuer and subject (`spacetail doctor` prints the token's)"
    ),
    FailureClass.EXPIRED: "the auth key has expired: create a new one and update TS_AUTHKEY",
    FailureClass.UNKNOWN: "see tailscaled's lines below, or run `spacetail doctor`",
    # What the manager saw itself: never the network's advice for a local daemon's trouble.
    FailureClass.TAILSCALED_UNRESPONSIVE: (
        "tailscaled on this machine stopped answering its LocalAPI (frozen, starved of CPU or "
        "memory, or stopped with SIGSTOP): `spacetail logs --tailscaled` shows its last lines; "
        "check the runner's load and memory"
    ),
    FailureClass.TAILSCALED_EXITED: (
        "tailscaled on this machine ended before the node was Running: `spacetail logs "
        "--tailscaled` shows why; `spacetail doctor` checks the binaries, the ports and the folder"
    ),
    FailureClass.TAILSCALED_CRASH_LOOP: (
        "tailscaled kept exiting: `spacetail logs --tailscaled` shows why; `spacetail doctor` "
        "checks the binaries and the ports"
    ),
    FailureClass.LOGGED_OUT: (
        "something logged the node out (`tailscale logout`, or the node was removed from the "
        "tailnet); the manager logs in again"
    ),
    FailureClass.LIFETIME: (
        "the manager reached its maximum lifetime: raise SPACETAIL_MAX_LIFETIME if the phase "
        "needs the tailnet longer"
    ),
    FailureClass.SHELL_EXIT: (
        "the phase's shell exited, so the manager stopped with it: run `spacetail up` in the "
        "shell that needs the tailnet"
    ),
    FailureClass.SIGNAL: "the manager was stopped by a signal: `spacetail logs` says which",
    FailureClass.DOWN: "`spacetail down` stopped it: run `spacetail up` to connect again",
    FailureClass.MANAGER_GONE: (
        "the manager ended before it gave a verdict: `spacetail logs` shows its last lines"
    ),
    FailureClass.INTERNAL: "a bug in spacetail: `spacetail logs` shows it; please report it",
}


def advice_of(kind: FailureClass, line: str, setting: str | None) -> str:
    """One line of what to do about a failure of KIND whose explaining line is LINE, about the
    user's SETTING when one is known."""
    lower = line.lower()
    if kind is FailureClass.USAGE:
        if "exit-node" in lower and "invalid value" in lower:
            return "TS_EXIT_NODE must be a tailnet IP or the unique name of an exit node"
        named = setting or "the command line (tailscale's version may differ)"
        return _ADVICE[FailureClass.USAGE].format(setting=named)
    if kind is FailureClass.LOCAL:
        return _ADVICE[FailureClass.LOCAL].format(local=_local_fix(line, setting))
    if kind is FailureClass.KEY_REJECTED and ("revoked" in lower or "deleted" in lower):
        return "the auth key was revoked: create a new one and update TS_AUTHKEY"
    return _ADVICE[kind]


def _local_fix(line: str, setting: str | None) -> str:
    lower = line.lower()
    if "address already in use" in lower or "cannot assign" in lower:
        named = setting or "TS_SOCKS5_SERVER or TS_OUTBOUND_HTTP_PROXY_LISTEN"
        if re.search(r"(?:^|: )proxy listener", lower):
            named = "TS_SOCKS5_SERVER and TS_OUTBOUND_HTTP_PROXY_LISTEN (they share it)"
        return f"another program holds the port; set {named} to a free 127.0.0.1 port"
    if "unix" in lower or "safesocket" in lower:
        return (
            "tailscaled cannot create its socket; point SPACETAIL_DIR at a short, writable "
            "folder of your own"
        )
    if "tstun" in lower or "createengine" in lower:
        return "tailscaled cannot create a TUN device; remove --tun from TS_TAILSCALED_EXTRA_ARGS"
    return (
        "the tailscale binaries cannot run here (wrong architecture or not executable); "
        "reinstall with `spacetail install-tailscale` or use the spacetail runner image"
    )


def advice_for(kind: FailureClass) -> str:
    """What a person should do about a failure of KIND, when nothing more is known of it (a
    verdict carries its own advice, which may name the very setting)."""
    return _ADVICE[kind].format(
        setting="the command line", local="see `spacetail logs --tailscaled`"
    )
