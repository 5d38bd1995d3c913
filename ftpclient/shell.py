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
from ftpclient.trees import TreeResult, get_tree, put_tree
from ftpproto.errors import ProtocolError
from ftpproto.units import format_size

__all__ = ["ClientShell", "format_entry", "split_commands"]


def format_entry(entry: Entry) -> str:
    """One ``ls -l`` line: type, human size, modification time, name (folders end in ``/``)."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.mtime))
    name = entry.name + ("/" if entry.type == "dir" else "")
    size = format_size(entry.size) if entry.type == "file" else "-"
    return f"{entry.type:<5} {size:>10} {when} {name}"


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

    def _args(
        self, arg: str, least: int, most: int, usage: str, flags: str = ""
    ) -> tuple[set[str], list[str]] | None:
        """Options (single letters from ``flags``) and words, or None after a usage error."""
        options: set[str] = set()
        words: list[str] = []
        only_words = False
        for word in shlex.split(arg):
            if not only_words and word == "--":
                only_words = True
            elif not only_words and word.startswith("-") and len(word) > 1 and not words:
                letters = set(word[1:])
                if not letters <= set(flags):
                    self.fail(f"usage: {usage}")
                    return None
                options |= letters
            else:
                words.append(word)
        if not least <= len(words) <= most:
            self.fail(f"usage: {usage}")
            return None
        return options, words

    def _transfer(self, result: TransferResult, arrow: str) -> None:
        rate = result.size / result.seconds if result.seconds > 0 else 0.0
        resumed = f", resumed at {format_size(result.offset)}" if result.offset else ""
        self.say(
            f"{result.remote} {arrow} {result.local}: {format_size(result.size)} in "
            f"{result.seconds:.2f} s ({format_size(int(rate))}/s{resumed}), sha256 verified"
        )

    def _tree(self, result: TreeResult, arrow: str) -> None:
        for skipped in result.skipped:
            self.stderr.write(f"skipped (link or special file): {skipped}\n")
        self.say(
            f"{len(result.files)} files ({format_size(result.size)}) in {result.folders} "
            f"folders {arrow}, each sha256 verified"
        )

    # -- commands ------------------------------------------------------------

    def do_get(self, arg: str, resume: bool = False) -> None:
        """get [-r] [-a] REMOTE [LOCAL]: download a file (LOCAL may be a folder).

        -r copies a folder tree; -a resumes an interrupted download (as reget).
        Example: get "reports/May 2026.pdf" ~/Downloads"""
        parsed = self._args(arg, 1, 2, "get [-r] [-a] REMOTE [LOCAL]", "ra")
        if parsed is None:
            return
        options, words = parsed
        local = _second(words)
        if "r" in options:
            self._tree(get_tree(self.client, words[0], local, self._file_done("->")), "copied")
        else:
            result = self.client.get(words[0], local, resume=resume or "a" in options)
            self._transfer(result, "->")

    def do_reget(self, arg: str) -> None:
        """reget REMOTE [LOCAL]: resume an interrupted download (from LOCAL.part).

        The part already here is checked against the server's file first; if
        it differs the download starts over.  Example: reget big.iso"""
        self.do_get(arg, resume=True)

    def do_put(self, arg: str, resume: bool = False) -> None:
        """put [-r] [-a] LOCAL [REMOTE]: upload a file.

        -r copies a folder tree; -a resumes an interrupted upload (as reput).
        Example: put notes.txt "backup/notes 2026.txt\""""
        parsed = self._args(arg, 1, 2, "put [-r] [-a] LOCAL [REMOTE]", "ra")
        if parsed is None:
            return
        options, words = parsed
        remote = _second(words)
        if "r" in options:
            self._tree(put_tree(self.client, words[0], remote, self._file_done("<-")), "copied")
        else:
            result = self.client.put(words[0], remote, resume=resume or "a" in options)
            self._transfer(result, "<-")

    def do_reput(self, arg: str) -> None:
        """reput LOCAL [REMOTE]: resume an interrupted upload.

        The part the server kept is checked against the local file first; if it
        differs the upload starts over.  Example: reput big.iso"""
        self.do_put(arg, resume=True)

    def _file_done(self, arrow: str) -> Callable[[TransferResult], None]:
        return lambda result: self._transfer(result, arrow)

    def do_ls(self, arg: str) -> None:
        """ls [-l] [PATH]: list a remote folder; -l adds type, size and modification time."""
        parsed = self._args(arg, 0, 1, "ls [-l] [PATH]", "l")
        if parsed is None:
            return
        options, words = parsed
        for entry in self.client.ls(words[0] if words else None):
            if "l" in options:
                self.say(format_entry(entry))
            else:
                self.say(entry.name + ("/" if entry.type == "dir" else ""))

    def do_stat(self, arg: str) -> None:
        """stat [-s] PATH: type, size and modification time; -s adds the SHA-256."""
        parsed = self._args(arg, 1, 1, "stat [-s] PATH", "s")
        if parsed is None:
            return
        options, words = parsed
        info = self.client.stat(words[0], sha256="s" in options)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.mtime))
        self.say(f"path:     {words[0]}")
        self.say(f"type:     {info.type}")
        self.say(f"size:     {info.size} ({format_size(info.size)})")
        self.say(f"modified: {when}")
        if info.sha256:
            self.say(f"sha256:   {info.sha256}")

    def do_mkdir(self, arg: str) -> None:
        """mkdir [-p] PATH: create a remote folder; -p also creates missing parents."""
        parsed = self._args(arg, 1, 1, "mkdir [-p] PATH", "p")
        if parsed:
            self.client.mkdir(parsed[1][0], parents="p" in parsed[0])

    def do_rmdir(self, arg: str) -> None:
        """rmdir PATH: remove an empty remote folder."""
        parsed = self._args(arg, 1, 1, "rmdir PATH")
        if parsed:
            self.client.rmdir(parsed[1][0])

    def do_rm(self, arg: str) -> None:
        """rm [-r] PATH: remove a remote file; -r removes a folder and everything in it.

        Symlinks are removed, never followed.  Example: rm -r old-backups"""
        parsed = self._args(arg, 1, 1, "rm [-r] PATH", "r")
        if parsed:
            files, freed = self.client.rm(parsed[1][0], recursive="r" in parsed[0])
            if "r" in parsed[0]:
                self.say(f"removed {files} files ({format_size(freed)})")

    def do_mv(self, arg: str) -> None:
        """mv OLD NEW: rename or move a remote file or folder (into NEW if it is a folder)."""
        parsed = self._args(arg, 2, 2, "mv OLD NEW")
        if parsed:
            self.client.mv(*parsed[1])

    def do_quota(self, arg: str) -> None:
        """quota: show the space you use and the space still available (also: df)."""
        if self._args(arg, 0, 0, "quota") is None:
            return
        usage = self.client.quota()
        limit = f"of {format_size(usage.limit)} quota" if usage.limit is not None else "(no quota)"
        self.say(
            f"used {format_size(usage.used)} {limit}, {format_size(usage.available)} available"
        )

    def do_df(self, arg: str) -> None:
        """df: the same as quota."""
        self.do_quota(arg)

    def do_cd(self, arg: str) -> None:
        """cd PATH: change the remote working folder."""
        parsed = self._args(arg, 1, 1, "cd PATH")
        if parsed:
            self.cwd = self.client.cd(parsed[1][0])
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
