"""``ClientShell``: the interactive and batch user interface over :class:`FileTransferClient`.

Each ``do_<cmd>`` parses its arguments with shell-style quoting, calls the
client library and hands the result to :class:`~ftpclient.output.Output`; the
docstring is the help text (first line: usage and summary, then an example).
A failed command prints one line on stderr and sets :attr:`ClientShell.failed`.
Ctrl-C during a command abandons it: the connection is opened again (the
server keeps an interrupted upload, the client its ``.part`` file, for
``reget``/``reput``).  A lost connection is reported; interactively the shell
stays up for ``reconnect``, in batch mode the caller decides.
"""

from __future__ import annotations

import cmd
import shlex
from collections.abc import Callable

from ftpclient.client import FileTransferClient, LocalError
from ftpclient.completion import Completion
from ftpclient.localcmds import LocalCommands
from ftpclient.output import Output
from ftpclient.trees import TreeResult, get_tree, put_tree
from ftpproto.errors import ProtocolError
from ftpproto.units import format_size

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


class ClientShell(LocalCommands, Completion, cmd.Cmd):
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
        self.cwd = "/"
        self._update_prompt()

    # -- plumbing ------------------------------------------------------------

    def _update_prompt(self) -> None:
        state = "" if self.connected else " (disconnected)"
        self.prompt = f"{self.client.user}@{self.client.host}:{self.cwd}{state}> "

    def fail(self, text: str) -> None:
        """Report a failed command on stderr in one line."""
        self.failed = True
        self.out.error(text)

    def onecmd(self, line: str) -> bool:
        self.failed = False
        name = self.parseline(line)[0]
        if not self.connected and name and name not in OFFLINE:
            self.fail("not connected: type 'reconnect' (then reget/reput to resume)")
            return False
        try:
            return super().onecmd(line)
        except ProtocolError as exc:
            self.fail(f"remote: {exc.text}")
        except LocalError as exc:
            self.fail(f"local: {exc}")
        except ValueError as exc:  # shlex: "No closing quotation"
            self.fail(f"error: {exc}")
        except KeyboardInterrupt:
            self.fail("interrupted: a partial file is kept; use reget/reput to resume")
            self._drop_connection()
            if self.connect is not None:
                try:
                    self.reconnect()
                except (OSError, ProtocolError) as exc:
                    self.fail(f"could not reconnect: {exc}; type 'reconnect' to try again")
        except (ConnectionError, TimeoutError) as exc:
            self._drop_connection()
            if not self.interactive:
                raise
            self.fail(f"connection lost: {exc}; type 'reconnect' (then reget/reput to resume)")
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
            name = arg.strip()
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

    def _tree(self, result: TreeResult) -> None:
        for skipped in result.skipped:
            self.out.warning(f"skipped (link or special file): {skipped}")
        self.out.info(
            f"{len(result.files)} files ({format_size(result.size)}) in {result.folders} "
            "folders copied, each blake3 verified"
        )

    # -- transfers -------------------------------------------------------------

    def _transfer(self, direction: str, arg: str, resume: bool) -> None:
        """get or put: one file, or a tree with -r; -a (or a retry) resumes."""
        usage = (
            "get [-r] [-a] REMOTE [LOCAL]" if direction == "get" else "put [-r] [-a] LOCAL [REMOTE]"
        )
        parsed = self._args(arg, 1, 2, usage, "ra")
        if parsed is None:
            return
        options, words = parsed
        resume = resume or "a" in options or self.resume_transfers
        if "r" in options:
            copy_tree = get_tree if direction == "get" else put_tree
            result = copy_tree(
                self.client,
                words[0],
                _second(words),
                lambda done: self.out.transfer(direction, done),
                self.out.monitor,
                resume,
            )
            self._tree(result)
            return
        copy_file = self.client.get if direction == "get" else self.client.put
        done = copy_file(words[0], _second(words), self.out.monitor(words[0]), resume)
        self.out.transfer(direction, done)

    def do_get(self, arg: str) -> None:
        """get [-r] [-a] REMOTE [LOCAL]: download a file (LOCAL may be a folder).

        -r copies a folder tree; -a resumes an interrupted download (as reget).
        Example: get "reports/May 2026.pdf" ~/Downloads"""
        self._transfer("get", arg, resume=False)

    def do_reget(self, arg: str) -> None:
        """reget REMOTE [LOCAL]: resume an interrupted download (from LOCAL.part).

        The part already here is checked against the server's file first; if it
        differs the download starts over.  Example: reget big.iso"""
        self._transfer("get", arg, resume=True)

    def do_put(self, arg: str) -> None:
        """put [-r] [-a] LOCAL [REMOTE]: upload a file.

        -r copies a folder tree; -a resumes an interrupted upload (as reput).
        Example: put notes.txt "backup/notes 2026.txt\""""
        self._transfer("put", arg, resume=False)

    def do_reput(self, arg: str) -> None:
        """reput LOCAL [REMOTE]: resume an interrupted upload.

        The part the server kept is checked against the local file first; if it
        differs the upload starts over.  Example: reput big.iso"""
        self._transfer("put", arg, resume=True)

    # -- remote files ----------------------------------------------------------

    def do_ls(self, arg: str) -> None:
        """ls [-l] [PATH]: list a remote folder; -l adds type, size and modification time.

        Example: ls -l reports"""
        parsed = self._args(arg, 0, 1, "ls [-l] [PATH]", "l")
        if parsed is not None:
            options, words = parsed
            self.out.entries(self.client.ls(words[0] if words else None), "l" in options)

    def do_stat(self, arg: str) -> None:
        """stat [-s] PATH: type, size and modification time; -s adds the BLAKE3 digest.

        Example: stat -s backup.tar"""
        parsed = self._args(arg, 1, 1, "stat [-s] PATH", "s")
        if parsed is not None:
            options, words = parsed
            self.out.stat(self.client.stat(words[0], digest="s" in options))

    def do_cd(self, arg: str) -> None:
        """cd PATH: change the remote folder.

        Example: cd /reports/2026"""
        parsed = self._args(arg, 1, 1, "cd PATH")
        if parsed:
            self.cwd = self.client.cd(parsed[1][0])
            self._update_prompt()

    def do_pwd(self, arg: str) -> None:
        """pwd: show the remote folder."""
        if self._args(arg, 0, 0, "pwd") is not None:
            self.out.line(self.client.pwd())

    def do_mkdir(self, arg: str) -> None:
        """mkdir [-p] PATH: create a remote folder; -p also creates missing parents.

        Example: mkdir -p backups/2026/11"""
        parsed = self._args(arg, 1, 1, "mkdir [-p] PATH", "p")
        if parsed:
            self.client.mkdir(parsed[1][0], parents="p" in parsed[0])

    def do_rmdir(self, arg: str) -> None:
        """rmdir PATH: remove an empty remote folder.

        Example: rmdir old"""
        parsed = self._args(arg, 1, 1, "rmdir PATH")
        if parsed:
            self.client.rmdir(parsed[1][0])

    def do_rm(self, arg: str) -> None:
        """rm [-r] PATH: remove a remote file; -r removes a folder and everything in it.

        Symlinks are removed, never followed.  Example: rm -r old-backups"""
        parsed = self._args(arg, 1, 1, "rm [-r] PATH", "r")
        if parsed:
            files, freed = self.client.rm(parsed[1][0], recursive="r" in parsed[0])
            self.out.record("rm", {"path": parsed[1][0], "files": files, "bytes": freed})
            if "r" in parsed[0]:
                self.out.info(f"removed {files} files ({format_size(freed)})")

    def do_mv(self, arg: str) -> None:
        """mv OLD NEW: rename or move a remote file or folder (into NEW if it is a folder).

        Example: mv draft.txt final.txt"""
        parsed = self._args(arg, 2, 2, "mv OLD NEW")
        if parsed:
            self.client.mv(*parsed[1])

    def do_quota(self, arg: str) -> None:
        """quota: show the space you use and the space still available (also: df)."""
        if self._args(arg, 0, 0, "quota") is None:
            return
        usage = self.client.quota()
        self.out.record(
            "quota", {"used": usage.used, "limit": usage.limit, "available": usage.available}
        )
        limit = f"of {format_size(usage.limit)} quota" if usage.limit is not None else "(no quota)"
        if not self.out.json_mode:
            self.out.line(
                f"used {format_size(usage.used)} {limit}, {format_size(usage.available)} available"
            )

    def do_df(self, arg: str) -> None:
        """df: the same as quota."""
        self.do_quota(arg)

    # -- the session -----------------------------------------------------------

    def do_reconnect(self, arg: str) -> None:
        """reconnect: open the connection again after it was lost (then reget/reput)."""
        self.reconnect()
        self.out.info(f"reconnected to {self.client.host}:{self.client.port}")

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
        self.out.line("")
        return self.do_quit(arg)
