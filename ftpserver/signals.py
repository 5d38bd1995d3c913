"""Waiting for signals without locks in the signal handlers.

A Python signal handler runs in the main thread between two bytecodes, maybe
while that thread holds a lock inside ``threading``; a handler that calls
``Event.set()`` can then wait on a lock its own thread holds, forever (two
signals in quick succession, such as SIGHUP then SIGTERM, made this happen).
:class:`SignalCounter`'s handlers only count, and the main thread sleeps on
the wake-up pipe that the interpreter writes to when a signal arrives.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections import Counter
from collections.abc import Iterable
from types import FrameType

__all__ = ["SignalCounter"]


class SignalCounter:
    """Counts the given signals from now on; :meth:`wait` sleeps until one arrives."""

    def __init__(self, signums: Iterable[signal.Signals]) -> None:
        self.counts: Counter[int] = Counter()
        self._read, write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(write, False)
        self._write = write
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        wanted = set(signums)
        for signum in wanted:
            signal.signal(signum, self._count)
        # A parent may have started this process with them blocked (workers).
        signal.pthread_sigmask(signal.SIG_UNBLOCK, wanted)

    def _count(self, signum: int, frame: FrameType | None) -> None:
        self.counts[signum] += 1

    def __getitem__(self, signum: signal.Signals) -> int:
        return self.counts[signum]

    def wait(self, timeout: float) -> None:
        """Sleep until a signal arrives or ``timeout`` seconds pass."""
        with contextlib.suppress(InterruptedError):
            select.select([self._read], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 512):
                pass

    def close(self) -> None:
        """Stop writing to the wake-up pipe (the handlers stay) and close it."""
        signal.set_wakeup_fd(-1)
        os.close(self._read)
        os.close(self._write)
