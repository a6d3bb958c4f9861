"""The fake tailscale and the real one side by side, as tests/integration/test_fake_fidelity.py
drives them: a work folder and a daemon of each (started as uid 1983 when the tests run as
root), their LocalAPI and watch-ipn-bus, `tailscale up` with a key file, and SOCKS5 and HTTP
proxy clients. A daemon is returned once its LocalAPI socket exists and its proxies listen, so a
test never dials a proxy that is not there yet."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.waiting import poll, wait_listening

HERE = Path(__file__).resolve().parent


FAKES_SRC = HERE / "fakes" / "bin"


REFERENCE = HERE / "fakes" / "reference"


SPACELIFT_UID = 1983


TIMEOUT_MSG = (
    'timeout waiting for Tailscale service to enter a Running state; check health with "tailscale'
    ' status"\n'
)


LOGGED_OUT = "You are logged out. The last login error was: "


def shape(value: Any) -> Any:
    """Keys and value types of a JSON value, recursively."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["list", sorted({json.dumps(shape(v)) for v in value})]
    return type(value).__name__


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def as_spacelift() -> list[str]:
    if os.geteuid() == 0:
        return [
            "setpriv",
            "--reuid",
            str(SPACELIFT_UID),
            "--regid",
            str(SPACELIFT_UID),
            "--clear-groups",
        ]
    return []


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("local-tailscaled.sock", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def localapi(
    sock: Path, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTPConnection(str(sock))
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def status(sock: Path) -> dict[str, Any]:
    code, _, body = localapi(sock, "GET", "/localapi/v0/status")
    assert code == 200
    result: dict[str, Any] = json.loads(body)
    return result


class Watch:
    """A watch-ipn-bus stream."""

    def __init__(self, sock: Path, mask: int) -> None:
        self.conn = UnixHTTPConnection(str(sock), timeout=10.0)
        self.conn.request("GET", f"/localapi/v0/watch-ipn-bus?mask={mask}")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200

    def next(self) -> dict[str, Any]:
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("watch stream ended")
            if line.strip():
                msg: dict[str, Any] = json.loads(line)
                return msg

    def close(self) -> None:
        self.conn.close()


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    sock: Path
    log: Path
    socks_port: int
    http_port: int

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Kit:
    """One flavour of the pair (fake or real), with its work folder."""

    name: str
    bindir: Path
    work: Path
    env: dict[str, str]
    daemons: list[Daemon] = field(default_factory=list)

    def tailscaled_argv(self, sock: Path, socks: str, http_addr: str) -> list[str]:
        return [
            *as_spacelift(),
            str(self.bindir / "tailscaled"),
            "--tun=userspace-networking",
            "--state=mem:",
            f"--statedir={self.work / 'state'}",
            f"--socket={sock}",
            f"--socks5-server={socks}",
            f"--outbound-http-proxy-listen={http_addr}",
            "--no-logs-no-support",
            "--port=0",
        ]

    def start(
        self, env: dict[str, str] | None = None, same_port: bool = True, wait: bool = True
    ) -> Daemon:
        n = len(self.daemons)
        sock = self.work / f"ts{n}.sock"
        log = self.work / f"tailscaled{n}.log"
        socks_port = free_port()
        http_port = socks_port if same_port else free_port()
        argv = self.tailscaled_argv(sock, f"127.0.0.1:{socks_port}", f"127.0.0.1:{http_port}")
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
                cwd=self.work,
                start_new_session=True,
            )
        daemon = Daemon(proc, sock, log, socks_port, http_port)
        self.daemons.append(daemon)
        if wait:
            poll(lambda: sock.exists() or proc.poll() is not None, 10, f"{self.name} socket")
            assert proc.poll() is None, daemon.log_text()

            def exited() -> str | None:
                code = proc.poll()
                return None if code is None else f"exit {code}: {daemon.log_text()}"

            # The LocalAPI socket comes first; the proxies listen a moment later.
            for port in sorted({socks_port, http_port}):
                wait_listening(port, 10, f"{self.name}'s proxy", gone=exited)
        return daemon

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_spacelift(), str(self.bindir / "tailscale"), *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.work,
            timeout=timeout,
            check=False,
        )

    def stop_all(self) -> None:
        for d in self.daemons:
            if d.proc.poll() is None:
                try:
                    os.killpg(d.proc.pid, signal.SIGTERM)
                    d.proc.wait(timeout=5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            if d.proc.poll() is None:
                try:
                    os.killpg(d.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                d.proc.wait(timeout=5)


def world_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o777)
    return path


def base_env(bindir: Path, work: Path) -> dict[str, str]:
    # /usr/bin/python3 is what `python3` must be for uid 1983 (another Python may live in a
    # folder uid 1983 cannot read).
    return {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8"}


def key_file(kit: Kit, value: str) -> Path:
    path = kit.work / f"key-{abs(hash(value))}"
    path.write_text(value + "\n")
    path.chmod(0o644)
    return path


def up(kit: Kit, d: Daemon, key: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    return kit.cli(
        f"--socket={d.sock}",
        "up",
        f"--auth-key=file:{key_file(kit, key)}",
        "--hostname=ci-runner",
        "--accept-dns=false",
        "--accept-routes",
        *extra,
        env=env,
    )


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def socks5_connect(proxy_port: int, atyp: int, host: str, port: int) -> tuple[int, socket.socket]:
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    if atyp == 3:
        addr = bytes([len(host)]) + host.encode()
    else:
        addr = socket.inet_pton(socket.AF_INET if atyp == 1 else socket.AF_INET6, host)
    s.sendall(b"\x05\x01\x00" + bytes([atyp]) + addr + struct.pack(">H", port))
    head = s.recv(4)
    rest = {1: 6, 4: 18}.get(head[3], 0)
    if rest:
        s.recv(rest)
    return head[1], s


def http_get_over(s: socket.socket, host: str, path: str) -> bytes:
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    return out


def http_proxy(proxy_port: int, raw: str) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", proxy_port), timeout=10)
    s.sendall(raw.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return s, head
