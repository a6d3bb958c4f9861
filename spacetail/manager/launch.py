"""What a manager is started with: the one record `up` (or `spacetail manager`) hands over the
fork, keyword by keyword (a swapped PID and pidfd would still type-check positionally). Apart
from manager/service.py so that `up` builds it without importing the manager."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from spacetail.config.loader import Config
from spacetail.state.paths import Paths
from spacetail.tailnet.tailscale import Binaries


@dataclass(frozen=True, kw_only=True)
class Launch:
    """Everything a manager is started with: what `up` (or `spacetail manager`) decided."""

    cfg: Config
    paths: Paths
    binaries: Binaries
    listener: socket.socket
    env: dict[str, str]
    ready_fd: int | None = None  # the readiness pipe: one line, READY or ERROR
    watch_pidfd: int | None = None
    watch_pid: int | None = None
    login_deadline: float | None = None  # CLOCK_MONOTONIC, from `up`: its --timeout holds
    forward_listeners: tuple[socket.socket, ...] = ()  # bound by `up`
