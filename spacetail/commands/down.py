"""`spacetail down`: ask the manager to log out and stop, wait until nothing is left, clean what a
dead one left, and take spacetail's proxy lines out of Spacelift's saved environment. Only a
manager proven to be a process of this container, and named by its own record, is ever
signalled; any other is asked over the socket."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from spacetail.errors import OperationFailed
from spacetail.state import statedir
from spacetail.state.paths import Paths, remove_file
from spacetail.state.status import Proxies
from spacetail.state.stopping import stop_manager, stop_unanswering

TYPE_CHECKING = False  # keeps typing and config out of `spacetail status`
if TYPE_CHECKING:
    from typing import Any, TextIO


def down(
    paths: Paths, env: Mapping[str, str], *, logout: bool | None = None, out: TextIO = sys.stderr
) -> list[str]:
    """Stop the manager and tailscaled and clean up; returns what was done, for the report."""
    from spacetail.state.proxyenv import clean_saved_env, saved_env_files

    done: list[str] = []
    proxies: Proxies | None = None
    if statedir.check(paths):
        with statedir.control_lock(paths, best_effort=True) as locked:
            if not locked:
                done.append(f"could not lock {paths.ctl_lock} (read-only?); went on without")
            p = statedir.probe(paths)
            proxies = p.status.proxies if p.status else _recorded_proxies(p.record)
            if p.answering and p.status is not None:
                stop_manager(paths, p, logout=logout, out=out)
                if p.foreign:
                    done.append(f"asked {p.describe_foreign()} to stop; it has")
                elif p.proven_ident is None:
                    done.append(f"asked {p.describe_unrecorded(paths)} to stop; it has")
                else:
                    done.append(f"stopped manager pid {p.status.manager_pid} and tailscaled")
                p = statedir.probe(paths)
                if p.answering and p.proven_ident is None and not p.foreign:
                    raise OperationFailed(
                        f"{p.describe_unrecorded(paths)} still answers after it was asked to "
                        "stop; stop it yourself, or set SPACETAIL_DIR to a folder of your own"
                    )
            if p.lock_held:
                stop_unanswering(paths, p, out)
                done.append("terminated an unanswering manager")
            removed = statedir.clean_stale(paths, p)
            if removed:
                done.append(f"removed stale {p.describe_stale()}: {', '.join(removed)}")
            remove_file(paths.last_stop)
    for path in saved_env_files(env):
        count = clean_saved_env(path, (proxies or _default_proxies()).to_json())
        if count:
            done.append(f"removed {count} proxy line(s) from {path.name}")
    return done


def _recorded_proxies(record: dict[str, Any] | None) -> Proxies | None:
    try:
        return Proxies.from_json((record or {}).get("proxies"))
    except ValueError:
        return None


def _default_proxies() -> Proxies:
    from spacetail.config.loader import DEFAULT_HTTP_PROXY, DEFAULT_SOCKS5

    return Proxies(http=f"http://{DEFAULT_HTTP_PROXY}", socks5=f"socks5://{DEFAULT_SOCKS5}")
