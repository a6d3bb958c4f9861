"""tailscaled seen from outside, by two helper threads that only report: the IPN bus watcher (state
changes, the moment they happen) and the status reader (addresses, names, health). Both hand
typed events to the manager's loop; neither decides anything, and the loop never waits on
tailscaled: a frozen tailscaled stalls these threads, never a `status`, `wait` or `down`.

The reader reads `status?peers=false` (the node alone: its size does not grow with the tailnet)
when the bus says something changed, when the loop asks (`refresh`), and otherwise at a pace the
loop sets: four times a second while logging in, where tailscale's health carries the verdict on
a login before `tailscale up` returns, and every few seconds once connected."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from spacetail.manager.events import (
    ApiReady,
    ApiTimeout,
    BusClosed,
    ChildProcess,
    ErrMessage,
    Event,
    NodeRead,
    StateChanged,
)
from spacetail.tailnet.tailscale import STATES, LocalAPIError, node_from_status

API_START_TIMEOUT = 15.0
READ_TIMEOUT = 2.0
FAST_READS = 0.25  # while logging in
SLOW_READS = 5.0  # once connected: health and addresses also arrive through the bus

Post = Callable[[Event], None]


class WatchAPI(Protocol):
    def watch(self) -> Iterator[dict[str, Any]]: ...


class ReadAPI(Protocol):
    def status(self, timeout: float = 2.0, *, peers: bool = True) -> dict[str, Any]: ...


class TailscaledAPI(WatchAPI, ReadAPI, Protocol):
    """What the two threads ask of tailscaled's LocalAPI."""


class Reader(Protocol):
    """What the loop asks of the status reader (StatusReader, or a test's recorder)."""

    def start(self) -> None: ...
    def follow(self, proc: ChildProcess | None) -> None: ...
    def pace(self, fast: bool) -> None: ...
    def refresh(self) -> None: ...
    def stop(self) -> None: ...


def start_watcher(
    api: WatchAPI,
    proc: ChildProcess,
    post: Post,
    clock: Callable[[], float],
    delay: float = 0.0,
    *,
    on_news: Callable[[], None] = lambda: None,
) -> None:
    """Follow PROC's IPN bus in a thread; ON_NEWS is called for every notification."""
    deadline = clock() + delay + API_START_TIMEOUT
    threading.Thread(
        target=_watch_bus,
        args=(api, proc, post, clock),
        kwargs={"deadline": deadline, "delay": delay, "on_news": on_news},
        daemon=True,
    ).start()


def _watch_bus(
    api: WatchAPI,
    proc: ChildProcess,
    post: Post,
    clock: Callable[[], float],
    *,
    deadline: float,
    delay: float,
    on_news: Callable[[], None],
) -> None:
    """Thread: wait for the LocalAPI, then stream state changes to the main loop."""
    if delay:
        time.sleep(delay)  # a reconnection: never a tight loop against a closing stream
    connected = False
    while True:
        try:
            for note in api.watch():
                if not connected:
                    connected = True
                    post(ApiReady(proc))
                state = note.get("State")
                if state is not None:
                    post(StateChanged(proc, STATES.get(int(state), str(state))))
                if note.get("ErrMessage"):
                    post(ErrMessage(proc, str(note["ErrMessage"])))
                on_news()
            return
        except LocalAPIError as exc:
            if connected:
                post(BusClosed(proc, str(exc)))
                return
            if clock() > deadline or proc.exit_code is not None:
                post(ApiTimeout(proc, str(exc)))
                return
            # The socket appears ~0.3 s after start; a short poll notices it at once.
            time.sleep(0.01)


class StatusReader:
    """One thread for the manager's life: reads the status of the tailscaled it follows and
    posts what it found. Every method is safe to call from the loop; none waits."""

    def __init__(self, api: ReadAPI, post: Post, clock: Callable[[], float]) -> None:
        self.api = api
        self.post = post
        self.clock = clock
        self._proc: ChildProcess | None = None
        self._interval = FAST_READS
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def follow(self, proc: ChildProcess | None) -> None:
        """Read this tailscaled from now on (None: none runs)."""
        self._proc = proc
        self._wake.set()

    def pace(self, fast: bool) -> None:
        interval = FAST_READS if fast else SLOW_READS
        if interval != self._interval:
            self._interval = interval
            self._wake.set()

    def refresh(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            proc = self._proc
            if self._stopped.is_set() or proc is None or proc.exit_code is not None:
                continue
            started = self.clock()
            try:
                node = node_from_status(self.api.status(READ_TIMEOUT, peers=False))
            except (LocalAPIError, ValueError):
                continue  # starting, restarting or stuck: the bus and the loop say which
            self.post(NodeRead(proc, node, started))
