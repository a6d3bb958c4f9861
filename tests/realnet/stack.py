"""The real tailnet on one machine, loopback only: headscale (the control server, with its
embedded DERP and STUN on 127.0.0.1), a real PostgreSQL and a real sshd as in
``tests/realservers.py``, and the Go program of this folder (the service node, the split-DNS
zone's server, the offline peer, the control endpoint).

``start`` launches a detached supervisor (``serve``) that starts everything in order, waits for
each part with a deadline, writes ``ready.json`` in its folder and then waits for SIGTERM, on
which it stops everything it started, in reverse order. ``stop`` sends that SIGTERM to the
supervisor it proved its own (pid and start time recorded at start) and waits until it and every
process carrying the stack's marker are gone."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import MARKER, free_port, processes_with_marker, wait_gone
from tests.realnet import build

USER = "realnet"
TAG_READ = "tag:ci-read"
TAG_WRITE = "tag:ci-write"
TAG_SERVICE = "tag:realnet-svc"
BASE_DOMAIN = "realnet.internal"
SPLIT_ZONE = "corp.internal"
SERVICE_NAME = "realnet-svc"
OFFLINE_NAME = "realnet-gone"
READ_PORTS = ["tcp:80", "tcp:5432", "tcp:22"]
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
# What every tailscale client of this tailnet needs in its environment (tsnet and tailscaled):
# DERP over plain HTTP (the embedded DERP has no TLS here), "the network is up" although only
# loopback is, and no log upload.
CLIENT_ENV = {
    "TS_DEBUG_USE_DERP_HTTP": "1",
    "TS_ASSUME_NETWORK_UP_FOR_TEST": "1",
    "TS_NO_LOGS_NO_SUPPORT": "true",
}


class StackError(Exception):
    """A part that did not come up; the message is one line saying which."""


def policy() -> dict[str, Any]:
    """The tailnet policy in force: the least-privilege module's snippet
    (terraform/least-privilege/policy.tf: tagOwners, a grant per scope) for read tag tag:ci-read
    and write tag tag:ci-write, destinations the service node's tag, the read grant limited to
    the service's read ports, the write grant to all; headscale refuses autogroup:admin as a tag
    owner, so the owner is the stack's user. Then what the stack adds: the user's own nodes (the
    plain key's) reach the service node, and the service node may SSH (Tailscale SSH) into any
    of the tailnet's CI nodes."""
    owners = [f"{USER}@"]
    return {
        "tagOwners": {TAG_READ: owners, TAG_WRITE: owners, TAG_SERVICE: owners},
        "grants": [
            {"src": [TAG_READ], "dst": [TAG_SERVICE], "ip": READ_PORTS},
            {"src": [TAG_WRITE], "dst": [TAG_SERVICE], "ip": ["*"]},
            {"src": [f"{USER}@"], "dst": [TAG_SERVICE], "ip": ["*"]},
            {"src": [TAG_SERVICE], "dst": [TAG_READ, TAG_WRITE, f"{USER}@"], "ip": ["tcp:22"]},
        ],
        "ssh": [
            {
                "action": "accept",
                "src": [TAG_SERVICE],
                "dst": [TAG_READ, TAG_WRITE],
                "users": ["autogroup:nonroot", "root"],
            }
        ],
    }


def dns_address() -> str:
    """A loopback address whose port 53 is free for UDP and TCP (a nameserver of the control
    server's DNS settings is an address; its port is always 53). 127.0.0.0/8 is all loopback, so
    two stacks on one machine take two addresses."""
    for _ in range(50):
        address = f"127.53.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((address, 53))
        except PermissionError:
            raise StackError(
                "the split-DNS zone's server needs port 53 on a loopback address: run as root "
                "(or give the Go program CAP_NET_BIND_SERVICE)"
            ) from None
        except OSError:
            continue
        return address
    raise StackError("no loopback address with a free port 53 for the split-DNS zone's server")


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def headscale_config(work: Path, ports: Mapping[str, int], dns: str) -> str:
    """headscale's configuration (YAML is a superset of JSON: written as JSON)."""
    config = {
        "server_url": f"http://127.0.0.1:{ports['http']}",
        "listen_addr": f"127.0.0.1:{ports['http']}",
        "metrics_listen_addr": f"127.0.0.1:{ports['metrics']}",
        "grpc_listen_addr": f"127.0.0.1:{ports['grpc']}",
        "grpc_allow_insecure": False,
        "noise": {"private_key_path": str(work / "noise_private.key")},
        "prefixes": {
            "v4": "100.64.0.0/10",
            "v6": "fd7a:115c:a1e0::/48",
            "allocation": "sequential",
        },
        "derp": {
            "server": {
                "enabled": True,
                "region_id": 999,
                "region_code": "realnet",
                "region_name": "realnet embedded DERP",
                "stun_listen_addr": f"127.0.0.1:{ports['stun']}",
                "private_key_path": str(work / "derp_server_private.key"),
                "automatically_add_embedded_derp_region": True,
                "ipv4": "127.0.0.1",
            },
            "urls": [],
            "paths": [],
            "auto_update_enabled": False,
        },
        "disable_check_updates": True,
        "node": {"expiry": 0, "ephemeral": {"inactivity_timeout": "30m"}},
        "database": {
            "type": "sqlite",
            "sqlite": {"path": str(work / "db.sqlite"), "write_ahead_log": True},
        },
        "log": {"level": "info", "format": "text"},
        "policy": {"mode": "file", "path": str(work / "policy.json")},
        "dns": {
            "magic_dns": True,
            "base_domain": BASE_DOMAIN,
            "override_local_dns": False,
            "nameservers": {"global": [], "split": {SPLIT_ZONE: [dns]}},
            "search_domains": [],
            "extra_records": [],
        },
        "unix_socket": str(work / "headscale.sock"),
        "unix_socket_permission": "0700",
        "logtail": {"enabled": False},
        "taildrop": {"enabled": False},
    }
    return json.dumps(config, indent=2)


class Headscale:
    def __init__(self, binary: Path, work: Path, env: Mapping[str, str]) -> None:
        self.binary, self.work, self.env = binary, work, dict(env)
        self.config = work / "config.yaml"

    def cli(self, *args: str, timeout: float = 30) -> Any:
        argv = [str(self.binary), "-c", str(self.config), *args, "-o", "json"]
        result = subprocess.run(
            argv,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.work,
        )
        if result.returncode != 0:
            text = (result.stderr or result.stdout).strip()
            with contextlib.suppress(ValueError, AttributeError):
                text = str(json.loads(text)["error"])  # -o json: {"error": "..."}
            lines = text.splitlines()
            raise StackError(f"headscale {' '.join(args)}: {lines[-1] if lines else 'failed'}")
        return json.loads(result.stdout)

    def key(
        self,
        *,
        tags: list[str] | None = None,
        reusable: bool = True,
        ephemeral: bool = True,
        expiration: str = "2h",
    ) -> dict[str, Any]:
        """A pre-authorized key: the user's own, or tagged (headscale takes a node's tags from
        its key). The JSON of `headscale preauthkeys create` (id, key...)."""
        args = ["preauthkeys", "create", "--expiration", expiration]
        args += ["--tags", ",".join(tags)] if tags else ["-u", str(self.user_id())]
        args += ["--reusable"] if reusable else []
        args += ["--ephemeral"] if ephemeral else []
        created: dict[str, Any] = self.cli(*args)
        return created

    def expire(self, key_id: int) -> None:
        self.cli("preauthkeys", "expire", "--id", str(key_id))

    def user_id(self) -> int:
        users = self.cli("users", "list")
        return int(next(u["id"] for u in users if u["name"] == USER))

    def nodes(self) -> list[dict[str, Any]]:
        listed = self.cli("nodes", "list") or []
        return [
            {
                "name": n.get("given_name") or n.get("name"),
                "online": bool(n.get("online")),
                "tags": sorted(n.get("tags") or []),
                "ips": n.get("ip_addresses") or [],
            }
            for n in listed
        ]


def _poll(condition: Any, deadline: float, what: str, alive: Any = None) -> Any:
    """Until CONDITION() is truthy, ALIVE() (if given) stays true and the deadline is not past."""
    while True:
        with contextlib.suppress(Exception):
            value = condition()
            if value:
                return value
        if alive is not None and not alive():
            raise StackError(f"{what}: the process exited")
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not ready within {START_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
        return lines[-1][:300] if lines else ""
    return ""


@contextmanager
def _process(
    argv: list[str], env: Mapping[str, str], log: Path, what: str, stdout: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else out,
            stderr=out,
            cwd=str(log.parent),
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT / 3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _read_ready_line(proc: subprocess.Popen[bytes], deadline: float, log: Path) -> Any:
    """The Go program's one JSON line on stdout, within the deadline."""
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StackError(f"realnet (the service node): not ready within {START_TIMEOUT:.0f} s")
        if sel.select(left):
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise StackError(f"realnet (the service node) exited: {_tail(log)}")
            buffer += chunk
    return json.loads(buffer.split(b"\n", 1)[0])


def serve(folder: Path, marker: str) -> dict[str, Any]:
    """Start everything, write ready.json, wait for SIGTERM, stop everything. Runs in the
    supervisor process; returns the ready document (for tests of this function)."""
    from tests import realservers

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    binaries = build.build_all()
    deadline = time.monotonic() + START_TIMEOUT
    env = {
        "PATH": "/usr/sbin:/usr/bin:/bin",
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        MARKER: marker,
    }
    with ExitStack() as stack:
        pg = stack.enter_context(realservers.postgres(marker))
        sshd = stack.enter_context(realservers.sshd(marker))

        # Every start is a fresh tailnet: a database, keys and nodes of an earlier one would
        # answer for it.
        work = folder / "headscale"
        for old in (work, folder / "nodes"):
            shutil.rmtree(old, ignore_errors=True)
        work.mkdir(mode=0o700)
        ports = {
            "http": free_port(),
            "metrics": free_port(),
            "grpc": free_port(),
            "stun": udp_port(),
        }
        dns = dns_address()
        (work / "config.yaml").write_text(headscale_config(work, ports, dns))
        (work / "policy.json").write_text(json.dumps(policy(), indent=2))
        hs_bin = binaries["headscale"] / "headscale"
        hs_proc = stack.enter_context(
            _process(
                [str(hs_bin), "-c", str(work / "config.yaml"), "serve"],
                env,
                work / "headscale.log",
                "headscale",
            )
        )
        control_url = f"http://127.0.0.1:{ports['http']}"

        def healthy() -> bool:
            with urllib.request.urlopen(f"{control_url}/health", timeout=2) as reply:
                return bool(reply.status == 200)

        _poll(
            healthy,
            deadline,
            f"headscale ({_tail(work / 'headscale.log')})",
            alive=lambda: hs_proc.poll() is None,
        )
        hs = Headscale(hs_bin, work, env)
        _poll(lambda: (work / "headscale.sock").exists(), deadline, "headscale's socket")
        hs.cli("users", "create", USER)
        service_key = hs.key(tags=[TAG_SERVICE], reusable=False, ephemeral=False)
        offline_key = hs.key(tags=[TAG_SERVICE], reusable=False, ephemeral=False)
        keys = {
            "authkey": hs.key(),
            "authkey_read": hs.key(tags=[TAG_READ]),
            "authkey_write": hs.key(tags=[TAG_WRITE]),
        }

        nodes_dir = folder / "nodes"
        nodes_dir.mkdir(mode=0o700)
        go_env = {
            **env,
            **CLIENT_ENV,
            "REALNET_SERVICE_KEY": service_key["key"],
            "REALNET_OFFLINE_KEY": offline_key["key"],
        }
        argv = [
            str(binaries["realnet"] / "realnet"),
            f"-control-url={control_url}",
            f"-dir={nodes_dir}",
            f"-postgres=127.0.0.1:{pg.port}",
            f"-sshd=127.0.0.1:{sshd.port}",
            f"-zone={SPLIT_ZONE}",
            f"-dns-listen={dns}:53",
            f"-service-name={SERVICE_NAME}",
            f"-offline-name={OFFLINE_NAME}",
        ]
        go_proc = stack.enter_context(
            _process(argv, go_env, folder / "realnet.log", "realnet", stdout=subprocess.PIPE)
        )
        go_ready = _read_ready_line(go_proc, deadline, folder / "realnet.log")
        service = go_ready["service"]

        def offline_seen() -> bool:
            by_name = {n["name"]: n for n in hs.nodes()}
            gone = by_name.get(OFFLINE_NAME)
            return bool(gone and not gone["online"] and by_name.get(SERVICE_NAME, {}).get("online"))

        _poll(offline_seen, deadline, "the offline peer's going offline at the control server")
        fqdn = service["fqdn"]
        ports_by_service = go_ready["ports"]
        ready = {
            "control_url": control_url,
            "authkey": keys["authkey"]["key"],
            "authkey_read": keys["authkey_read"]["key"],
            "authkey_write": keys["authkey_write"]["key"],
            "tags": {"read": TAG_READ, "write": TAG_WRITE, "service": TAG_SERVICE},
            "services": {
                name: f"{fqdn}:{ports_by_service[name]}"
                for name in ("http", "postgres", "ssh", "write_only")
            },
            "service_node": service,
            "split_dns": go_ready["split_dns"],
            "split_dns_server": f"{dns}:53",
            "offline_peer": go_ready["offline"],
            "magic_dns_suffix": BASE_DOMAIN,
            "policy": policy(),
            "postgres": {"user": pg.user, "database": "postgres"},
            "ssh": {"user": sshd.user, "key": str(sshd.user_key)},
            "control_endpoint": go_ready["control"],
            "client_env": CLIENT_ENV,
            "headscale": {"config": str(work / "config.yaml"), "binary": str(hs_bin)},
            "tailscale_dir": str(binaries["tailscale"]),
            "marker": marker,
        }
        tmp = folder / "ready.json.tmp"
        tmp.write_text(json.dumps(ready))
        tmp.rename(folder / "ready.json")
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        (folder / "ready.json").unlink(missing_ok=True)
    return ready


# --- the supervisor, seen from outside --------------------------------------------------------


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[19]


def start(folder: Path, marker: str | None = None) -> dict[str, Any]:
    """Build if needed, launch the supervisor, return ready.json once it is written; raises
    StackError (one line) when a part does not come up, having stopped what did."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    if (folder / "supervisor.json").exists() and _supervisor(folder) is not None:
        raise StackError(f"a real tailnet already runs from {folder}: stop it first")
    for name in ("ready.json", "failed", "supervisor.json"):
        (folder / name).unlink(missing_ok=True)
    try:
        build.build_all()
    except build.BuildError as exc:
        raise StackError(f"build failed: {exc}") from None
    marker = marker or f"realnet-{secrets.token_hex(4)}"
    env = {**os.environ, MARKER: marker}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    with open(folder / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.realnet", "serve", "--dir", str(folder)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=str(root),
            start_new_session=True,
        )
    record = {"pid": proc.pid, "start": _start_time(proc.pid), "marker": marker}
    (folder / "supervisor.json").write_text(json.dumps(record))
    deadline = time.monotonic() + START_TIMEOUT + 30
    while True:
        if (folder / "ready.json").exists():
            return dict(json.loads((folder / "ready.json").read_text()))
        code = proc.poll()
        if code is not None or time.monotonic() > deadline:
            reason = (folder / "failed").read_text().strip() if (folder / "failed").exists() else ""
            stop(folder)
            raise StackError(
                reason or f"the supervisor exited ({code}): {_tail(folder / 'supervisor.log')}"
            )
        time.sleep(0.05)


def _supervisor(folder: Path) -> tuple[int, str] | None:
    """The recorded supervisor's pid and marker, if that very process still runs."""
    try:
        record = json.loads((folder / "supervisor.json").read_text())
    except (OSError, ValueError):
        return None
    pid = int(record["pid"])
    if record.get("start") is None or _start_time(pid) != record["start"]:
        return None
    return pid, str(record["marker"])


def stop(folder: Path) -> list[str]:
    """End the supervisor (it stops what it started) and anything left with the stack's marker;
    returns what had to be killed (empty when the stop was clean)."""
    found = _supervisor(folder)
    marker = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        marker = str(json.loads((folder / "supervisor.json").read_text())["marker"])
    if found is not None:
        pid, marker = found
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    killed = []
    if marker:
        for pid, cmd in processes_with_marker(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(f"{pid}: {cmd}")
    (folder / "supervisor.json").unlink(missing_ok=True)
    (folder / "ready.json").unlink(missing_ok=True)
    return killed


def ready(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "ready.json").read_text()))


def headscale_of(folder: Path) -> Headscale:
    doc = ready(folder)
    work = Path(doc["headscale"]["config"]).parent
    env = {"PATH": "/usr/sbin:/usr/bin:/bin", "HOME": str(folder), "LANG": "C.UTF-8"}
    return Headscale(Path(doc["headscale"]["binary"]), work, env)
