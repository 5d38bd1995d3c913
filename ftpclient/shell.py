"""``ClientShell``: the interactive and batch user interface over :class:`FileTransferClient`.

Each ``do_<cmd>`` parses its arguments with shell-style quoting, calls the
client library and hands the result to :class:`~ftpclient.output.Output`; the
docstring is the help text (first line: usage and summary, then an example).
A failed command prints one line on stderr and sets :attr:`ClientShell.failed`.
Ctrl-C during a command abandons it: the connection is opened again (the
server keeps an interrupted upload, the client its ``.part`` file, for
``reget``/``reput``).  A lost connection is reported in words (with what a
transfer moved and the command that continues it); interactively the shell
stays up for ``reconnect``, in batch mode the caller decides.  Paths the user
typed appear in error lines as typed.  The commands on remote files are in
:mod:`ftpclient.remotecmds`, the local ones in :mod:`ftpclient.localcmds`.
"""

from __future__ import annotations

import cmd
import os
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

from ftpclient.client import FileTransferClient, LocalError, Monitor
from ftpclient.completion import Completion
from ftpclient.globbing import pattern_of, split_words
from ftpclient.localcmds import LocalCommands
from ftpclient.manycmds import ManyCommands
from ftpclient.mirrorcmds import MirrorCommands
from ftpclient.output import Output
from ftpclient.remotecmds import RemoteCommands
from ftpclient.wording import TransferTrack, connect_problem, lost_problem
from ftpproto.errors import ErrorCode, ProtocolError, RemoteError
from ftpproto.units import format_size

if TYPE_CHECKING:
    from ftpclient.trees import TreeResult

__all__ = ["ClientShell", "split_commands"]

Connect = Callable[[], FileTransferClient]
# Commands that work without a connection.
OFFLINE = frozenset({"lcd", "lls", "lpwd", "lmkdir", "shell", "help", "reconnect", "quit", "exit"})


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


class ClientShell(RemoteCommands, MirrorCommands, ManyCommands, LocalCommands, Completion, cmd.Cmd):
    """The ``ftpclient`` command shell."""

    intro = 'Connected. Type "help" for the commands, "quit" or Ctrl-D to leave.'

    def __init__(
        self,
        client: FileTransferClient,
        out: Output,
        connect: Connect | None = None,
        interactive: bool = False,
    ) -> None:
        super().__init__(stdout=out.stdout)
        self.client = client
        self.out = out
        self.connect = connect
        self.interactive = interactive
        self.connected = True
        self.failed = False
        self.resume_transfers = False  # set while a batch retries a command
        self.track: TransferTrack | None = None  # the transfer under way, if any
        self.typed: list[str] = []  # the words of the command being run
        self.cwd = "/"
        self._update_prompt()

    # -- plumbing ------------------------------------------------------------

    def _update_prompt(self) -> None:
        state = "" if self.connected else " (disconnected)"
        self.prompt = f"{self.client.user}@{self.client.host}:{self.cwd}{state}> "

    def fail(self, text: str, code: int | None = None) -> None:
        """Report a failed command on stderr in one line (``code``: the server's error code)."""
        self.failed = True
        self.out.error(text, code)

    def lost_message(self, exc: BaseException) -> str:
        """``connection lost: WHY`` and, during a transfer, what moved and how to continue."""
        during = f" {self.track.describe()}" if self.track is not None else ""
        return f"connection lost: {lost_problem(exc)}{during}"

    def as_typed(self, text: str) -> str:
        """``text`` with a trailing absolute remote path shown as the user typed it."""
        for word in self.typed:
            full = self.remote_path(word)
            if full != word and text.endswith(": " + full):
                return text[: -len(full)] + word
        return text

    def onecmd(self, line: str) -> bool:
        self.failed = False
        self.track = None
        name, rest, _ = self.parseline(line)
        try:
            self.typed = [w for w in shlex.split(rest or "") if not w.startswith("-")]
        except ValueError:
            self.typed = []
        if not self.connected and name and name not in OFFLINE:
            self.fail("not connected: type 'reconnect' (then reget/reput to resume)")
            return False
        try:
            return super().onecmd(line)
        except ProtocolError as exc:
            self.fail(f"remote: {self.as_typed(exc.text)}", int(exc.code))
        except LocalError as exc:
            self.fail(f"local: {exc}")
        except ValueError as exc:  # shlex: "No closing quotation"
            self.fail(f"error: {exc}")
        except KeyboardInterrupt:
            self._interrupted()
        except (ConnectionError, TimeoutError) as exc:
            self._drop_connection()
            if not self.interactive:
                raise
            self.fail(f"{self.lost_message(exc)}; type 'reconnect' first")
        return False

    def _interrupted(self) -> None:
        """Ctrl-C during a command: say what was kept, then open the connection again."""
        if self.track is not None and self.track.total is not None:
            self.fail(f"interrupted: {self.track.progress()}")
        else:
            self.fail("interrupted")
        self._drop_connection()
        if self.connect is not None:
            self._reconnect_or_say_why()

    def _reconnect_or_say_why(self) -> bool:
        """:meth:`reconnect`; a failure is one line in words (the shell stays disconnected)."""
        try:
            self.reconnect()
        except ProtocolError as exc:
            self.fail(f"cannot log in again: {exc.text}; type 'reconnect' to try again")
        except OSError as exc:
            where = f"{self.client.host}:{self.client.port}"
            self.fail(f"cannot connect to {where}: {connect_problem(exc)}; 'reconnect' tries again")
        else:
            return True
        return False

    def _drop_connection(self) -> None:
        self.client.close()
        self.connected = False
        self._update_prompt()

    def reconnect(self) -> None:
        """Open a new connection, log in again and return to the remote folder."""
        if self.connect is None:
            raise ConnectionError("no way to reconnect")
        self.client.close()
        self.client = self.connect()
        self.connected = True
        try:
            self.cwd = self.client.cd(self.cwd)
        except ProtocolError:
            self.cwd = self.client.pwd()
        self._update_prompt()

    def complete(self, text: str, state: int) -> str | None:  # type: ignore[override]
        """Readline's hook; a single complete match gets the space readline does not add."""
        if state == 0:
            super().complete(text, state)
            matches: list[str] = self.completion_matches or []
            if len(matches) == 1 and not matches[0].endswith(("/", " ")):
                self.completion_matches = [matches[0] + " "]
        found: list[str] = self.completion_matches or []
        return found[state] if state < len(found) else None

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> None:
        name = line.split()[0]
        import difflib  # here, not at the top: only a mistyped command needs it

        close = difflib.get_close_matches(name, self.command_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else " (type 'help')"
        self.fail(f"unknown command: {name}{hint}")

    def get_names(self) -> list[str]:
        """Method names for help and completion, without the Ctrl-D handler."""
        return [name for name in super().get_names() if name != "do_EOF"]

    def command_names(self) -> list[str]:
        """The names a user can type."""
        return sorted(n[3:] for n in self.get_names() if n.startswith("do_"))

    def do_help(self, arg: str) -> None:
        """help [COMMAND]: list the commands, or show one's usage and an example."""
        if arg.strip():
            name = "shell" if arg.strip() == "!" else arg.strip()
            method = getattr(self, "do_" + name, None)
            if method is None or name == "EOF":
                self.default(name)
                return
            first, _, rest = (method.__doc__ or name).partition("\n")
            self.out.line("usage: " + first.split(": ", 1)[0])
            self.out.line("  " + first.split(": ", 1)[-1])
            for text in rest.strip().splitlines():
                self.out.line("  " + text.strip())
            return
        for name in self.command_names():
            doc = (getattr(self, "do_" + name).__doc__ or "").split("\n", 1)[0]
            summary = doc.split(": ", 1)[-1]
            self.out.line(f"  {'!' if name == 'shell' else name:<9} {summary}")
        self.out.line("Type 'help COMMAND' for its usage and an example.")

    def _args(
        self, arg: str, least: int, most: int, usage: str, flags: str = ""
    ) -> tuple[set[str], list[str]] | None:
        """Options (single letters from ``flags``) and words, or None after a usage error."""
        options: set[str] = set()
        words: list[str] = []
        only_words = False
        for word in split_words(arg):  # shlex rules; a word knows its bare wildcards
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

    def _tree(self, result: TreeResult) -> None:
        for skipped in result.skipped:
            self.out.warning(f"skipped (link or special file): {skipped}")
        self.out.info(
            f"{len(result.files)} files ({format_size(result.size)}) in {result.folders} "
            "folders copied, each blake3 verified"
        )
        self.out.record(
            "tree",
            {
                "files": len(result.files),
                "folders": result.folders,
                "bytes": result.size,
                "skipped": result.skipped,
            },
        )

    # -- transfers -------------------------------------------------------------

    def _transfer(self, direction: str, arg: str, resume: bool) -> None:
        """get or put: one file, a pattern's files, or a tree with -r; -a (or a retry) resumes."""
        usage = (
            "get [-r] [-a] [-p] REMOTE [LOCAL]"
            if direction == "get"
            else "put [-r] [-a] [-p] LOCAL [REMOTE]"
        )
        parsed = self._args(arg, 1, 2, usage, "rap")
        if parsed is None:
            return
        options, words = parsed
        resume = resume or "a" in options or self.resume_transfers
        preserve = "p" in options
        if preserve and "r" in options:
            self.fail(f"{direction} -r keeps no modification times: mirror copies a tree with them")
            return
        if pattern_of(words[0]) is not None and "r" not in options:
            self.copy_matches(direction, words[:1], _second(words), preserve)
            return
        if "r" in options:
            again = f"{direction} -r -a {shlex.join(words)}"
            from ftpclient.trees import get_tree, put_tree  # here: only -r needs them

            copy_tree = get_tree if direction == "get" else put_tree
            result = copy_tree(
                self.client,
                words[0],
                _second(words),
                lambda done: self.out.transfer(direction, done),
                lambda name: self._track(direction, name, again),
                resume,
            )
            self._tree(result)
            return
        if direction == "put" and os.path.isdir(words[0]):
            raise LocalError(f"is a folder: {words[0]} (put -r copies a folder)")
        monitor = self._track(direction, words[0], f"re{direction} {shlex.join(words)}")
        try:
            from ftpclient.copying import copy_files  # here: only a transfer needs it

            copied = copy_files(
                self.client,
                direction,
                [(words[0], _second(words) or "")],
                preserve,
                monitor_for=lambda _: monitor,
                resume=resume,
            )
            self.mtime_warnings(copied)
            done = copied.files[0]
        except RemoteError as exc:
            if direction == "get" and exc.code == ErrorCode.IS_DIRECTORY:
                raise RemoteError(
                    exc.code, f"is a folder: {words[0]} (get -r copies a folder)"
                ) from None
            raise
        self.out.transfer(direction, done)

    def _track(self, direction: str, name: str, again: str) -> Monitor:
        """The monitor of one file's transfer: its progress bar (if any), followed by a track."""
        self.track = TransferTrack(direction, name, again, self.out.monitor(name))
        return self.track

    def do_get(self, arg: str) -> None:
        """get [-r] [-a] [-p] REMOTE [LOCAL]: download a file (LOCAL may be a folder).

        -r copies a folder tree; -a resumes an interrupted download (as reget);
        -p keeps the modification time.  REMOTE may be a pattern (*.csv: every
        match, into the folder LOCAL); quote it to take it as a name.
        Example: get "reports/May 2026.pdf" ~/Downloads"""
        self._transfer("get", arg, resume=False)

    def do_reget(self, arg: str) -> None:
        """reget REMOTE [LOCAL]: resume an interrupted download (from LOCAL.part).

        The part already here is checked against the server's file first; if it
        differs the download starts over.  Example: reget big.iso"""
        self._transfer("get", arg, resume=True)

    def do_put(self, arg: str) -> None:
        """put [-r] [-a] [-p] LOCAL [REMOTE]: upload a file.

        -r copies a folder tree; -a resumes an interrupted upload (as reput);
        -p keeps the modification time.  LOCAL may be a pattern (*.txt).
        Example: put notes.txt "backup/notes 2026.txt\""""
        self._transfer("put", arg, resume=False)

    def do_reput(self, arg: str) -> None:
        """reput LOCAL [REMOTE]: resume an interrupted upload.

        The part the server kept is checked against the local file first; if it
        differs the upload starts over.  Example: reput big.iso"""
        self._transfer("put", arg, resume=True)

    # -- the session -----------------------------------------------------------

    def do_reconnect(self, arg: str) -> None:
        """reconnect: open the connection again after it was lost (then reget/reput)."""
        if not self._reconnect_or_say_why():
            return
        self.out.info(f"reconnected to {self.client.host}:{self.client.port}")
        self.out.record("reconnect", {"host": self.client.host, "port": self.client.port})

    def do_quit(self, arg: str) -> bool:
        """quit: end the session (also: exit, Ctrl-D)."""
        if self.connected:
            try:
                self.client.quit()
            except (OSError, ProtocolError):
                self.client.close()
        return True

    def do_exit(self, arg: str) -> bool:
        """exit: end the session (same as quit)."""
        return self.do_quit(arg)

    def do_EOF(self, arg: str) -> bool:
        """Ctrl-D: end the session."""
        self.out.blank()
        return self.do_quit(arg)
