"""The benchmark's rows on the real tailnet (tests/realnet: headscale, the tsnet service node,
tailscale at DEFAULT_VERSION), over the real WireGuard path:

- `up` until Running against the real control server, beside a bare shell doing the same
  (tailscaled &, poll the socket, `tailscale up --login-server`);
- a transfer of N MB from the service node's HTTP service through a spacetail forward, through
  tailscaled's SOCKS5 proxy directly, and through ncat as the forwarder (one ncat per
  connection, dialing through the same SOCKS5 proxy);
- a small request (connect, GET, the whole reply) through the same three.

The stack is started once through the entry point (python -m tests.realnet start) and stopped
at the end."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests import helpers
from tests.bench.bench import BARE_START
from tests.realnet import stack

BARE_UP_LOGIN = (
    BARE_START
    + """umask 077
printf '%s' "$TS_AUTHKEY" >"$D/authkey"
tailscale --socket="$D/tailscaled.sock" up --hostname="$TS_HOSTNAME" --accept-routes=true \\
  --accept-dns=false --timeout=30s --reset --auth-key="file:$D/authkey" \\
  --login-server="$TS_LOGIN_SERVER"
rm -f "$D/authkey"
"""
)
SMALL_REQUESTS = 20


def _env(doc: dict[str, Any]) -> dict[str, str]:
    return {
        **doc["client_env"],
        "TS_LOGIN_SERVER": doc["control_url"],
        "TS_AUTHKEY": doc["authkey"],
    }


def _socks5_connect(proxy: tuple[str, int], host: str, port: int) -> socket.socket:
    """A TCP connection to HOST:PORT through a SOCKS5 proxy (no auth, name resolved there)."""
    s = socket.create_connection(proxy, timeout=30)
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        raise OSError("SOCKS5: no acceptable method")
    name = host.encode()
    s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    reply = s.recv(4)
    if len(reply) < 4 or reply[1] != 0:
        raise OSError(f"SOCKS5: connect refused ({reply!r})")
    rest = {1: 4, 4: 16}.get(reply[3], 0) + 2
    if reply[3] == 3:
        rest = s.recv(1)[0] + 2
    while rest:
        rest -= len(s.recv(rest))
    return s


def _get(connect: Callable[[], socket.socket], host: str, path: str) -> int:
    """One GET on a fresh connection; the body's length. The reply is read up to its
    Content-Length, not to EOF: ncat as a forwarder keeps the client's side open after the
    server closed its own."""
    with connect() as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError(f"the connection closed before the reply's headers: {head[:200]!r}")
            head += chunk
        headers, body = head.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        got = len(body)
        while got < length:
            chunk = s.recv(min(1 << 20, length - got))
            if not chunk:
                break
            got += len(chunk)
    return got


def rows(bench: Any, trials: int, mb: int, row: Callable[..., Any]) -> list[Any]:
    """The rows (bench.Row objects made by ROW); BENCH is bench.Bench."""
    folder = bench.base / "realnet"
    doc = stack.start(folder, f"bench-realnet-{id(bench)}")
    try:
        real = bench.base / "realts"
        real.mkdir(exist_ok=True)
        for name in ("tailscale", "tailscaled"):
            shutil.copy(Path(doc["tailscale_dir"]) / name, real / name)
        out = [_up_rows(bench, trials, real, doc, row)]
        out += _forward_rows(bench, trials, real, doc, mb, row)
        return out
    finally:
        stack.stop(folder)


def _up_rows(
    bench: Any, trials: int, real: Path, doc: dict[str, Any], row: Callable[..., Any]
) -> Any:
    from tests.bench.bench import alternate, run

    st: list[float] = []
    bare: list[float] = []

    def spacetail(samples: list[float]) -> Callable[[], None]:
        def go() -> None:
            with bench.trial(real, **_env(doc), TS_HOSTNAME=f"bench-st-{bench.count + 1}") as t:
                try:
                    samples.append(bench.st_up(t))
                finally:
                    run([bench.st, "down"], t.env)

        return go

    def shell(samples: list[float]) -> Callable[[], None]:
        def go() -> None:
            with bench.trial(real, **_env(doc), TS_HOSTNAME=f"bench-sh-{bench.count + 1}") as t:
                try:
                    samples.append(bench.bare(t, BARE_UP_LOGIN))
                finally:
                    bench.bare_teardown(t)

        return go

    alternate(1, spacetail([]), shell([]))
    alternate(trials, spacetail(st), shell(bare))
    return row(
        "up until Running (real tailnet: headscale, tailscale "
        f"{Path(doc['tailscale_dir']).name.removeprefix('tailscale-')})",
        st,
        bare,
        "tailscaled &, poll socket, tailscale up --login-server",
        note="informative: the login's round trips to the control server dominate both",
    )


def _forward_rows(
    bench: Any, trials: int, real: Path, doc: dict[str, Any], mb: int, row: Callable[..., Any]
) -> list[Any]:
    from tests.bench.bench import run

    host, port_text = doc["services"]["http"].rsplit(":", 1)
    port = int(port_text)
    total = mb << 20
    local, ncat_port = helpers.free_port(), helpers.free_port()
    samples: dict[str, list[float]] = {"forward": [], "socks5": [], "ncat": []}
    small: dict[str, list[float]] = {"forward": [], "socks5": [], "ncat": []}
    with bench.trial(real, **_env(doc), TS_HOSTNAME="bench-forward") as t:
        run([bench.st, "up", "--no-watch", "--forward", f"{local}={host}:{port}"], t.env)
        socks = t.env["TS_SOCKS5_SERVER"].rsplit(":", 1)
        proxy = (socks[0], int(socks[1]))
        relay = (
            f"ncat --proxy {proxy[0]}:{proxy[1]} --proxy-type socks5 --proxy-dns remote "
            f"{host} {port}"
        )
        ncat = subprocess.Popen(
            ["ncat", "-lk", "127.0.0.1", str(ncat_port), "--sh-exec", relay],
            env=t.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", ncat_port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            connects: dict[str, Callable[[], socket.socket]] = {
                "forward": lambda: socket.create_connection(("127.0.0.1", local), timeout=30),
                "socks5": lambda: _socks5_connect(proxy, host, port),
                "ncat": lambda: socket.create_connection(("127.0.0.1", ncat_port), timeout=30),
            }
            order = list(connects)
            _get(connects["forward"], host, "/warm")
            for i in range(trials):
                k = i % len(order)
                for name in order[k:] + order[:k]:
                    started = time.perf_counter()
                    got = _get(connects[name], host, f"/blob?bytes={total}")
                    samples[name].append(time.perf_counter() - started)
                    if got != total:
                        raise OSError(f"{name}: {got} bytes of {total}")
                    for _ in range(SMALL_REQUESTS):
                        started = time.perf_counter()
                        _get(connects[name], host, "/small")
                        small[name].append(time.perf_counter() - started)
        finally:
            ncat.terminate()
            ncat.wait(10)
            run([bench.st, "down"], t.env)

    def mbps(values: Sequence[float]) -> str:
        import statistics

        return f"{mb / statistics.median(values):.0f} MB/s" if values else "-"

    note = ", ".join(f"{name} {mbps(v)}" for name, v in samples.items())
    return [
        row(
            f"{mb} MB through a forward (real WireGuard path)",
            samples["forward"],
            samples["socks5"],
            "the same through tailscaled's SOCKS5 proxy directly",
            note=f"throughput: {note}",
        ),
        row(
            f"{mb} MB through ncat as the forwarder (real WireGuard path)",
            samples["ncat"],
            samples["socks5"],
            "the same through tailscaled's SOCKS5 proxy directly",
        ),
        row(
            "a small request through a forward (connect, GET, reply; real path)",
            small["forward"],
            small["socks5"],
            "SOCKS5 handshake, GET, reply",
        ),
        row(
            "a small request through ncat as the forwarder (real path)",
            small["ncat"],
            small["socks5"],
            "SOCKS5 handshake, GET, reply",
        ),
    ]
