"""Command-line parsing only: one function per subcommand turns arguments into plain values and
calls the code that acts (`commands/`, `state/lookup.py`, `install/installer.py`...), which
never sees argparse."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence

from spacetail import __version__
from spacetail.errors import ConfigError, SpacetailError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from spacetail.config.loader import Config
    from spacetail.config.settings import Setting
    from spacetail.state.paths import Paths


Handler = Callable[[argparse.Namespace], int]


def _say(message: str) -> None:
    print(f"spacetail: {message}", file=sys.stderr, flush=True)


def _paths(args: argparse.Namespace) -> Paths:
    from spacetail.state.paths import Paths

    env = dict(os.environ)
    if args.dir:
        env["SPACETAIL_DIR"] = args.dir
        return Paths.from_env(env, "--dir")
    return Paths.from_env(env)


def _dest(key: str) -> str:
    return "setting_" + key.replace("-", "_")


def _flags(args: argparse.Namespace) -> dict[str, str | None]:
    """The settings given on the command line, by key (config/settings.py); None if not given."""
    flags: dict[str, str | None] = {}
    for name, value in vars(args).items():
        if not name.startswith("setting_"):
            continue
        key = name.removeprefix("setting_").replace("_", "-")
        if isinstance(value, bool):
            flags[key] = str(value).lower()
        elif isinstance(value, list):
            flags[key] = ",".join(value)
        else:
            flags[key] = value
    return flags


def _config(
    args: argparse.Namespace, *, need_auth: bool = True, spelled: tuple[Setting, ...] = ()
) -> Config:
    from spacetail.config import loader

    return loader.load(os.environ, _flags(args), need_auth=need_auth, spelled=spelled)


def cmd_up(args: argparse.Namespace) -> int:
    from spacetail.commands.up import up

    cfg = _config(args)
    reply = up(cfg, _paths(args), os.environ, wait=not args.no_wait, interruptible=True)
    if args.env and reply.proxies is not None:
        from spacetail.state.proxyenv import export_lines

        sys.stdout.write(export_lines(reply.proxies.to_json()))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from spacetail.commands.down import down

    done = down(_paths(args), os.environ, logout=args.logout)
    _say("; ".join(done) if done else "nothing was running")
    if args.env:
        from spacetail.state.proxyenv import unset_lines

        sys.stdout.write(unset_lines())
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from spacetail.commands import wait
    from spacetail.config.settings import WAIT
    from spacetail.progress import Progress

    cfg = _config(args, need_auth=False, spelled=WAIT)
    progress = Progress(sys.stderr if cfg.progress else None)
    reply = wait.wait(_paths(args), cfg.timeout, os.environ, peers=cfg.peers,
                         targets=cfg.wait_for, progress=progress, started=args.started)  # fmt: skip
    ips = ", ".join(reply.node.tailscale_ips)
    _say(f"the tailnet is usable ({reply.node.hostname}, {ips})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from spacetail.state import lookup

    result = lookup.status(_paths(args))
    if args.json:
        import json

        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return 0
    from spacetail.state.report import describe

    print("\n".join(describe(result)))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from spacetail.state import lookup
    from spacetail.state.proxyenv import export_lines, unset_lines

    if args.unset:
        sys.stdout.write(unset_lines())
        return 0
    result = lookup.status(_paths(args))
    if result.proxies is not None:
        proxies = result.proxies.to_json()
    else:
        proxies = _config(args, need_auth=False).proxies
        _say("no manager runs here: these are the addresses `spacetail up` would use")
    sys.stdout.write(export_lines(proxies))
    return 0


def cmd_nc(args: argparse.Namespace) -> int:
    """stdin/stdout to HOST:PORT through the running manager's tailscale (ssh ProxyCommand)."""
    from spacetail.commands import nc
    from spacetail.forwards.spec import parse_port
    from spacetail.state import lookup
    from spacetail.tailnet.dial import tailnet_from_status

    host = _host("nc HOST", args.host)
    port = parse_port("nc PORT", args.port)
    dialer, _api, _suffix = tailnet_from_status(lookup.status(_paths(args)))
    return nc.nc(dialer, host, port, send_eof=args.send_eof)


def cmd_resolve(args: argparse.Namespace) -> int:
    """The addresses the tailnet's resolver gives NAME (MagicDNS and split DNS)."""
    from spacetail.state import lookup
    from spacetail.tailnet.dial import tailnet_from_status
    from spacetail.tailnet.dns import resolve

    name = _host("resolve NAME", args.name)
    _dialer, api, suffix = tailnet_from_status(lookup.status(_paths(args)))
    for address in resolve(api, name, magic_suffix=suffix):
        print(address)
    return 0


def _host(what: str, text: str) -> str:
    """A host given on the command line, checked before anything is asked of the manager."""
    from spacetail.config import hostport

    try:
        return hostport.check_host(text)
    except ValueError as exc:
        raise ConfigError(
            f"{what}: {exc}; give a tailnet name, a DNS name or an IP address"
        ) from None


def cmd_logs(args: argparse.Namespace) -> int:
    from spacetail.state import lookup

    path, text = lookup.read_log(_paths(args), tailscaled=args.tailscaled, lines=args.lines)
    if not text:
        _say(f"no log at {path}")
        return 1
    from spacetail.config.known_secrets import env_secrets
    from spacetail.log import Redactor

    # tailscaled's own lines quote the login server's URL whole (its Prefs), a password too.
    print(Redactor(env_secrets(os.environ))(text))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from spacetail.commands import run
    from spacetail.commands.down import down
    from spacetail.commands.up import up

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigError("run: no command given; use spacetail run -- COMMAND [ARGS...]")
    return run.run(_config(args), _paths(args), os.environ, command, up=up, down=down)


def run_after_up(payload: dict[str, Any]) -> int:
    """`spacetail run` once up has returned, in the clean process that replaced it
    (commands/run.py): the command, then down."""
    from spacetail.commands import run
    from spacetail.commands.down import down

    try:
        return run.after_up(payload, down=down)
    except SpacetailError as exc:
        _say(f"error: {exc}")
        return exc.exit_code


def cmd_manager(args: argparse.Namespace) -> int:
    from spacetail.commands import foreground

    cfg = _config(args)
    return foreground.serve_here(cfg, _paths(args), os.environ)


def cmd_install_tailscale(args: argparse.Namespace) -> int:
    from pathlib import Path

    from spacetail.config.settings import INSTALL, raw_values
    from spacetail.install import installer

    folder = installer.install_from_settings(
        raw_values(INSTALL, os.environ, _flags(args)),
        Path(args.dest).expanduser() if args.dest else None,
        args.arch,
        log=_say,
    )
    print(folder)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from spacetail.doctor import checklist

    return checklist.main(args.target or [], as_json=args.json)


def _add_settings(p: argparse.ArgumentParser, settings: Sequence[Any], title: str) -> None:
    """One option per setting, each showing its variable and default (config/settings.py)."""
    from spacetail.config.settings import DURATION, DURATIONS_HELP, Kind

    durations = any(s.metavar == DURATION for s in settings)
    g = p.add_argument_group(title, DURATIONS_HELP if durations else None)
    for s in settings:
        help_ = s.describe().replace("%", "%%")
        if s.kind is Kind.SWITCH:
            g.add_argument(s.option, dest=_dest(s.key), action=argparse.BooleanOptionalAction,
                           default=None, help=help_)  # fmt: skip
        elif s.kind is Kind.FLAG:
            g.add_argument(s.option, dest=_dest(s.key), action="store_const",
                           const=s.when_set, help=help_)  # fmt: skip
        elif s.kind is Kind.LIST:
            g.add_argument(s.option, dest=_dest(s.key), action="append", metavar=s.metavar,
                           help=help_)  # fmt: skip
        else:
            metavar = s.metavar or s.key.upper().replace("-", "_")
            g.add_argument(s.option, dest=_dest(s.key), metavar=None if s.choices else metavar,
                           choices=s.choices or None, help=help_)  # fmt: skip


def _add_up_options(p: argparse.ArgumentParser) -> None:
    from spacetail.config.settings import CREDENTIALS, PASSTHROUGH, UP

    _add_settings(p, UP, "settings (a flag wins over its variable)")
    lines = [f"{name}: {text}" for name, text in CREDENTIALS]
    p.add_argument_group(
        "credentials (environment variables only: never on a command line)", "\n".join(lines)
    )
    p.add_argument_group("more variables", "\n".join(f"{n}: {t}" for n, t in PASSTHROUGH))


COMMANDS = {
    "up": "start tailscaled and log in; returns once connected",
    "down": "log out, stop everything, remove the files",
    "wait": "wait until the tailnet is usable",
    "status": "show what runs",
    "env": "print the proxy exports (or unsets) for eval",
    "logs": "show the manager's (or tailscaled's) log",
    "nc": "connect stdin/stdout to HOST PORT through the tailnet (ssh ProxyCommand)",
    "resolve": "print the addresses the tailnet gives a name (MagicDNS, split DNS)",
    "run": "up, run a command with the proxy environment, down",
    "manager": "run the manager in the foreground (systemd, terminals)",
    "install-tailscale": "download and verify tailscale",
    "doctor": "check everything between this shell and a tailnet service, with the fixes",
}


def _options(name: str, p: argparse.ArgumentParser) -> Handler:
    """Add the options of command NAME to P; return its handler."""
    if name in ("up", "down", "wait", "env", "run", "manager"):
        return _lifecycle_options(name, p)
    return _tool_options(name, p)


def _lifecycle_options(name: str, p: argparse.ArgumentParser) -> Handler:
    """The commands that bring the tailnet up, wait for it, hand it over and take it down."""
    if name == "up":
        p.add_argument("--no-wait", action="store_true", help="return once tailscaled answers")
        p.add_argument("--env", action="store_true", help="print the proxy exports on stdout")
        _add_up_options(p)
        return cmd_up
    if name == "down":
        p.add_argument("--env", action="store_true", help="print the proxy unsets on stdout")
        p.add_argument("--logout", action=argparse.BooleanOptionalAction, default=None,
                       help="remove the node from the tailnet (default: yes, except with "
                       "SPACETAIL_NODE_STATE=workspace)")  # fmt: skip
        return cmd_down
    if name == "wait":
        from spacetail.config.settings import WAIT

        _add_settings(p, WAIT, "settings (a flag wins over its variable)")
        return cmd_wait
    if name == "env":
        p.add_argument("--unset", action="store_true", help="print the unset line instead")
        from spacetail.config.settings import PROXIES

        _add_settings(p, PROXIES, "when no manager runs: the addresses up would use")
        return cmd_env
    if name == "run":
        _add_up_options(p)
        p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
        return cmd_run
    _add_up_options(p)  # manager
    return cmd_manager


def _tool_options(name: str, p: argparse.ArgumentParser) -> Handler:
    """The commands that look, reach and repair: status, nc, resolve, logs, doctor, install."""
    if name == "status":
        p.add_argument("--json", action="store_true", help="one JSON object")
        return cmd_status
    if name == "nc":
        p.add_argument("host", metavar="HOST", help="tailnet name, split-DNS name or address")
        p.add_argument("port", metavar="PORT", help="TCP port")
        p.add_argument("-N", "--send-eof", action="store_true",
                       help="pass the end of standard input on (as OpenBSD nc -N does). "
                       "tailscaled's proxies then close the whole connection, so a reply sent "
                       "after it is lost; without -N, nc keeps reading until the remote side "
                       "closes")  # fmt: skip
        return cmd_nc
    if name == "resolve":
        p.add_argument("name", metavar="NAME",
                       help="a MagicDNS short name, *.ts.net or split-DNS name")  # fmt: skip
        return cmd_resolve
    if name == "logs":
        p.add_argument("--tailscaled", action="store_true", help="tailscaled's log")
        p.add_argument("-n", "--lines", type=int, default=40, help="how many lines (40)")
        return cmd_logs
    if name == "doctor":
        p.add_argument("--target", action="append", metavar="HOST:PORT",
                       help="also check this service through the tailnet (repeatable)")  # fmt: skip
        p.add_argument("--json", action="store_true", help="one JSON object")
        return cmd_doctor
    from spacetail.config.settings import INSTALL

    _add_settings(p, INSTALL, "settings (a flag wins over its variable)")
    p.add_argument("--dest", metavar="DIR",
                   help="put tailscale and tailscaled in DIR (default: the versioned cache "
                   "that up searches)")  # fmt: skip
    p.add_argument("--arch", metavar="ARCH",
                   help="amd64, arm64, arm or 386 (default: this machine's)")  # fmt: skip
    return cmd_install_tailscale


class _Formatter(argparse.HelpFormatter):
    """argparse asks shutil for the terminal width, and importing shutil (with bz2 and lzma)
    costs every call of spacetail a few milliseconds; os alone can tell."""

    def __init__(self, prog: str) -> None:
        columns = os.environ.get("COLUMNS", "")
        try:
            width = os.get_terminal_size(sys.stdout.fileno()).columns
        except (OSError, ValueError):
            width = int(columns) if columns.isascii() and columns.isdigit() else 100
        super().__init__(prog, width=max(40, width - 2))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # One paragraph per line of TEXT: the credentials read as a list.
        return "\n".join(super(_Formatter, self)._fill_text(line, width, indent)
                         for line in text.splitlines())  # fmt: skip


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the subcommand named in ARGV gets its options (hooks run spacetail
    several times a phase: building all of them would cost every call a few milliseconds)."""
    parser = argparse.ArgumentParser(
        prog="spacetail",
        description="A Tailscale tailnet inside Spacelift runs, as a non-root user.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"spacetail {__version__}")
    parser.add_argument("--dir", help="state folder (SPACETAIL_DIR)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = set(argv) & set(COMMANDS) if argv is not None else set(COMMANDS)
    for name, help_ in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=_Formatter)
        if name in wanted:
            p.set_defaults(handler=_options(name, p))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()  # `wait`'s deadline counts from here, before the parsing
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, as we want
        if exc.code and "--env" in argv:
            print("false", flush=True)  # a mistyped hook line must fail its eval too
        return int(exc.code or 0)
    args.started = started
    try:
        result: int = args.handler(args)
        return result
    except SpacetailError as exc:
        lines = str(exc).splitlines() or [""]
        _say(f"error: {lines[0]}")
        for line in lines[1:]:
            print(line, file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        _say("interrupted")
        code = 130
    _fail_the_eval(args)
    return code


def _fail_the_eval(args: argparse.Namespace) -> None:
    """`eval "$(spacetail up --env)"` must fail the hook when up fails: eval of nothing succeeds,
    and Spacelift's && chain would run terraform without the tailnet. `down --env` still unsets."""
    if not getattr(args, "env", False):
        return
    if args.command == "down":
        from spacetail.state.proxyenv import unset_lines

        sys.stdout.write(unset_lines())
    sys.stdout.write("false\n")
    sys.stdout.flush()
