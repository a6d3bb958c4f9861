"""What spacetail knows about tailscale: where the binaries are, the command lines it builds, the
LocalAPI over the unix socket, and how to read tailscale's own error text."""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from spacetail.config.loader import Config
from spacetail.state.paths import Paths
from spacetail.state.status import Node

# ipn.State values as they appear in watch-ipn-bus notifications.
STATES = {
    0: "NoState",
    1: "InUseOtherUser",
    2: "NeedsLogin",
    3: "NeedsMachineAuth",
    4: "Stopped",
    5: "Starting",
    6: "Running",
}
NOTIFY_INITIAL_STATE = 2


class Binaries:
    """Where the two executables are."""

    __slots__ = ("tailscale", "tailscaled")

    def __init__(self, tailscale: Path, tailscaled: Path) -> None:
        self.tailscale = tailscale
        self.tailscaled = tailscaled


def clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment for tailscaled: no proxy variables (it would try to reach the control
    server through its own, not yet running, proxy) and no secrets of ours."""
    from spacetail.config.credentials import SECRET_VARIABLES
    from spacetail.state.proxyenv import PROXY_VARIABLES

    drop = set(PROXY_VARIABLES) | set(SECRET_VARIABLES)
    return {k: v for k, v in env.items() if k not in drop}


def tailscaled_argv(binaries: Binaries, cfg: Config, paths: Paths) -> list[str]:
    argv = [
        str(binaries.tailscaled),
        "--tun=userspace-networking",
        f"--socket={paths.tailscaled_socket}",
        f"--statedir={paths.node_state_dir}",
        f"--socks5-server={cfg.socks5}",
        f"--outbound-http-proxy-listen={cfg.http_proxy}",
    ]
    if cfg.persist_node:
        argv.append(f"--state={paths.node_state_dir / 'tailscaled.state'}")
    else:
        argv.append("--state=mem:")
    if not cfg.log_upload:
        argv.append("--no-logs-no-support")
    argv.extend(cfg.tailscaled_extra_args)
    return argv


def up_argv(
    binaries: Binaries, cfg: Config, paths: Paths, secret_file: Path | None, attempt_timeout: float
) -> list[str]:
    """`tailscale up`, with every secret passed as file: so none is on a command line."""
    argv = [
        str(binaries.tailscale),
        f"--socket={paths.tailscaled_socket}",
        "up",
        f"--hostname={cfg.hostname}",
        f"--accept-routes={str(cfg.accept_routes).lower()}",
        f"--accept-dns={str(cfg.accept_dns).lower()}",
        f"--timeout={max(1000, int(attempt_timeout * 1000))}ms",
        "--reset",
    ]
    if cfg.tags:
        argv.append(f"--advertise-tags={','.join(cfg.tags)}")
    if cfg.exit_node:
        argv.append(f"--exit-node={cfg.exit_node}")
    if cfg.login_server:
        argv.append(f"--login-server={cfg.login_server}")
    auth = cfg.auth
    if auth is not None and secret_file is not None:
        # As containerboot passes them: the client ID (workload identity's, or the OAuth
        # client's beside its secret), the secret's file.
        if auth.client_id:
            argv.append(f"--client-id={auth.client_id}")
        argv.append(f"--{auth.file_flag}=file:{secret_file}")
    argv.extend(cfg.extra_args)
    return argv


def secret_payload(cfg: Config) -> str | None:
    """What goes into the 0600 file that `tailscale up` reads."""
    auth = cfg.auth
    if auth is None:
        return None
    value = auth.secret.read()
    # An OAuth secret mints a key; without these the node would be neither ephemeral nor
    # preauthorized (tailscale's defaults: ephemeral=true, preauthorized=false).
    if auth.kind == "oauth" and "?" not in value:
        value += f"?ephemeral={str(cfg.ephemeral).lower()}&preauthorized=true"
    return value


def logout_argv(binaries: Binaries, paths: Paths) -> list[str]:
    return [str(binaries.tailscale), f"--socket={paths.tailscaled_socket}", "logout"]


def ping_target(peer: str) -> str:
    """PEER as `tailscale ping` finds it among its peers: it matches a peer's short name, or its
    DNSName exactly, which ends with a dot; a full name without the dot is not matched and goes
    to the system's resolver, which in a container knows no tailnet name."""
    is_address = ":" in peer or all(part.isdigit() for part in peer.split("."))
    if "." in peer and not peer.endswith(".") and not is_address:
        return peer + "."
    return peer


def ping_argv(binaries: Binaries, socket_path: Path, peer: str, timeout: float) -> list[str]:
    return [
        # --until-direct=false: a relayed (DERP) answer proves the peer is reachable; with the
        # default, one DERP pong makes `tailscale ping --c=1` exit 1.
        str(binaries.tailscale), f"--socket={socket_path}", "ping", "--c=1",
        "--until-direct=false", f"--timeout={max(1, int(timeout))}s", ping_target(peer),
    ]  # fmt: skip


# --- LocalAPI -------------------------------------------------------------------------------


TYPE_CHECKING = False
if TYPE_CHECKING:
    from http.client import HTTPConnection

_connection_class: Callable[[Path, float], HTTPConnection] | None = None


def _connection(path: Path, timeout: float) -> HTTPConnection:
    """An HTTP connection over tailscaled's unix socket. http.client (and the email package it
    pulls in) is imported on first use, in the watcher thread, not before tailscaled starts."""
    global _connection_class
    if _connection_class is None:
        import http.client

        class UnixHTTPConnection(http.client.HTTPConnection):
            def __init__(self, path: Path, timeout: float) -> None:
                super().__init__("local-tailscaled.sock", timeout=timeout)
                self._path = path

            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                try:
                    sock.connect(os.fsencode(self._path))
                except OSError:
                    sock.close()
                    raise
                self.sock = sock

        _connection_class = UnixHTTPConnection
    return _connection_class(path, timeout)


def _http_errors() -> tuple[type[Exception], ...]:
    import http.client

    return (OSError, http.client.HTTPException)


class LocalAPIError(Exception):
    pass


class LocalAPI:
    """tailscaled's HTTP API over its unix socket (the same one the tailscale CLI uses)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _request(self, method: str, url: str, timeout: float) -> tuple[int, bytes]:
        conn = _connection(self.path, timeout)
        try:
            conn.request(method, url, headers={"Host": "local-tailscaled.sock"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except _http_errors() as exc:
            raise LocalAPIError(str(exc)) from exc
        finally:
            conn.close()

    def status(self, timeout: float = 2.0, *, peers: bool = True) -> dict[str, Any]:
        """`tailscale status --json`; without PEERS, the node alone (its size does not grow with
        the tailnet), as `tailscale status --peers=false` asks."""
        url = "/localapi/v0/status" if peers else "/localapi/v0/status?peers=false"
        code, body = self._request("GET", url, timeout)
        if code != 200:
            raise LocalAPIError(f"status: HTTP {code}")
        data = json.loads(body)
        if not isinstance(data, dict):
            raise LocalAPIError("status: not a JSON object")
        return data

    def dns_query(self, name: str, qtype: str = "A", timeout: float = 5.0) -> bytes:
        """The raw DNS response of tailscaled's own resolver (what `tailscale dns query` asks;
        it knows split-DNS names that the proxies cannot resolve, tailscale#4677)."""
        from urllib.parse import urlencode

        query = urlencode({"name": name, "type": qtype})
        code, body = self._request("GET", f"/localapi/v0/dns-query?{query}", timeout)
        if code != 200:
            text = body.decode(errors="replace").strip()
            raise LocalAPIError(f"dns-query: HTTP {code}: {text}")
        try:
            return base64.b64decode(json.loads(body)["Bytes"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            raise LocalAPIError(f"dns-query: unexpected answer: {exc!r}") from exc

    def watch(self) -> Iterator[dict[str, Any]]:
        """Notifications from watch-ipn-bus, the first one carrying the current state."""
        conn = _connection(self.path, 3600.0)
        try:
            conn.request(
                "GET",
                f"/localapi/v0/watch-ipn-bus?mask={NOTIFY_INITIAL_STATE}",
                headers={"Host": "local-tailscaled.sock"},
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise LocalAPIError(f"watch-ipn-bus: HTTP {resp.status}")
            while True:
                line = resp.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    yield data
        except _http_errors() as exc:
            raise LocalAPIError(str(exc)) from exc
        finally:
            conn.close()


def node_from_status(status: Mapping[str, Any]) -> Node:
    """What spacetail reports of `tailscale status --json`; ValueError for what is not one."""
    self_ = status.get("Self") or {}
    ips = status.get("TailscaleIPs") or self_.get("TailscaleIPs") or []
    health = status.get("Health") or []
    if not isinstance(self_, dict) or not isinstance(ips, list) or not isinstance(health, list):
        raise ValueError("status: unexpected shape")
    backend = status.get("BackendState")
    return Node(
        backend_state=str(backend) if backend else None,
        tailscale_ips=tuple(str(ip) for ip in ips),
        hostname=str(self_.get("HostName") or "") or None,
        dns_name=str(self_.get("DNSName") or "").rstrip(".") or None,
        health=tuple(str(h) for h in health),
    )
