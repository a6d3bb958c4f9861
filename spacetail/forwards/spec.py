"""Local forwarders: what `--forward [ADDR:]LPORT=HOST:PORT` and SPACETAIL_FORWARDS mean, and the
listening sockets `up` binds before the manager starts (so a taken port fails `up` at once, with
the process that holds it). The data plane that serves them is relay.Forwarder."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from spacetail.config import hostport
from spacetail.errors import ConfigError, OperationFailed

EXAMPLE = "5432=db.example.ts.net:5432"
LISTEN_BACKLOG = 128
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


@dataclass(frozen=True)
class ForwardSpec:
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    @property
    def listen(self) -> str:
        return hostport.format(self.listen_host, self.listen_port)

    @property
    def target(self) -> str:
        return hostport.format(self.target_host, self.target_port)


def _port(setting: str, spec: str, text: str, what: str) -> int:
    try:
        return hostport.parse_port(text)
    except ValueError:
        raise ConfigError(
            f"{setting}: {what} {text!r} in {spec!r} is not a port; use 1-65535"
        ) from None


def parse_port(setting: str, text: str) -> int:
    """A TCP port given alone (`spacetail nc HOST PORT`); ConfigError naming SETTING if not."""
    try:
        return hostport.parse_port(text)
    except ValueError as exc:
        raise ConfigError(f"{setting}: {exc}") from None


def _listen_host(setting: str, spec: str, text: str, public: bool) -> str:
    host = "127.0.0.1" if text in ("", "localhost") else text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{setting}: listen address {text!r} in {spec!r} is not an IP address; "
            "use 127.0.0.1 or leave it out"
        ) from None
    if not address.is_loopback and not public:
        raise ConfigError(
            f"{setting}: {spec!r} would listen on {host}, reachable from other machines; "
            "listen on 127.0.0.1, or set SPACETAIL_FORWARD_PUBLIC=true (--forward-public)"
        )
    return str(address)


def parse_one(setting: str, spec: str, *, public: bool) -> ForwardSpec:
    """One [ADDR:]LPORT=HOST:PORT; ConfigError naming SETTING when it is not one."""
    shape = f"{setting}: {spec!r} is not [ADDR:]LPORT=HOST:PORT; write e.g. {EXAMPLE}"
    local, sep, remote = spec.partition("=")
    if not sep or "=" in remote:
        raise ConfigError(shape)
    try:
        local_parts = hostport.split(local) if ":" in local else ("", local)
        remote_parts = hostport.split(remote)
    except ValueError:
        raise ConfigError(shape) from None
    if not remote_parts[0]:
        raise ConfigError(shape)
    target_host = remote_parts[0]
    if not _HOSTNAME.match(target_host):
        try:
            target_host = str(ipaddress.ip_address(target_host))
        except ValueError:
            raise ConfigError(f"{setting}: {target_host!r} in {spec!r} is not a host name or "
                              f"an IP address; write e.g. {EXAMPLE}") from None  # fmt: skip
    return ForwardSpec(
        listen_host=_listen_host(setting, spec, local_parts[0], public),
        listen_port=_port(setting, spec, local_parts[1], "local port"),
        target_host=target_host.rstrip(".") or target_host,
        target_port=_port(setting, spec, remote_parts[1], "target port"),
    )


def parse_forwards(setting: str, raw: str, *, public: bool) -> tuple[ForwardSpec, ...]:
    """Specs separated by commas or whitespace; ConfigError (one line naming SETTING) for a bad
    one, a port given twice, or a non-loopback listen address without PUBLIC."""
    specs: list[ForwardSpec] = []
    for text in re.split(r"[\s,]+", raw.strip()):
        if not text:
            continue
        spec = parse_one(setting, text, public=public)
        clash = next((s for s in specs if s.listen_port == spec.listen_port), None)
        if clash is not None:
            raise ConfigError(
                f"{setting}: local port {spec.listen_port} is used twice "
                f"({clash.target} and {spec.target}); give each forward its own local port"
            )
        specs.append(spec)
    return tuple(specs)


# --- binding -----------------------------------------------------------------------------------


def bind_listeners(specs: tuple[ForwardSpec, ...] | list[ForwardSpec]) -> list[socket.socket]:
    """A listening, non-blocking socket per spec, in order. A port that cannot be bound raises
    OperationFailed naming it and, when it can be found, the process holding it; the sockets
    already bound are closed first."""
    bound: list[socket.socket] = []
    try:
        for spec in specs:
            bound.append(_bind(spec))
    except BaseException:
        for sock in bound:
            sock.close()
        raise
    return bound


def _bind(spec: ForwardSpec) -> socket.socket:
    family = socket.AF_INET6 if ":" in spec.listen_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only lets us reuse a port whose old connections sit in TIME_WAIT (the
        # previous phase's forward); a live listener still makes bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((spec.listen_host, spec.listen_port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OperationFailed(_bind_failure(spec, exc)) from exc
    return sock


def _bind_failure(spec: ForwardSpec, exc: OSError) -> str:
    head = f"cannot listen on {spec.listen} for the forward to {spec.target}"
    if exc.errno != errno.EADDRINUSE:
        return f"{head}: {exc.strerror or exc}; pick another local address or port"
    holder = port_holder(spec.listen_port)
    who = f" by {holder}" if holder else ""
    return (f"{head}: port {spec.listen_port} is already in use{who}; "
            "stop that process or pick another local port")  # fmt: skip


# --- who holds a port (/proc) -----------------------------------------------------------------

_LISTEN = "0A"


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Socket inodes listening on PORT, from /proc/net/tcp and tcp6."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                inodes.add(fields[9])
    return inodes


def _links(fd_dir: Path) -> set[str]:
    """What the fds in FD_DIR point at; an fd closed meanwhile (the listing's own) is skipped."""
    links: set[str] = set()
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return links
    for fd in fds:
        try:
            links.add(os.readlink(fd_dir / fd))
        except OSError:
            continue
    return links


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """'NAME (pid N)' of a process listening on PORT, or None when none we may read holds it
    (only our own user's processes' fds are readable)."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(port, proc)}
    if not wanted:
        return None
    for entry in sorted(os.listdir(proc), key=lambda e: (len(e), e)):
        if not entry.isdigit():
            continue
        if _links(proc / entry / "fd") & wanted:
            try:
                name = (proc / entry / "comm").read_text().strip()
            except OSError:
                name = "a process"
            return f"{name} (pid {entry})"
    return None
