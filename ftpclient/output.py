"""What the client shows: lines, one-line errors (red on a terminal), JSON records, progress.

:class:`Output` is the only place the shell writes.  In ``--json`` mode the
results of ``ls``, ``stat`` and transfers are JSON objects, one per line, for
scripts; with ``--quiet`` summaries and progress are left out.  Progress bars
(tqdm) appear only when both stdout and stderr are terminals, and only for
transfers that last over a second.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any, TextIO

from ftpclient.client import Entry, Stat, TransferResult
from ftpproto.units import format_size

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["Output", "ProgressBar", "format_entry"]

RED = "\033[31m"
RESET = "\033[0m"


def format_entry(entry: Entry) -> str:
    """One ``ls -l`` line: type, human size, modification time, name (folders end in ``/``)."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
    name = entry.name + ("/" if entry.type == "dir" else "")
    size = format_size(entry.size) if entry.type == "file" else "-"
    return f"{entry.type:<5} {size:>10} {when} {name}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    """The shell's writer: plain text, JSON lines, errors and progress bars."""

    def __init__(
        self, stdout: TextIO, stderr: TextIO, json_mode: bool = False, quiet: bool = False
    ) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.json_mode = json_mode
        self.quiet = quiet
        self.color = _isatty(stderr) and "NO_COLOR" not in os.environ
        self.progress_enabled = not quiet and not json_mode and _isatty(stdout) and _isatty(stderr)

    def line(self, text: str) -> None:
        """A line of a command's result (a listing, pwd, ...)."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def info(self, text: str) -> None:
        """A summary line; left out with --quiet or --json."""
        if not self.quiet and not self.json_mode:
            self.line(text)

    def record(self, event: str, fields: dict[str, Any]) -> None:
        """One JSON object ``{"event": event, ...fields}`` on its own line (``--json`` only)."""
        if self.json_mode:
            import json  # here, not at the top: only --json needs it

            self.line(json.dumps({"event": event, **fields}, ensure_ascii=False))

    def error(self, text: str) -> None:
        """A one-line error on stderr, red on a terminal."""
        line = text.replace("\n", " ")
        if self.color:
            line = f"{RED}{line}{RESET}"
        self.stderr.write(line + "\n")
        self.stderr.flush()

    def warning(self, text: str) -> None:
        """A one-line notice on stderr (not a failure)."""
        self.stderr.write(text + "\n")
        self.stderr.flush()

    # -- results ---------------------------------------------------------------

    def entries(self, entries: list[Entry], long: bool) -> None:
        """A listing: names, ``ls -l`` lines, or JSON records."""
        for entry in entries:
            if self.json_mode:
                self.record("entry", dataclasses.asdict(entry))
            elif long:
                self.line(format_entry(entry))
            else:
                self.line(entry.name + ("/" if entry.type == "dir" else ""))

    def stat(self, info: Stat) -> None:
        """The facts of one path."""
        if self.json_mode:
            self.record("stat", dataclasses.asdict(info))
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.mtime))
        self.line(f"path:     {info.path}")
        self.line(f"type:     {info.type}")
        self.line(f"size:     {info.size} ({format_size(info.size)})")
        self.line(f"modified: {when}")
        if info.blake3:
            self.line(f"blake3:   {info.blake3}")

    def transfer(self, direction: str, result: TransferResult) -> None:
        """The summary of one verified transfer: size, time, average rate, "verified"."""
        if self.json_mode:
            self.record(direction, {**dataclasses.asdict(result), "verified": True})
            return
        rate = result.size / result.seconds if result.seconds > 0 else 0.0
        arrow = "->" if direction == "get" else "<-"
        resumed = f", resumed at {format_size(result.offset)}" if result.offset else ""
        self.info(
            f"{result.remote} {arrow} {result.local}: {format_size(result.size)} in "
            f"{result.seconds:.2f} s ({format_size(int(rate))}/s{resumed}), blake3 verified"
        )

    def monitor(self, name: str) -> ProgressBar | None:
        """A progress bar for the transfer of ``name``, or None when none is shown."""
        return ProgressBar(name, self.stderr) if self.progress_enabled else None


class ProgressBar:
    """A tqdm bar with bytes done, rate and time left; it appears after one second."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self.name = name if len(name) <= 30 else "..." + name[-27:]
        self.stream = stream
        self.bar: tqdm[Any] | None = None

    def start(self, total: int, done: int) -> None:
        """The transfer moves ``total`` bytes in all, of which ``done`` were there already."""
        from tqdm import tqdm  # here, not at the top: importing it costs 25-35 ms at start

        self.bar = tqdm(
            total=total,
            initial=done,
            desc=self.name,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            delay=1.0,
            leave=True,
            dynamic_ncols=True,
            file=self.stream,
        )

    def update(self, count: int) -> None:
        """``count`` more bytes moved."""
        if self.bar is not None:
            self.bar.update(count)

    def close(self) -> None:
        """End the bar (its last state stays on screen if it was shown)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
