"""`spacetail manager`: the manager in this process, for a terminal or a systemd unit (which may
hand it a listening socket: socket activation, so that clients never race its start)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

from spacetail.config.loader import Config
from spacetail.errors import OperationFailed
from spacetail.state.identity import refuse_foreign_proc
from spacetail.state.paths import Paths


def serve_here(cfg: Config, paths: Paths, env: Mapping[str, str]) -> int:
    """The manager in this process; takes a listening socket from systemd when given one."""
    from spacetail.config.credentials import SECRET_VARIABLES
    from spacetail.install.locate import find_binaries
    from spacetail.manager import daemon
    from spacetail.manager.launch import Launch
    from spacetail.manager.service import serve
    from spacetail.state import statedir

    daemon.scrub_environ(SECRET_VARIABLES)  # as a detached manager: no credential in environ
    refuse_foreign_proc()
    binaries = find_binaries(env)
    listener = daemon.activated_listener(env)
    if listener is None:
        with statedir.claim(paths) as claim:
            if claim.probe.answering or claim.probe.lock_held:
                raise OperationFailed(f"a manager already runs for {paths.root}")
            claim.clean()
            listener = claim.bind()
    else:
        statedir.prepare(paths)
    watch = cfg.watch_pid
    pidfd = os.pidfd_open(watch) if watch else None
    launch = Launch(
        cfg=replace(cfg, watch_shell=False), paths=paths, binaries=binaries, listener=listener,
        env=dict(env), watch_pidfd=pidfd, watch_pid=watch,
    )  # fmt: skip
    return serve(launch)
