"""The forwarder rows of the benchmark (issue 11): a bulk transfer through a forward against
tailscaled's SOCKS5 proxy used directly (and plain loopback), connection set-up through a forward
against a direct SOCKS5 dial, and the memory and idle CPU of a forwarder holding 200 idle
connections. Everything goes through the real tailscaled 1.96.4's SOCKS5 proxy, which dials
loopback targets directly before login.

The forwarder runs in its own process (tests/bench/forward_host.py), as it will in the manager,
so its RSS and CPU are its own. Rows come back as dicts of bench.Row's fields."""

from __future__ import annotations

import contextlib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacetail.tailnet.socks5 import Dialer
from tests import helpers
from tests.waiting import wait_listening

HOST = Path(__file__).resolve().parent / "forward_host.py"
THROUGHPUT_RATIO = 0.8  # forward >= 80% of direct SOCKS5
SETUP_OVERHEAD_S = 0.002  # median extra set-up time through a forward
IDLE_CONNECTIONS = 200
IDLE_RSS_MB = 40.0
SETUPS_PER_TRIAL = 20


@dataclass
class Rig:
    socks: int
    source: int
    echo: int
    fwd_source: int
    fwd_echo: int
    forwarder: subprocess.Popen[str]


def _start(argv: list[str], env: Mapping[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(HOST), *argv], env=dict(env), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"forward_host.py {argv[0]} did not start")
    return proc, line


@contextlib.contextmanager
def rig(env: Mapping[str, str], real: Path, home: Path, total: int) -> Iterator[Rig]:
    """The real tailscaled, a source and an echo server, and a forwarder to each of them."""
    socks = helpers.free_port()
    procs: list[subprocess.Popen[str]] = []
    tailscaled = subprocess.Popen(
        [str(real / "tailscaled"), "--tun=userspace-networking", "--state=mem:",
         f"--statedir={home / 'ts'}", f"--socket={home / 'ts.sock'}", "--no-logs-no-support",
         f"--socks5-server=127.0.0.1:{socks}", "--port=0"],
        env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_listening(socks, tailscaled)
        source_proc, source = _start(["source", str(total)], env)
        echo_proc, echo = _start(["echo"], env)
        procs += [source_proc, echo_proc]
        fs, fe = helpers.free_port(), helpers.free_port()
        specs = f"{fs}=127.0.0.1:{source} {fe}=127.0.0.1:{echo}"
        forwarder, _ready = _start(["forward", specs, str(socks)], env)
        procs.append(forwarder)
        yield Rig(socks, int(source), int(echo), fs, fe, forwarder)
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(10)
        tailscaled.terminate()
        tailscaled.wait(10)


def _wait_listening(port: int, proc: subprocess.Popen[Any]) -> None:
    def died() -> str | None:
        return None if proc.poll() is None else f"tailscaled exited {proc.poll()}"

    wait_listening(port, 15, "tailscaled's SOCKS5 proxy", gone=died)


def _drain(sock: socket.socket, total: int) -> None:
    buf = bytearray(1 << 20)
    got = 0
    with sock:
        while n := sock.recv_into(buf):
            got += n
    if got != total:
        raise RuntimeError(f"received {got} of {total} bytes")


def _timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _echo_once(sock: socket.socket) -> None:
    with sock:
        sock.sendall(b"x")
        if sock.recv(1) != b"x":
            raise RuntimeError("no echo")


def measure(
    env: Mapping[str, str],
    real: Path,
    home: Path,
    trials: int,
    total: int,
    idle: float,
    alternate: Callable[..., None],
    rss_mb: Callable[[int], float],
    cpu_seconds: Callable[[int], float],
) -> dict[str, Any]:
    """Samples for every forward row; ALTERNATE, RSS_MB and CPU_SECONDS are bench.py's."""
    s: dict[str, Any] = {k: [] for k in ("fwd", "socks", "direct", "set_fwd", "set_socks")}
    with rig(env, real, home, total) as r:
        dialer = Dialer(("127.0.0.1", r.socks))

        def add(key: str, fn: Callable[[], None]) -> Callable[[], None]:
            return lambda: s[key].append(_timed(fn))

        transfers = (
            add("fwd", lambda: _drain(socket.create_connection(("127.0.0.1", r.fwd_source)),
                                      total)),
            add("socks", lambda: _drain(dialer.dial("127.0.0.1", r.source), total)),
            add("direct", lambda: _drain(socket.create_connection(("127.0.0.1", r.source)),
                                         total)),
        )  # fmt: skip
        alternate(1, *transfers)  # warm-up
        for key in ("fwd", "socks", "direct"):
            s[key].clear()
        cpu0 = cpu_seconds(r.forwarder.pid)
        alternate(trials, *transfers)
        s["fwd_cpu"] = (cpu_seconds(r.forwarder.pid) - cpu0) / trials
        setups = (
            add("set_fwd", lambda: _echo_once(socket.create_connection(("127.0.0.1", r.fwd_echo)))),
            add("set_socks", lambda: _echo_once(dialer.dial("127.0.0.1", r.echo))),
        )  # fmt: skip
        alternate(trials * SETUPS_PER_TRIAL, *setups)
        s["idle_rss"], s["idle_cpu"], s["base_rss"] = _idle(r, idle, rss_mb, cpu_seconds)
    return s


def _idle(r: Rig, idle: float, rss_mb: Callable[[int], float],
          cpu_seconds: Callable[[int], float]) -> tuple[float, float, float]:  # fmt: skip
    """The forwarder's RSS with IDLE_CONNECTIONS open and idle, and its CPU over IDLE seconds."""
    base = rss_mb(r.forwarder.pid)
    conns = [socket.create_connection(("127.0.0.1", r.fwd_echo)) for _ in range(IDLE_CONNECTIONS)]
    try:
        for c in conns:  # every one carried end to end before the idle window starts
            c.sendall(b"x")
            if c.recv(1) != b"x":
                raise RuntimeError("no echo")
        cpu0 = cpu_seconds(r.forwarder.pid)
        time.sleep(idle)
        return rss_mb(r.forwarder.pid), cpu_seconds(r.forwarder.pid) - cpu0, base
    finally:
        for c in conns:
            c.close()


def rows(
    s: Mapping[str, Any], total: int, idle: float, idle_cpu_budget: float
) -> list[dict[str, Any]]:
    mb = total / (1 << 20)
    throughput = {k: [mb / t for t in s[k]] for k in ("fwd", "socks", "direct")}
    overhead = statistics.median(s["set_fwd"]) - statistics.median(s["set_socks"])
    return [
        {"name": f"{mb:g} MB through a forward (real tailscaled SOCKS5)", "spacetail": s["fwd"],
         "bare": s["socks"], "bare_name": "the same SOCKS5 proxy, directly",
         "budget": f">= {THROUGHPUT_RATIO:.0%} of direct SOCKS5 throughput",
         "check": lambda row: (row.ratio or 99) <= 1 / THROUGHPUT_RATIO,
         "note": f"MB/s: forward {statistics.median(throughput['fwd']):.0f}, SOCKS5 "
                 f"{statistics.median(throughput['socks']):.0f}, loopback "
                 f"{statistics.median(throughput['direct']):.0f}; the forwarder's CPU "
                 f"{s['fwd_cpu']:.3f} s per transfer"},
        {"name": f"{mb:g} MB over plain loopback (no proxy)", "spacetail": s["direct"]},
        {"name": "connection set-up through a forward (connect + 1-byte echo)",
         "spacetail": s["set_fwd"], "bare": s["set_socks"],
         "bare_name": "SOCKS5 handshake + 1-byte echo",
         "budget": f"median overhead < {SETUP_OVERHEAD_S * 1000:g} ms",
         "check": lambda row: overhead < SETUP_OVERHEAD_S,
         "note": f"median overhead {overhead * 1000:.2f} ms"},
        {"name": f"forwarder RSS with {IDLE_CONNECTIONS} idle connections", "spacetail":
         [s["idle_rss"]], "unit": "MB", "bare_name": f"{s['base_rss']:.1f} MB with none",
         "budget": f"< {IDLE_RSS_MB:g} MB", "check": lambda row: row.st_median < IDLE_RSS_MB},
        {"name": f"forwarder CPU while idle ({IDLE_CONNECTIONS} open), over {idle:g} s",
         "spacetail": [s["idle_cpu"]], "unit": "cpu", "budget": f"< {idle_cpu_budget} s",
         "check": lambda row: row.st_median < idle_cpu_budget},
    ]  # fmt: skip
