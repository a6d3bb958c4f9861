"""The machinery of the manager's one deciding thread: a selector whose keys carry their own
callbacks, a queue of typed events from helper threads with a wake-up pipe, and signal handlers
that only record the signal (the loop decides what it means, as uvicorn's supervisors do)."""

from __future__ import annotations

import contextlib
import os
import queue
import selectors
import signal
from collections.abc import Callable
from types import FrameType

from spacetail.manager.events import Event

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Loop:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._drain_wake)
        self._signals: list[int] = []

    def post(self, event: Event) -> None:
        """Called from other threads: hand an event to the loop and wake it."""
        self.events.put(event)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_w, b"e")

    def install_signals(self) -> None:
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)

    def turn(
        self,
        timeout: float,
        on_signal: Callable[[int], None],
        on_event: Callable[[Event], None],
    ) -> None:
        """One turn: wait for a ready key (or TIMEOUT), run its callback, then hand over the
        signals and events that arrived."""
        for key, _mask in self.sel.select(timeout):
            key.data()
        while self._signals:
            on_signal(self._signals.pop())
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            on_event(event)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 512):
                pass

    def close(self) -> None:
        self.sel.close()
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
