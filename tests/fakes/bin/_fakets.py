"""Shared code of the fake ``tailscale`` and ``tailscaled`` (a test double of Tailscale 1.96.4).

Standard library only, and only cheap imports: the fake CLI must start and finish in well
under 100 ms. See ``tests/fakes/README.md`` for every behaviour and knob.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

VERSION = "1.96.4"
LONG_VERSION = "1.96.4-fake"
CAP_VERSION = 133
DEFAULT_SOCKET = "/var/run/tailscale/tailscaled.sock"
DEFAULT_CONTROL_URL = "https://controlplane.tailscale.com"
MAGIC_DNS_SUFFIX = "tail-fake.ts.net"
SELF_IPS = ("100.64.0.7", "fd7a:115c:a1e0::7")
PEER_IPS = ("100.64.0.8", "fd7a:115c:a1e0::8")
PEER_HOSTNAME = "fake-peer"

# ipn.State values as sent over the IPN bus.
STATES = {
    "NoState": 0,
    "InUseOtherUser": 1,
    "NeedsLogin": 2,
    "NeedsMachineAuth": 3,
    "Stopped": 4,
    "Starting": 5,
    "Running": 6,
}

VERSION_TEXT = (
    f"{VERSION}\n"
    "  tailscale commit: 8cf541dfd1e0a97096c01cb775d5e26336f3bc6c\n"
    f"  long version: {LONG_VERSION}\n"
    "  other commit: 62bc84ce7236dafdeb40272171dae03a66502ed1\n"
    "  go version: go1.26.1\n"
    "  fake: test double of tailscale, not the real binary\n"
)


# --------------------------------------------------------------------------------------------
# Small helpers


def go_quote(s: str) -> str:
    """Approximate Go's %q for a string."""
    return json.dumps(s, ensure_ascii=False)


def go_quote_list(items: list[str]) -> str:
    """Go's %q for a []string: ["a" "b"]."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def go_errno(err: OSError) -> str:
    """Go spells errno texts in lower case ("connection refused")."""
    text = os.strerror(err.errno) if err.errno else str(err)
    return text[:1].lower() + text[1:]


def log(msg: str) -> None:
    """Write one log line like Go's log package with default flags."""
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    try:
        sys.stderr.write(f"{stamp} {msg}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def record_event(event: str) -> None:
    """Append EVENT as one line to the file named by FAKE_TAILSCALE_EVENTS, if set, so a test can
    see what happened (a logout) after the daemon is gone."""
    path = os.environ.get("FAKE_TAILSCALE_EVENTS", "")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{event}\n")


_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0,
          "m": 60.0, "h": 3600.0}  # fmt: skip
_DURATION_PART = r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"


def parse_duration(text: str) -> float:
    """Parse a Go time.Duration string ("30s", "1m30s", "250ms", "0") into seconds."""
    if text != "0" and not re.fullmatch(f"(?:{_DURATION_PART})+", text):
        raise ValueError(text)
    return sum(float(n) * _UNITS[u] for n, u in re.findall(_DURATION_PART, text))


_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(text: str) -> bool:
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError(text)


def is_tailnet_ip(text: str) -> bool:
    """True for addresses in the fake tailnet: 100.64.0.0/10 and fd7a:115c:a1e0::/48."""
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
        return packed[0] == 100 and (packed[1] & 0xC0) == 64
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
        return packed[:6] == bytes.fromhex("fd7a115ca1e0")
    except OSError:
        return False


def is_ip_literal(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
            return True
        except OSError:
            pass
    return False


def is_tailnet_name(host: str) -> bool:
    """True for a MagicDNS name: anything ending in .ts.net (a trailing dot allowed)."""
    h = host.lower().rstrip(".")
    return h.endswith(".ts.net")


# --------------------------------------------------------------------------------------------
# The tailnet's DNS (LocalAPI dns-query): MagicDNS names plus split-DNS names that only this
# resolver knows (the proxies cannot resolve them, as tailscale#4677 describes).

SPLIT_DNS = {"db.internal.example.com": "127.0.0.1"}
SPLIT_DNS_ALIASES = {"alias.internal.example.com": "db.internal.example.com"}
DNS_TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
             "AAAA": 28, "SRV": 33, "ANY": 255}  # fmt: skip
RCODE_SERVFAIL, RCODE_NXDOMAIN = 2, 3


def is_split_dns_name(host: str) -> bool:
    return host.lower().rstrip(".").endswith(".internal.example.com")


def _dns_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _rr(name: str, rtype: int, rdata: bytes) -> bytes:
    return _dns_name(name) + struct.pack(">HHIH", rtype, 1, 600, len(rdata)) + rdata


def dns_records(name: str, qtype: int, names: dict[str, list[str]]) -> tuple[int, list[bytes]]:
    """(rcode, answer records) for NAME in NAMES (name -> addresses), following one alias."""
    key = name.lower().rstrip(".")
    answers: list[bytes] = []
    if key in SPLIT_DNS_ALIASES:
        target = SPLIT_DNS_ALIASES[key]
        answers.append(_rr(key, 5, _dns_name(target)))
        key = target
    if key not in names:
        return RCODE_NXDOMAIN, answers
    for address in names[key]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        packed = socket.inet_pton(family, address)
        rtype = 1 if len(packed) == 4 else 28
        if qtype in (rtype, 255):
            answers.append(_rr(key, rtype, packed))
    return 0, answers


def dns_response(name: str, qtype: int, rcode: int, answers: list[bytes]) -> bytes:
    """A response as tailscaled's resolver builds it: id 1, QR+AA+RD, the question echoed."""
    flags = 0x8500 | rcode
    header = struct.pack(">HHHHHH", 1, flags, 1, len(answers), 0, 0)
    return header + _dns_name(name) + struct.pack(">HH", qtype, 1) + b"".join(answers)


# --------------------------------------------------------------------------------------------
# Go's flag package


class FlagError(Exception):
    """A flag could not be parsed; the message is what Go's flag package prints."""


class HelpRequested(Exception):
    """-h or -help was given (Go prints the usage and exits 0)."""


class Flag:
    def __init__(self, name: str, kind: str, default: Any) -> None:
        self.name = name
        self.kind = kind  # "bool", "string", "int", "duration"
        self.value: Any = default


class FlagSet:
    """A subset of Go's flag.FlagSet: same syntax, same error texts."""

    def __init__(self) -> None:
        self.flags: dict[str, Flag] = {}

    def add(self, name: str, kind: str, default: Any) -> None:
        self.flags[name] = Flag(name, kind, default)

    def __getitem__(self, name: str) -> Any:
        return self.flags[name].value

    def _set(self, flag: Flag, value: str) -> None:
        if flag.kind == "bool":
            flag.value = parse_bool(value)
        elif flag.kind == "int":
            flag.value = int(value.replace("_", ""), 0)
        elif flag.kind == "duration":
            flag.value = parse_duration(value)
        else:
            flag.value = value

    def parse(self, args: list[str]) -> list[str]:
        """Parse flags; return the remaining (non-flag) arguments."""
        args = list(args)
        while args:
            s = args[0]
            if len(s) < 2 or s[0] != "-":
                break
            minuses = 1
            if s[1] == "-":
                minuses = 2
                if len(s) == 2:
                    return args[1:]
            name = s[minuses:]
            if not name or name[0] in "-=":
                raise FlagError(f"bad flag syntax: {s}")
            args = args[1:]
            has_value = False
            value = ""
            if "=" in name[1:]:
                idx = name.index("=", 1)
                name, value, has_value = name[:idx], name[idx + 1 :], True
            flag = self.flags.get(name)
            if flag is None:
                if name in ("help", "h"):
                    raise HelpRequested()
                raise FlagError(f"flag provided but not defined: -{name}")
            if flag.kind == "bool":
                try:
                    self._set(flag, value if has_value else "true")
                except ValueError:
                    raise FlagError(
                        f"invalid boolean value {go_quote(value)} for -{name}: parse error"
                    ) from None
                continue
            if not has_value and args:
                value, args, has_value = args[0], args[1:], True
            if not has_value:
                raise FlagError(f"flag needs an argument: -{name}")
            try:
                self._set(flag, value)
            except ValueError:
                raise FlagError(
                    f"invalid value {go_quote(value)} for flag -{name}: parse error"
                ) from None
        return args


def parse_or_exit(fs: FlagSet, args: list[str], usage: str) -> list[str]:
    """Parse like a Go program with flag.ExitOnError: error + usage on stderr, exit 2."""
    try:
        return fs.parse(args)
    except HelpRequested:
        sys.stderr.write(usage)
        sys.exit(0)
    except FlagError as err:
        sys.stderr.write(f"{err}\n{usage}")
        sys.exit(2)


def die(msg: str, code: int = 1) -> NoReturn:
    sys.stderr.write(msg if msg.endswith("\n") else msg + "\n")
    sys.stderr.flush()
    sys.exit(code)


# --------------------------------------------------------------------------------------------
# LocalAPI client (HTTP/1.1 over the unix socket)


class Response:
    """A response whose head is read. We ask for `Connection: close`, so the body ends at EOF."""

    def __init__(self, sock: socket.socket, rest: bytes):
        self.sock = sock
        self._buf = rest

    def read(self) -> bytes:
        while data := self.sock.recv(65536):
            self._buf += data
        return self._buf

    def lines(self) -> Iterator[bytes]:
        """The JSON lines of the chunked watch-ipn-bus stream (the chunk sizes in between are
        hex digits, never a JSON object)."""
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                if line.startswith(b"{"):
                    yield line
            data = self.sock.recv(65536)
            if not data:
                return
            self._buf += data

    def close(self) -> None:
        self.sock.close()


class ConnectFailed(Exception):
    """The unix socket could not be dialled; str() is the Go-style LocalClient error."""


def localapi(
    socket_path: str,
    method: str,
    path: str,
    body: bytes | None = None,
    timeout: float | None = None,
) -> Response:
    """Send one request to the LocalAPI and return the response with its headers read."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    endpoint = path.split("?", 1)[0]
    try:
        sock.connect(socket_path)
    except OSError as err:
        sock.close()
        raise ConnectFailed(
            f"Failed to connect to local Tailscale daemon for {endpoint}; not running? "
            f"Error: dial unix {socket_path}: connect: {go_errno(err)}"
        ) from None
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: local-tailscaled.sock\r\n"
        "User-Agent: tailscale-cli-fake\r\nConnection: close\r\n"
    )
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    sock.sendall(head.encode() + b"\r\n" + (body or b""))
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            sock.close()
            raise ConnectionError("LocalAPI closed the connection")
        buf += data
    return Response(sock, buf.split(b"\r\n\r\n", 1)[1])


def localapi_json(socket_path: str, method: str, path: str, payload: Any = None) -> Any:
    body = None if payload is None else json.dumps(payload).encode()
    resp = localapi(socket_path, method, path, body)
    try:
        data = resp.read()
    finally:
        resp.close()
    return json.loads(data) if data.strip() else None


def tailscaled_process() -> int | None:
    """PID of a process named tailscaled (the real CLI asks ps for one), or None."""
    for pid in sorted(int(e) for e in os.listdir("/proc") if e.isdigit()):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.find(b"(") + 1 : stat.rfind(b")")]
        if name == b"tailscaled":
            return pid
    return None


def on_path(program: str) -> bool:
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return True
    return False


def nameserver() -> str:
    """The first nameserver of /etc/resolv.conf, as Go's resolver names it in errors."""
    with open("/etc/resolv.conf") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return f"[{parts[1]}]:53" if ":" in parts[1] else f"{parts[1]}:53"
    return "127.0.0.1:53"


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, "") or default)


# --------------------------------------------------------------------------------------------
# Usage texts, copied verbatim from the real 1.96.4 binaries (see tests/fakes/reference/).

_TAILSCALED_USAGE = (
    "Usage of {argv0}:\n"
    "  -bird-socket string\n"
    "    \tpath of the bird unix socket\n"
    "  -cleanup\n"
    "    \tclean up system state and exit\n"
    "  -config string\n"
    "    \tpath to config file, or 'vm:user-data' to use the VM's user-data (E"
    "C2)\n"
    "  -debug string\n"
    "    \tlisten address ([ip]:port) of optional debug server\n"
    "  -encrypt-state\n"
    "    \tencrypt the state file on disk; when not set encryption will be ena"
    "bled if supported on this platform; uses TPM on Linux and Windows, on al"
    "l other platforms this flag is not supported\n"
    "  -hardware-attestation\n"
    "    \tuse hardware-backed keys to bind node identity to this device when "
    "supported\n"
    "    \tby the OS and hardware. Uses TPM 2.0 on Linux and Windows; SecureEn"
    "clave on\n"
    "    \tmacOS and iOS; and Keystore on Android. Only supported for Tailscal"
    "e nodes that\n"
    "    \tstore state on filesystem.\n"
    "  -no-logs-no-support\n"
    "    \tdisable log uploads; this also disables any technical support\n"
    "  -outbound-http-proxy-listen string\n"
    '    \toptional [ip]:port to run an outbound HTTP proxy (e.g. "localhost:8'
    '080")\n'
    "  -port value\n"
    "    \tUDP port to listen on for WireGuard and peer-to-peer traffic; 0 mea"
    "ns automatically select (default 0)\n"
    "  -socket string\n"
    '    \tpath of the service unix socket (default "/var/run/tailscale/tailsc'
    'aled.sock")\n'
    "  -socks5-server string\n"
    '    \toptional [ip]:port to run a SOCK5 server (e.g. "localhost:1080")\n'
    "  -state string\n"
    "    \tabsolute path of state file; use 'kube:<secret-name>' to use Kubern"
    "etes secrets or 'arn:aws:ssm:...' to store in AWS SSM; use 'mem:' to not"
    " store state and register as an ephemeral node. If empty and --statedir "
    "is provided, the default is <statedir>/tailscaled.state. Default: /var/l"
    "ib/tailscale/tailscaled.state\n"
    "  -statedir string\n"
    "    \tpath to directory for storage of config state, TLS certs, temporary"
    " incoming Taildrop files, etc. If empty, it's derived from --state when "
    "possible.\n"
    "  -tun string\n"
    '    \ttunnel interface name; use "userspace-networking" (beta) to not use'
    ' TUN (default "tailscale0")\n'
    "  -verbose int\n"
    "    \tlog verbosity level; 0 is default, 1 or higher are increasingly ver"
    "bose\n"
    "  -version\n"
    "    \tprint version information and exit\n"
)

_USAGE_ROOT = (
    "The easiest, most secure way to use WireGuard.\n"
    "\n"
    "USAGE\n"
    "  tailscale [flags] <subcommand> [command flags]\n"
    "\n"
    'For help on subcommands, add --help after: "tailscale status --help".\n'
    "\n"
    "This CLI is still under active development. Commands and flags will\n"
    "change in the future.\n"
    "\n"
    "SUBCOMMANDS\n"
    "  up           Connect to Tailscale, logging in if needed\n"
    "  down         Disconnect from Tailscale\n"
    "  set          Change specified preferences\n"
    "  login        Log in to a Tailscale account\n"
    "  logout       Disconnect from Tailscale and expire current node key\n"
    "  switch       Switch to a different Tailscale account\n"
    "  configure    Configure the host to enable more Tailscale features\n"
    "  syspolicy    Diagnose the MDM and system policy configuration\n"
    "  netcheck     Print an analysis of local network conditions\n"
    "  ip           Show Tailscale IP addresses\n"
    "  dns          Diagnose the internal DNS forwarder\n"
    "  status       Show state of tailscaled and its connections\n"
    "  metrics      Show Tailscale metrics\n"
    "  ping         Ping a host at the Tailscale layer, see how it routed\n"
    "  nc           Connect to a port on a host, connected to stdin/stdout\n"
    "  ssh          SSH to a Tailscale machine\n"
    "  funnel       Serve content and local servers on the internet\n"
    "  serve        Serve content and local servers on your tailnet\n"
    "  version      Print Tailscale version\n"
    "  web          Run a web server for controlling Tailscale\n"
    "  file         Send or receive files\n"
    "  bugreport    Print a shareable identifier to help diagnose issues\n"
    "  cert         Get TLS certs\n"
    "  lock         Manage tailnet lock\n"
    "  licenses     Get open source license information\n"
    "  exit-node    Show machines on your tailnet configured as exit nodes\n"
    "  update       Update Tailscale to the latest/different version\n"
    "  whois        Show the machine and user associated with a Tailscale IP "
    "(v4 or v6)\n"
    "  drive        Share a directory with your tailnet\n"
    "  systray      Run a systray application to manage Tailscale\n"
    "  appc-routes  Print the current app connector routes\n"
    "  wait         Wait for Tailscale interface/IPs to be ready for binding\n"
    "  completion   Shell tab-completion scripts\n"
    "\n"
    "FLAGS\n"
    "  --socket value\n"
    "    \tpath to tailscaled socket (default /var/run/tailscale/tailscaled.so"
    "ck)\n"
)

_USAGE_UP = (
    "Connect to Tailscale, logging in if needed\n"
    "\n"
    "USAGE\n"
    "  tailscale up [flags]\n"
    "\n"
    '"tailscale up" connects this machine to your Tailscale network,\n'
    "triggering authentication if necessary.\n"
    "\n"
    'With no flags, "tailscale up" brings the network online without\n'
    "changing any settings. (That is, it's the opposite of \"tailscale\n"
    'down").\n'
    "\n"
    "If flags are specified, the flags must be the complete set of desired\n"
    "settings. An error is returned if any setting would be changed as a\n"
    "result of an unspecified flag's default value, unless the --reset flag\n"
    "is also used. (The flags --auth-key, --force-reauth, and --qr are not\n"
    "considered settings that need to be re-specified when modifying\n"
    "settings.)\n"
    "\n"
    "FLAGS\n"
    "  --accept-dns, --accept-dns=false\n"
    "    \taccept DNS configuration from the admin panel (default true)\n"
    "  --accept-risk value\n"
    "    \taccept risk and skip confirmation for risk types: lose-ssh,mac-app-"
    "connector,all\n"
    "  --accept-routes, --accept-routes=false\n"
    "    \taccept routes advertised by other Tailscale nodes (default false)\n"
    "  --advertise-connector, --advertise-connector=false\n"
    "    \tadvertise this node as an app connector (default false)\n"
    "  --advertise-exit-node, --advertise-exit-node=false\n"
    "    \toffer to be an exit node for internet traffic for the tailnet (defa"
    "ult false)\n"
    "  --advertise-routes value\n"
    '    \troutes to advertise to other nodes (comma-separated, e.g. "10.0.0.0'
    '/8,192.168.0.0/24") or empty string to not advertise routes\n'
    "  --advertise-tags value\n"
    '    \tcomma-separated ACL tags to request; each must start with "tag:" (e'
    '.g. "tag:eng,tag:montreal,tag:ssh")\n'
    "  --audience value\n"
    "    \tAudience used when requesting an ID token from an identity provider"
    " for auth keys via workload identity federation\n"
    "  --auth-key value\n"
    '    \tnode authorization key; if it begins with "file:", then it\'s a path'
    " to a file containing the authkey\n"
    "  --client-id value\n"
    "    \tClient ID used to generate authkeys via workload identity federatio"
    "n\n"
    "  --client-secret value\n"
    "    \tClient Secret used to generate authkeys via OAuth; if it begins wit"
    'h "file:", then it\'s a path to a file containing the secret\n'
    "  --exit-node value\n"
    "    \tTailscale exit node (IP, base name, or auto:any) for internet traff"
    "ic, or empty string to not use an exit node\n"
    "  --exit-node-allow-lan-access, --exit-node-allow-lan-access=false\n"
    "    \tAllow direct access to the local network when routing traffic via a"
    "n exit node (default false)\n"
    "  --force-reauth, --force-reauth=false\n"
    "    \tforce reauthentication (WARNING: this may bring down the Tailscale "
    "connection and thus should not be done remotely over SSH or RDP) (defaul"
    "t false)\n"
    "  --hostname value\n"
    "    \thostname to use instead of the one provided by the OS\n"
    "  --id-token value\n"
    "    \tID token from the identity provider to exchange with the control se"
    'rver for workload identity federation; if it begins with "file:", then i'
    "t's a path to a file containing the token\n"
    "  --json, --json=false\n"
    "    \toutput in JSON format (WARNING: format subject to change) (default "
    "false)\n"
    "  --login-server value\n"
    "    \tbase URL of control server (default https://controlplane.tailscale."
    "com)\n"
    "  --netfilter-mode value\n"
    "    \tnetfilter mode (one of on, nodivert, off) (default on)\n"
    "  --operator value\n"
    "    \tUnix username to allow to operate on tailscaled without sudo\n"
    "  --qr, --qr=false\n"
    "    \tshow QR code for login URLs (default false)\n"
    "  --qr-format value\n"
    "    \tQR code formatting (auto, ascii, large, small) (default auto)\n"
    "  --reset, --reset=false\n"
    "    \treset unspecified settings to their default values (default false)\n"
    "  --shields-up, --shields-up=false\n"
    "    \tdon't allow incoming connections (default false)\n"
    "  --snat-subnet-routes, --snat-subnet-routes=false\n"
    "    \tsource NAT traffic to local routes advertised with --advertise-rout"
    "es (default true)\n"
    "  --ssh, --ssh=false\n"
    "    \trun an SSH server, permitting access per tailnet admin's declared p"
    "olicy (default false)\n"
    "  --stateful-filtering, --stateful-filtering=false\n"
    "    \tapply stateful filtering to forwarded packets (subnet routers, exit"
    " nodes, and so on) (default false)\n"
    "  --timeout value\n"
    "    \tmaximum amount of time to wait for tailscaled to enter a Running st"
    "ate; default (0s) blocks forever (default 0s)\n"
)

_USAGE_STATUS = (
    "Show state of tailscaled and its connections\n"
    "\n"
    "USAGE\n"
    "  tailscale status [--active] [--web] [--json]\n"
    "\n"
    "JSON FORMAT\n"
    "\n"
    "Warning: this format has changed between releases and might change more\n"
    "in the future.\n"
    "\n"
    'For a description of the fields, see the "type Status" declaration at:\n'
    "\n"
    "https://github.com/tailscale/tailscale/blob/main/ipn/ipnstate/ipnstate.g"
    "o\n"
    "\n"
    "(and be sure to select branch/tag that corresponds to the version\n"
    " of Tailscale you're running)\n"
    "\n"
    "FLAGS\n"
    "  --active, --active=false\n"
    "    \tfilter output to only peers with active sessions (not applicable to"
    " web mode) (default false)\n"
    "  --browser, --browser=false\n"
    "    \tOpen a browser in web mode (default true)\n"
    "  --header, --header=false\n"
    "    \tshow column headers in table format (default false)\n"
    "  --json, --json=false\n"
    "    \toutput in JSON format (WARNING: format subject to change) (default "
    "false)\n"
    "  --listen value\n"
    "    \tlisten address for web mode; use port 0 for automatic (default 127."
    "0.0.1:8384)\n"
    "  --peers, --peers=false\n"
    "    \tshow status of peers (default true)\n"
    "  --self, --self=false\n"
    "    \tshow status of local machine (default true)\n"
    "  --web, --web=false\n"
    "    \trun webserver with HTML showing status (default false)\n"
)

_USAGE_LOGOUT = (
    "Disconnect from Tailscale and expire current node key\n"
    "\n"
    "USAGE\n"
    "  tailscale logout\n"
    "\n"
    '"tailscale logout" brings the network down and invalidates\n'
    "the current node key, forcing a future use of it to cause\n"
    "a reauthentication.\n"
    "\n"
    "FLAGS\n"
    "  --reason value\n"
    "    \treason for the logout, if required by a policy\n"
)

_USAGE_DOWN = (
    "Disconnect from Tailscale\n"
    "\n"
    "USAGE\n"
    "  tailscale down\n"
    "\n"
    "FLAGS\n"
    "  --accept-risk value\n"
    "    \taccept risk and skip confirmation for risk types: lose-ssh,mac-app-"
    "connector,all\n"
    "  --reason value\n"
    "    \treason for the disconnect, if required by a policy\n"
)

_USAGE_VERSION = (
    "Print Tailscale version\n"
    "\n"
    "USAGE\n"
    "  tailscale version [flags]\n"
    "\n"
    "FLAGS\n"
    "  --daemon, --daemon=false\n"
    "    \talso print local node's daemon version (default false)\n"
    "  --json, --json=false\n"
    "    \toutput in JSON format (default false)\n"
    "  --track value\n"
    '    \twhich track to check for updates: "stable", "release-candidate", or'
    ' "unstable" (dev); empty means same as current\n'
    "  --upstream, --upstream=false\n"
    "    \tfetch and print the latest upstream release version from pkgs.tails"
    "cale.com (default false)\n"
)

_USAGE_PING = (
    "Ping a host at the Tailscale layer, see how it routed\n"
    "\n"
    "USAGE\n"
    "  tailscale ping <hostname-or-IP>\n"
    "\n"
    "The 'tailscale ping' command pings a peer node from the Tailscale layer\n"
    "and reports which route it took for each response. The first ping or\n"
    "so will likely go over DERP (Tailscale's TCP relay protocol) while NAT\n"
    "traversal finds a direct path through.\n"
    "\n"
    "If 'tailscale ping' works but a normal ping does not, that means one\n"
    "side's operating system firewall is blocking packets; 'tailscale ping'\n"
    "does not inject packets into either side's TUN devices.\n"
    "\n"
    "By default, 'tailscale ping' stops after 10 pings or once a direct\n"
    "(non-DERP) path has been established, whichever comes first.\n"
    "\n"
    "The provided hostname must resolve to or be a Tailscale IP\n"
    "(e.g. 100.x.y.z) or a subnet IP advertised by a Tailscale\n"
    "relay node.\n"
    "\n"
    "FLAGS\n"
    "  --c value\n"
    "    \tmax number of pings to send. 0 for infinity. (default 10)\n"
    "  --icmp, --icmp=false\n"
    "    \tdo a ICMP-level ping (through WireGuard, but not the local host OS "
    "stack) (default false)\n"
    "  --peerapi, --peerapi=false\n"
    "    \ttry hitting the peer's peerapi HTTP server (default false)\n"
    "  --size value\n"
    "    \tsize of the ping message (disco pings only). 0 for minimum size. (d"
    "efault 0)\n"
    "  --timeout value\n"
    "    \ttimeout before giving up on a ping (default 5s)\n"
    "  --tsmp, --tsmp=false\n"
    "    \tdo a TSMP-level ping (through WireGuard, but not either host OS sta"
    "ck) (default false)\n"
    "  --until-direct, --until-direct=false\n"
    "    \tstop once a direct path is established (default true)\n"
    "  --verbose, --verbose=false\n"
    "    \tverbose output (default false)\n"
)

CLI_USAGE: dict[str, str] = {
    "root": _USAGE_ROOT,
    "up": _USAGE_UP,
    "status": _USAGE_STATUS,
    "logout": _USAGE_LOGOUT,
    "down": _USAGE_DOWN,
    "version": _USAGE_VERSION,
    "ping": _USAGE_PING,
}
