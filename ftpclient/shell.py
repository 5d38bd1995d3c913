"""``ClientShell``: the interactive and batch user interface over :class:`FileTransferClient`.

Each ``do_<cmd>`` parses its arguments with shell-style quoting, calls the
client library and prints the result; the docstring is the help text.  A
failed command prints one line on stderr and sets :attr:`ClientShell.failed`;
a lost connection is left to propagate so the caller can exit with status 2.
"""

from __future__ import annotations

import cmd
import shlex
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ftpclient.client import Entry, FileTransferClient, LocalError, TransferResult
from ftpproto.errors import ProtocolError

__all__ = ["ClientShell", "format_entry", "split_commands"]


def format_entry(entry: Entry) -> str:
    """One listing line: type, size, modification time, name (folders end in ``/``)."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
    name = entry.name + ("/" if entry.type == "dir" else "")
    return f"{entry.type:<5} {entry.size:>12} {when} {name}"


def split_commands(text: str) -> list[str]:
    """Split ``-c`` text on ``;`` outside quotes; each command keeps its quoting."""
    commands: list[str] = []
    current: list[str] = []
    quote: str | None = None
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == ";":
            commands.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    commands.append("".join(current).strip())
    return [c for c in commands if c]


def _second(words: list[str]) -> str | None:
    return words[1] if len(words) > 1 else None


class ClientShell(cmd.Cmd):
    """The ``ftpclient`` command shell."""

    intro = 'Type "help" for the list of commands, "quit" to leave.'

    def __init__(
        self,
        client: FileTransferClient,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        super().__init__(stdout=stdout or sys.stdout)
        self.client = client
        self.stderr = stderr or sys.stderr
        self.failed = False
        self.cwd = "/"
        self._update_prompt()

    # -- plumbing ------------------------------------------------------------

    def _update_prompt(self) -> None:
        self.prompt = f"{self.client.user}@{self.client.host}:{self.cwd}> "

    def say(self, text: str) -> None:
        """Print a line of normal output."""
        self.stdout.write(text + "\n")

    def fail(self, text: str) -> None:
        """Report a failed command on stderr in one line."""
        self.failed = True
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def onecmd(self, line: str) -> bool:
        self.failed = False
        try:
            return super().onecmd(line)
        except ProtocolError as exc:
            self.fail(f"remote: {exc.text}")
        except LocalError as exc:
            self.fail(f"local: {exc}")
        except ValueError as exc:  # shlex: "No closing quotation"
            self.fail(f"error: {exc}")
        return False

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> None:
        self.fail(f"unknown command: {line.split()[0]} (try 'help')")

    def get_names(self) -> list[str]:
        """Command names for help and completion, without the Ctrl-D handler."""
        return [name for name in super().get_names() if name != "do_EOF"]

    def _args(self, arg: str, least: int, most: int, usage: str) -> list[str] | None:
        words = shlex.split(arg)
        if not least <= len(words) <= most:
            self.fail(f"usage: {usage}")
            return None
        return words

    def _transfer(self, action: Callable[[], TransferResult], arrow: str) -> None:
        result = action()
        rate = result.size / result.seconds / 1e6 if result.seconds > 0 else 0.0
        self.say(
            f"{result.remote} {arrow} {result.local}: {result.size} bytes in "
            f"{result.seconds:.2f} s ({rate:.1f} MB/s), sha256 verified"
        )

    # -- commands ------------------------------------------------------------

    def do_get(self, arg: str) -> None:
        """get REMOTE [LOCAL]: download a file (LOCAL may be a folder).

        Example: get "reports/May 2026.pdf" ~/Downloads"""
        words = self._args(arg, 1, 2, "get REMOTE [LOCAL]")
        if words:
            self._transfer(lambda: self.client.get(words[0], _second(words)), "->")

    def do_put(self, arg: str) -> None:
        """put LOCAL [REMOTE]: upload a file.

        Example: put notes.txt "backup/notes 2026.txt\""""
        words = self._args(arg, 1, 2, "put LOCAL [REMOTE]")
        if words:
            self._transfer(lambda: self.client.put(words[0], _second(words)), "<-")

    def do_ls(self, arg: str) -> None:
        """ls [PATH]: list a remote folder: type, size, modification time, name."""
        words = self._args(arg, 0, 1, "ls [PATH]")
        if words is not None:
            for entry in self.client.ls(words[0] if words else None):
                self.say(format_entry(entry))

    def do_cd(self, arg: str) -> None:
        """cd PATH: change the remote working folder."""
        words = self._args(arg, 1, 1, "cd PATH")
        if words:
            self.cwd = self.client.cd(words[0])
            self._update_prompt()

    def do_pwd(self, arg: str) -> None:
        """pwd: show the remote working folder."""
        if self._args(arg, 0, 0, "pwd") is not None:
            self.say(self.client.pwd())

    def do_quit(self, arg: str) -> bool:
        """quit: end the session (also: exit, Ctrl-D)."""
        self.client.quit()
        return True

    def do_exit(self, arg: str) -> bool:
        """exit: end the session (same as quit)."""
        return self.do_quit(arg)

    def do_EOF(self, arg: str) -> bool:
        """Ctrl-D: end the session."""
        self.say("")
        return self.do_quit(arg)
