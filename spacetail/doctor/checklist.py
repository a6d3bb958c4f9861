"""`spacetail doctor`: everything between a hook and a tailnet service, checked line by line.

Each check says what holds and what does not, with the fix: the binaries, the state folder, the
manager and tailscale's state, the proxy variables of the calling shell, the network to
Tailscale (netcheck), each target (the tailnet's DNS, `tailscale ping`, a TCP connection
through the proxy), and the credentials (doctor/credential_findings.py). Every step has a bounded
timeout, and no secret is ever printed: values of the credential variables are never read into
a finding, and the whole output is scrubbed of them and of anything shaped like a key or a
token.
"""

from __future__ import annotations

import ipaddress
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from spacetail.config.proxyurl import mask
from spacetail.doctor.credential_findings import workload_identity, write_credential_check
from spacetail.doctor.findings import (
    DNS_TIMEOUT,
    NETCHECK_ADVICE,
    TCP_TIMEOUT,
    Check,
    Finding,
    Target,
    Verdict,
    dns_query,
    exit_code,
    fix_for,
    is_tailnet_ip,
    manager_status,
    no_proxy_excludes,
    parse_target,
    rcode_text,
    render_json,
    render_text,
    scrub,
    socks5_connect,
    version_tuple,
)
from spacetail.errors import ConfigError
from spacetail.state.kinds import kind_of
from spacetail.state.proxyenv import NAMES as PROXY_CHECKED
from spacetail.state.status import Status as ManagerStatus
from spacetail.tailnet.failures import Failure, FailureClass, diagnose, meaningful_line
from spacetail.tailnet.oneshot import Runner, ping, sh_runner

VERSION_TIMEOUT = 5.0
NETCHECK_TIMEOUT = 15.0
UP_HOOK = 'eval "$(spacetail up --env || echo false)"'
DOWN_HOOK = 'eval "$(spacetail down --env || echo false)"'


# --- the doctor -------------------------------------------------------------------------------


class Doctor:
    """Runs the checks. Its collaborators come in, so tests drive it with fakes: the environment
    of the calling shell, the manager's status (what `spacetail status` reads, or None when
    the state folder cannot be read), a runner for the tailscale CLI, a wall clock, the DNS
    query and the SOCKS5 connect. Token files are read as `up` reads them
    (secrets.read_secret_file)."""

    def __init__(
        self,
        env: Mapping[str, str],
        status: ManagerStatus | None,
        run: Runner,
        clock: Callable[[], float] = time.time,
        *,
        targets: Sequence[Target] = (),
        resolve: Callable[[Path, str, float], tuple[int, list[str]]] = dns_query,
        connect: Callable[[str, Target, float], None] = socks5_connect,
    ) -> None:
        self.env = env
        self.status = status
        self.run_cli = run
        self.clock = clock
        self.targets = targets
        self.resolve = resolve
        self.connect = connect
        self.versions: dict[str, str] = {}

    # The order is the path a request takes, from the hook to the service.
    def run(self) -> list[Check]:
        checks = [self.credentials(), self.binaries(), self.state_folder(), self.manager()]
        checks.append(self.tailscale_state())
        checks += [self.proxy_variables(), self.netcheck()]
        for target in self.targets:
            checks.append(self.target(target))
        if self.env.get("TS_CLIENT_ID", "").strip():
            checks.append(self.workload_identity())
        held = write_credential_check(self.env)
        if held is not None:
            checks.append(held)
        return checks

    @property
    def running(self) -> bool:
        return self.status is not None and self.status.running

    @property
    def backend_running(self) -> bool:
        return self.running and self._status.backend_state == "Running"

    @property
    def _status(self) -> ManagerStatus:
        """The status read, or an empty one (nothing runs) when the folder could not be read."""
        return self.status or ManagerStatus()

    def _tailscale(self) -> str:
        if self.status and self.status.tailscale:
            return self.status.tailscale
        from spacetail.install.locate import find_binaries

        return str(find_binaries(self.env).tailscale)

    def _cli(self, *args: str) -> list[str]:
        argv = [self._tailscale()]
        if self.running and self._status.tailscaled_socket:
            argv.append(f"--socket={self._status.tailscaled_socket}")
        return [*argv, *args]

    # --- the checks ---------------------------------------------------------------------------

    def credentials(self) -> Check:
        """The credential `up` would log in with, chosen by the same code with the same words
        (config/credentials.py): its refusal is the first thing `up` fails on."""
        from spacetail.config.loader import choose_credential

        check = Check("credentials")
        try:
            choice = choose_credential(self.env)
        except ConfigError as exc:
            message, _, fix = str(exc).partition("; ")
            return check.add(Verdict.FAIL, message, fix or None)
        auth = choice.auth
        assert auth is not None  # choose_credential refuses none
        scope = choice.scope.value if choice.scope else None
        check.details = {"kind": auth.kind, "source": auth.secret.source, "scope": scope,
                         "tags": list(choice.tags)}  # fmt: skip
        what = {"authkey": "an auth key", "oauth": "an OAuth client secret",
                "wif": "workload identity, its ID token"}[auth.kind]  # fmt: skip
        client = f" for client {auth.client_id}" if auth.client_id else ""
        text = f"`spacetail up` would log in with {what} from {auth.secret.source}{client}"
        text += f", scope {scope}" if scope else ""
        check.add(Verdict.OK, text + (f", tags {','.join(choice.tags)}" if choice.tags else ""))
        if choice.note:
            check.add(Verdict.WARN, choice.note)
        return check

    def binaries(self) -> Check:
        from spacetail.install.locate import find_binaries

        check = Check("binaries")
        try:
            found = find_binaries(self.env)
        except ConfigError as exc:
            message, _, fix = str(exc).partition("; ")
            return check.add(Verdict.FAIL, message, fix or None)
        for name, path, flag in (("tailscale", found.tailscale, "version"),
                                 ("tailscaled", found.tailscaled, "--version")):  # fmt: skip
            result = self.run_cli([str(path), flag], VERSION_TIMEOUT)
            first = (result.stdout.strip().splitlines() or [""])[0].strip()
            if result.exit_code != 0 or not version_tuple(first):
                exited = Failure(FailureClass.LOCAL, f"exit {result.exit_code}")
                failure = diagnose(result.output) if result.output else exited
                check.add(Verdict.FAIL, f"{name} at {path} does not run: {failure.line}",
                          fix_for(failure))  # fmt: skip
                continue
            self.versions[name] = first
            check.details[name] = {"path": str(path), "version": first}
            check.add(Verdict.OK, f"{name} {first} ({path})")
        if len(set(self.versions.values())) > 1:
            check.add(Verdict.WARN, "tailscale and tailscaled are different versions",
                      "install both from one package (spacetail install-tailscale)")  # fmt: skip
        return check

    def state_folder(self) -> Check:
        from spacetail.state.paths import state_dir

        path = Path(self._status.state_dir or state_dir(self.env))
        check = Check("state folder", details={"path": str(path)})
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return check.add(Verdict.OK, f"{path} does not exist yet (`spacetail up` creates it)")
        except OSError as exc:
            return check.add(Verdict.FAIL, f"{path}: {exc.strerror}",
                             "point SPACETAIL_DIR at a folder of your own")  # fmt: skip
        mode = st.st_mode & 0o777
        if not os.path.isdir(path) or os.path.islink(path):
            return check.add(Verdict.FAIL, f"{path} is not a plain folder",
                             "remove it or point SPACETAIL_DIR elsewhere")  # fmt: skip
        if st.st_uid != os.getuid():
            return check.add(Verdict.FAIL, f"{path} belongs to uid {st.st_uid}, not to you",
                             "point SPACETAIL_DIR at a folder of your own")  # fmt: skip
        if mode & 0o022:
            return check.add(Verdict.FAIL, f"{path} is writable by others (mode {mode:o})",
                             f"chmod 700 {path}")  # fmt: skip
        return check.add(Verdict.OK, f"{path} (yours, mode {mode:o})")

    def manager(self) -> Check:
        check = Check("manager")
        status = self._status
        if not self.running:
            if status.stale or status.problem:
                check.add(Verdict.FAIL, str(status.stale or status.problem))
            last = status.last_stop
            if last is not None and last.failure:
                check.add(Verdict.FAIL, f"the last manager stopped at {last.at}: {last.reason}",
                          last.advice)  # fmt: skip
            return check.add(Verdict.FAIL, "no manager runs here",
                             f"start one in a before_* hook: {UP_HOOK}")  # fmt: skip
        phase = status.phase.value if status.phase else None
        check.details = {"manager_pid": status.manager_pid, "phase": phase,
                         "uptime": status.uptime, "restarts": status.restarts}  # fmt: skip
        check.add(Verdict.OK, f"manager pid {status.manager_pid}, phase {phase}, up "
                  f"{status.uptime} s")  # fmt: skip
        if status.failed and status.login.reason:
            failure = _verdict(status)
            check.add(Verdict.FAIL, f"it gave up: {failure.line}", fix_for(failure))
        if status.restarts:
            check.add(Verdict.WARN, f"tailscaled was restarted {status.restarts} times "
                      f"(last: {status.last_exit})",
                      "see `spacetail logs --tailscaled`")  # fmt: skip
        return check

    def tailscale_state(self) -> Check:
        check = Check("tailscale")
        if not self.running:
            return check.add(Verdict.SKIP, "no manager, so no tailscaled to ask")
        status = self._status
        state = status.backend_state
        health = list(status.node.health)
        check.details = {"backend_state": state, "health": health,
                         "tailscale_ips": list(status.node.tailscale_ips)}  # fmt: skip
        if state == "Running":
            ips = ", ".join(status.node.tailscale_ips) or "no IP yet"
            check.add(Verdict.OK, f"Running as {status.name} ({ips})")
        else:
            from spacetail.tailnet.failures import login_error

            error = login_error(health)
            failure = diagnose(error) if error else _verdict(status, f"state {state}")
            check.add(Verdict.FAIL, f"state {state}: {failure.line}", fix_for(failure))
        for item in health:
            if "last login error" not in item.lower():
                check.add(Verdict.WARN, f"tailscale says: {item}")
        return check

    def proxy_variables(self) -> Check:
        from spacetail.state.proxyenv import proxy_variables

        check = Check("proxy variables")
        proxies = self._status.proxies
        expected = proxy_variables(proxies.to_json()) if self.running and proxies else {}
        seen = {n: self.env[n] for n in PROXY_CHECKED if self.env.get(n)}
        check.details = {"set": {n: mask(v) for n, v in seen.items()}, "expected": expected}
        if not self.running:
            if seen:
                values = sorted({mask(v) for v in seen.values()})
                check.add(Verdict.FAIL, f"{', '.join(seen)} set ({', '.join(values)}) but no "
                          "manager runs: a dead proxy, maybe saved from an earlier phase",
                          f"unset them: {DOWN_HOOK}")  # fmt: skip
            else:
                check.add(Verdict.OK, "none set (and no manager runs)")
        else:
            for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
                check.findings.append(self._proxy_finding(name, seen, expected))
        no_proxy = self.env.get("NO_PROXY") or self.env.get("no_proxy") or ""
        for target in self.targets:
            entry = no_proxy_excludes(no_proxy, target.host)
            if entry:
                check.add(Verdict.FAIL, f"NO_PROXY entry {entry!r} sends {target.host} around the "
                          "tailnet", f"remove {entry!r} from NO_PROXY and no_proxy")  # fmt: skip
        return check

    def _proxy_finding(
        self, name: str, seen: Mapping[str, str], expected: Mapping[str, str]
    ) -> Finding:
        names = [n for n in (name, name.lower()) if n in seen]
        want = expected.get(name, "")
        if not names:
            return Finding(Verdict.FAIL, f"{name} is not set in this shell",
                           f"run {UP_HOOK} in the same shell (a hook of the phase)")  # fmt: skip
        for n in names:
            if seen[n].split("://")[-1] != want.split("://")[-1]:
                return Finding(Verdict.FAIL, f"{n}={mask(seen[n])}, not this manager's "
                               f"{want}", f"unset it, then {UP_HOOK}")  # fmt: skip
        return Finding(Verdict.OK, f"{' and '.join(names)} = {mask(seen[names[0]])}")

    def netcheck(self) -> Check:
        check = Check("network to Tailscale")
        try:
            result = self.run_cli(self._cli("netcheck"), NETCHECK_TIMEOUT)
        except ConfigError as exc:
            return check.add(Verdict.SKIP, f"no tailscale to run netcheck: {exc}")
        udp = re.search(r"\bUDP:\s*(true|false)", result.stdout)
        derp = re.search(r"Nearest DERP:\s*(.+)", result.stdout)
        check.details = {"udp": udp and udp.group(1) == "true", "nearest_derp": derp and
                         derp.group(1).strip(), "exit_code": result.exit_code}  # fmt: skip
        if result.timed_out or result.exit_code != 0 or not udp:
            line = meaningful_line(result.output) or f"exit {result.exit_code}"
            fix = NETCHECK_ADVICE.get(diagnose(line).kind, NETCHECK_ADVICE[None])
            return check.add(Verdict.WARN, f"tailscale netcheck failed: {line}", fix)
        where = f"nearest DERP relay: {derp.group(1).strip()}" if derp else "no DERP relay reached"
        if udp.group(1) == "true":
            return check.add(Verdict.OK, f"UDP works (direct connections possible); {where}")
        return check.add(Verdict.WARN, f"UDP is blocked: relay only (DERP), slower than direct; "
                         f"{where}",
                         "allow outbound UDP (41641, 3478) for direct connections")  # fmt: skip

    def target(self, target: Target) -> Check:
        check = Check(f"target {target}", details={"host": target.host, "port": target.port})
        if not self.running:
            return check.add(Verdict.SKIP, "no manager: nothing to reach it through")
        addresses, miss = self._target_dns(check, target)
        dns_at = len(check.findings)
        on_tailnet = is_tailnet_ip(target.host) or any(map(is_tailnet_ip, addresses or []))
        if self.backend_running and (on_tailnet or addresses is None):
            self._target_ping(check, target)
        reached = self._target_tcp(check, target)
        if miss is not None:  # judged once the connection tells whether the name matters
            check.findings.insert(dns_at, _dns_miss(target, miss, reached))
        return check

    def _target_dns(self, check: Check, target: Target) -> tuple[list[str] | None, int | None]:
        """The addresses tailscale's resolver gives (None: it could not be asked), and the rcode
        when it does not know the name (its finding waits for the TCP connection)."""
        try:
            ipaddress.ip_address(target.host)
        except ValueError:
            pass
        else:
            return [], None
        if not self.backend_running:
            check.add(Verdict.SKIP, "DNS: tailscale is not Running")
            return [], None
        sock = Path(str(self._status.tailscaled_socket))
        try:
            rcode, addresses = self.resolve(sock, target.host, DNS_TIMEOUT)
        except Exception as exc:  # any failure is a finding, never a traceback
            reason = " ".join(str(exc).split())
            check.add(Verdict.WARN, f"DNS: tailscale's resolver could not be asked: {reason}")
            return None, None
        check.details["addresses"] = addresses
        if not addresses:
            return addresses, rcode
        if any(is_tailnet_ip(a) for a in addresses):
            check.add(Verdict.OK, f"DNS: {target.host} -> {', '.join(addresses)} (tailnet)")
        else:
            check.add(Verdict.WARN, f"DNS: {target.host} -> {', '.join(addresses)}, not a tailnet "
                      "IP: a split-DNS name, which tailscaled's proxies do not resolve "
                      "(tailscale#4677)", "use the IP address, or a MagicDNS name")  # fmt: skip
        return addresses, None

    def _target_ping(self, check: Check, target: Target) -> None:
        sock = Path(str(self._status.tailscaled_socket))
        result = ping(self.run_cli, Path(self._tailscale()), sock, target.host)
        pong = result.pong
        if pong is None:
            check.add(Verdict.FAIL, f"ping: no answer from {target.host}: {result.problem}",
                      "is the peer online, and does the tailnet policy let this node reach "
                      "it?")  # fmt: skip
            return
        check.details["ping"] = {"peer": pong.peer, "ip": pong.ip, "via": pong.via,
                                 "latency": pong.latency}  # fmt: skip
        if pong.derp:
            check.add(Verdict.WARN, f"ping: {pong.peer} answers relayed through DERP "
                      f"{pong.derp} in {pong.latency}: works, slower than direct")  # fmt: skip
        else:
            check.add(Verdict.OK, f"ping: {pong.peer} answers directly ({pong.via}) in "
                      f"{pong.latency}")  # fmt: skip

    def _target_tcp(self, check: Check, target: Target) -> bool:
        socks = self._status.proxies.socks5 if self._status.proxies else ""
        proxy = socks.split("://", 1)[-1]
        started = self.clock()
        try:
            self.connect(proxy, target, TCP_TIMEOUT)
        except OSError as exc:  # socks5.DialError is one
            reason = getattr(exc, "reason", "") or exc.strerror or str(exc)
            check.add(Verdict.FAIL, f"TCP through the SOCKS5 proxy {proxy}: {reason}",
                      f"is something listening on port {target.port}, and may this node reach "
                      "it (tailnet policy, subnet routes: TS_ACCEPT_ROUTES)?")  # fmt: skip
            return False
        ms = (self.clock() - started) * 1000
        check.details["tcp_ms"] = round(ms, 1)
        check.add(Verdict.OK, f"TCP through the SOCKS5 proxy {proxy}: connected in {ms:.0f} ms")
        return True

    def workload_identity(self) -> Check:
        return workload_identity(self.env, self.versions.get("tailscale", ""), self.clock())


def _dns_miss(target: Target, rcode: int, reached: bool) -> Finding:
    """Tailscale's resolver does not know the name. A failure only when the target cannot be
    reached either: the proxy resolves other names with this machine's DNS, and a target it
    connected to is what a hook needs."""
    what = f"DNS: {target.host} is not a name tailscale's resolver knows ({rcode_text(rcode)})"
    if reached:
        return Finding(Verdict.WARN, f"{what}; the proxy reached it another way (this machine's "
                       "DNS or /etc/hosts), so programs that use the proxy reach it",
                       "nothing to do for programs that use the proxy; one that resolves names "
                       "itself needs the IP address or a MagicDNS name")  # fmt: skip
    return Finding(Verdict.FAIL, what, "check the name: a MagicDNS name (host.tailnet.ts.net) or "
                   "a name your tailnet's DNS serves")  # fmt: skip


def main(
    targets: Sequence[str] = (),
    *,
    as_json: bool = False,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    """`spacetail doctor [--target HOST:PORT]... [--json]`: 0 when every check holds, 1 when
    one fails (2 for a bad --target, raised as ConfigError)."""
    import sys

    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    parsed = [parse_target(t) for t in targets]
    doctor = Doctor(env, manager_status(env), sh_runner(env), targets=parsed)
    checks = doctor.run()
    text = render_json(checks) if as_json else render_text(checks)
    out.write(scrub(text, env))
    out.flush()
    return exit_code(checks)


def _verdict(status: ManagerStatus, otherwise: str = "") -> Failure:
    """The manager's verdict as it told it: its words and its kind (never its words read
    again as if tailscale had said them)."""
    login = status.login
    kind = kind_of(login.kind) or FailureClass.UNKNOWN
    return Failure(kind, login.reason or otherwise, login.setting)
