"""What the client shows: lines, one-line errors (red on a terminal), JSON records, progress.

:class:`Output` is the only place the shell writes.  In ``--json`` mode every
line on stdout is one JSON object with an ``event`` field (the schema is in
``docs/CLIENT-JSON.md``): results, plain text as ``text`` records, and each
error as an ``error`` record besides its line on stderr.  With ``--quiet``
summaries and progress are left out.  Progress bars appear only when both
stdout and stderr are terminals, and only for transfers that last over a
second.  A closed stdout (``ftpclient -c 'ls' | head -1``) raises
:class:`OutputClosed`, which is not a lost connection.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, TextIO

from ftpclient.client import Entry, Stat, TransferResult
from ftpclient.progress import ProgressBar
from ftpproto.units import format_size

__all__ = ["ListStyle", "Output", "OutputClosed", "format_columns", "format_entry"]

RED = "\033[31m"
RESET = "\033[0m"


class OutputClosed(Exception):
    """Standard output was closed by its reader (a pipe into ``head``)."""


class ListStyle(NamedTuple):
    """How ``ls`` shows a listing: its flags ``-l -a -h -t -S -r``."""

    long: bool = False
    hidden: bool = False  # -a: names starting with a dot too
    human: bool = False
    by_time: bool = False
    by_size: bool = False
    reverse: bool = False

    def arrange(self, entries: Sequence[Entry]) -> list[Entry]:
        """The entries to show, in order: by name, or newest / largest first, maybe reversed."""
        shown = [e for e in entries if self.hidden or not e.name.startswith(".")]
        if self.by_size:
            shown.sort(key=lambda e: (-e.size, e.name))
        elif self.by_time:
            shown.sort(key=lambda e: (-e.mtime, e.name))
        else:
            shown.sort(key=lambda e: e.name)
        return shown[::-1] if self.reverse else shown


def _name(entry: Entry) -> str:
    return entry.name + ("/" if entry.type == "dir" else "")


def format_entry(entry: Entry, human: bool = True) -> str:
    """One ``ls -l`` line: type, size (bytes, or human with ``human``), time, name."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
    size = str(entry.size) if not human else format_size(entry.size)
    size = size if entry.type == "file" else "-"
    return f"{entry.type:<5} {size:>10} {when} {_name(entry)}"


def format_columns(names: Sequence[str], width: int) -> list[str]:
    """Names in columns, filled top to bottom as ``ls`` does, within ``width`` characters."""
    if not names:
        return []
    cell = max(len(n) for n in names) + 2
    columns = max(1, width // cell)
    rows = -(-len(names) // columns)
    lines = []
    for row in range(rows):
        cells = names[row::rows]
        lines.append("".join(n.ljust(cell) for n in cells).rstrip())
    return lines


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
        self.terminal = _isatty(stdout)
        self.progress_enabled = not quiet and not json_mode and self.terminal and _isatty(stderr)

    def _write(self, text: str) -> None:
        try:
            self.stdout.write(text + "\n")
            self.stdout.flush()
        except BrokenPipeError:
            raise OutputClosed from None

    def line(self, text: str) -> None:
        """A line of a command's result; a ``text`` record in ``--json`` mode."""
        if self.json_mode:
            self.record("text", {"text": text})
        else:
            self._write(text)

    def blank(self) -> None:
        """An empty line (after Ctrl-D at the prompt); nothing in ``--json`` mode."""
        if not self.json_mode:
            self._write("")

    def info(self, text: str) -> None:
        """A summary line; left out with --quiet or --json."""
        if not self.quiet and not self.json_mode:
            self._write(text)

    def record(self, event: str, fields: dict[str, Any]) -> None:
        """One JSON object ``{"event": event, ...fields}`` on its own line (``--json`` only)."""
        if self.json_mode:
            import json  # here, not at the top: only --json needs it

            self._write(json.dumps({"event": event, **fields}, ensure_ascii=False))

    def result(self, event: str, fields: dict[str, Any], text: str | None = None) -> None:
        """A command's result: a record in ``--json`` mode, else ``text`` (if any) as a line."""
        if self.json_mode:
            self.record(event, fields)
        elif text is not None:
            self._write(text)

    def _stderr(self, text: str) -> None:
        try:
            self.stderr.write(text + "\n")
            self.stderr.flush()
        except (BrokenPipeError, ValueError):
            pass  # nobody is reading the errors any more

    def error(self, text: str, code: int | None = None) -> None:
        """A one-line error on stderr (red on a terminal); also a record in ``--json`` mode.

        ``code`` is the server's error code when the server refused.
        """
        line = text.replace("\n", " ")
        self._stderr(f"{RED}{line}{RESET}" if self.color else line)
        self.record("error", {"code": code, "text": line})

    def warning(self, text: str) -> None:
        """A one-line notice on stderr (not a failure)."""
        self._stderr(text)

    # -- results ---------------------------------------------------------------

    def entries(self, entries: Sequence[Entry], folder: str, style: ListStyle) -> None:
        """A listing of ``folder``: names (in columns on a terminal), ``-l`` lines, or records."""
        shown = style.arrange(entries)
        if self.json_mode:
            for entry in shown:
                self.record("entry", {"folder": folder, **entry._asdict()})
        elif style.long:
            for entry in shown:
                self._write(format_entry(entry, style.human))
        elif self.terminal:
            import shutil  # here, not at the top: it brings bz2 and lzma, and -c pwd draws nothing

            width = shutil.get_terminal_size((80, 24)).columns
            for text in format_columns([_name(e) for e in shown], width):
                self._write(text)
        else:
            for entry in shown:
                self._write(_name(entry))

    def stat(self, info: Stat) -> None:
        """The facts of one path."""
        if self.json_mode:
            self.record("stat", info._asdict())
            return
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.mtime))
        self._write(f"path:     {info.path}")
        self._write(f"type:     {info.type}")
        self._write(f"size:     {info.size} ({format_size(info.size)})")
        self._write(f"modified: {when}")
        if info.blake3:
            self._write(f"blake3:   {info.blake3}")

    def transfer(self, direction: str, result: TransferResult) -> None:
        """The summary of one verified transfer: size, time, average rate, "verified"."""
        if self.json_mode:
            fields = result._asdict()
            fields["seconds"] = round(result.seconds, 3)
            self.record(direction, {**fields, "verified": True})
            return
        if self.quiet:  # the line would be left out: not worth formatting, file after file
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
