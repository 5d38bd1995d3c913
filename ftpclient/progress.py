"""The progress bar of one transfer, on a terminal: ``name:  45%|####    | 1.4 MiB/3.0 MiB ...``.

The bar uses the same binary units as the summary line (``MiB``, ``MiB/s``).
It appears only once the transfer has lasted a second, is redrawn at most
ten times a second on one line, and is erased when the transfer ends, well
or not (Ctrl-C included), so that the summary or the error line takes its
place and nothing half-drawn stays on screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from ftpproto.units import format_size

__all__ = ["ProgressBar", "format_bar"]

DELAY = 1.0  # seconds before the bar appears
REDRAW = 0.1  # seconds between redraws
CLEAR = "\r\033[K"  # back to the start of the line and erase it


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bar(name: str, done: int, total: int, rate: float, width: int) -> str:
    """One line of at most ``width`` characters: name, percent, bar, bytes, rate, time left."""
    fraction = done / total if total else 1.0
    left = (total - done) / rate if rate > 0 else 0.0
    tail = (
        f" {format_size(done)}/{format_size(total)}, {format_size(int(rate))}/s, "
        f"{_clock(left)} left"
    )
    head = f"{name}: {int(fraction * 100):3d}%|"
    room = max(0, width - len(head) - len(tail) - 2)
    filled = int(room * fraction)
    return f"{head}{'#' * filled}{' ' * (room - filled)}|{tail}"[: max(width - 1, 0)]


class ProgressBar:
    """Implements the client's ``Monitor``: start, update, close."""

    def __init__(
        self, name: str, stream: TextIO, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name if len(name) <= 30 else "..." + name[-27:]
        self.stream = stream
        self.clock = clock
        self.total = 0
        self.done = 0
        self.first = 0  # bytes there before this run (a resume): not part of the rate
        self.started = 0.0
        self.drawn_at = 0.0
        self.shown = False

    def start(self, total: int, done: int) -> None:
        """The transfer moves ``total`` bytes in all, of which ``done`` were there already."""
        self.total, self.done, self.first = total, done, done
        self.started = self.drawn_at = self.clock()

    def update(self, count: int) -> None:
        """``count`` more bytes moved; redraw if it is time."""
        self.done += count
        now = self.clock()
        if now - self.started >= DELAY and (
            now - self.drawn_at >= REDRAW or self.done >= self.total
        ):
            self.drawn_at = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self.started
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        import shutil  # here, not at the top: it brings bz2 and lzma, and -c pwd draws nothing

        width = shutil.get_terminal_size((80, 24)).columns
        self._write(CLEAR + format_bar(self.name, self.done, self.total, rate, width))
        self.shown = True

    def _write(self, text: str) -> None:
        """Write to the terminal; a closed one is no reason to stop the transfer."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.started = float("inf")  # draw no more

    def close(self) -> None:
        """Erase the bar, if it was drawn: the summary (or the error) line takes its place."""
        if self.shown:
            self._write(CLEAR)
            self.shown = False
