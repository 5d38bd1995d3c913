"""The shell's commands on remote files: ``ls``, ``stat``, ``cd``, ``pwd``, ``mkdir``, ``rmdir``,
``rm``, ``mv`` and ``quota``.

Each parses its flags as sftp does (``ls -la``, ``mkdir -p``, ``rm -r``,
``mv -f``), calls the client library and hands the result to
:class:`~ftpclient.output.Output`: a line of text, or one JSON record in
``--json`` mode.  Mixed into :class:`~ftpclient.shell.ClientShell`.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

from ftpclient.globbing import expand_remote, pattern_of
from ftpclient.output import ListStyle
from ftpclient.shellparts import ShellParts
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.units import format_size

if TYPE_CHECKING:
    from ftpclient.client import Entry

__all__ = ["RemoteCommands"]


class RemoteCommands(ShellParts):
    """``do_*`` commands that look at or change files on the server."""

    cwd: str
    _update_prompt: Callable[[], None]

    def remote_path(self, path: str) -> str:
        """``path`` as an absolute remote path, seen from the remote folder."""
        return posixpath.normpath(posixpath.join(self.cwd, path)).replace("//", "/")

    def do_ls(self, arg: str) -> None:
        """ls [-lahtSr] [PATH]: list a remote folder (in columns on a terminal).

        -l adds type, size in bytes and modification time (-h: sizes as KiB, MiB, ...);
        -a shows names starting with a dot; -t sorts newest first, -S largest
        first, -r reverses the order.  PATH may be a pattern (ls *.bin).
        Example: ls -lh reports"""
        parsed = self._args(arg, 0, 1, "ls [-lahtSr] [PATH]", "lahtSr")
        if parsed is None:
            return
        options, words = parsed
        if words and pattern_of(words[0]) is not None:  # ls *.bin
            matches = expand_remote(self.client, words[0])
            folder = self.remote_path(posixpath.dirname(matches[0][0]) or ".")
            entries = [entry for _, entry in matches]
        else:
            entries = self.client.ls(words[0] if words else None)
            folder = self._listed_folder(words, entries)
        style = ListStyle(
            long="l" in options,
            hidden="a" in options,
            human="h" in options,
            by_time="t" in options,
            by_size="S" in options,
            reverse="r" in options,
        )
        self.out.entries(entries, folder, style)

    def _listed_folder(self, words: list[str], entries: list[Entry]) -> str:
        """The folder the entries of ``ls PATH`` are in (``ls FILE`` lists one file)."""
        folder = self.remote_path(words[0] if words else ".")
        if not self.out.json_mode or len(entries) != 1 or folder == "/":
            return folder
        # One entry named as PATH itself: PATH is a file, or a folder holding that one name.
        named_as_path = entries[0].name == posixpath.basename(folder)
        if named_as_path and self.client.stat(words[0]).type != "dir":
            return posixpath.dirname(folder)
        return folder

    def do_stat(self, arg: str) -> None:
        """stat [-s] PATH: type, size and modification time; -s adds the BLAKE3 digest.

        Example: stat -s backup.tar"""
        parsed = self._args(arg, 1, 1, "stat [-s] PATH", "s")
        if parsed is not None:
            options, words = parsed
            self.out.stat(self.client.stat(words[0], digest="s" in options))

    def do_cd(self, arg: str) -> None:
        """cd [PATH]: change the remote folder (alone: to your remote home, /).

        Example: cd /reports/2026"""
        parsed = self._args(arg, 0, 1, "cd [PATH]")
        if parsed:
            self.cwd = self.client.cd(parsed[1][0] if parsed[1] else "/")
            self._update_prompt()
            self.out.record("cd", {"path": self.cwd})

    def do_pwd(self, arg: str) -> None:
        """pwd: show the remote folder."""
        if self._args(arg, 0, 0, "pwd") is not None:
            path = self.client.pwd()
            self.out.result("pwd", {"path": path}, path)

    def do_mkdir(self, arg: str) -> None:
        """mkdir [-p] PATH: create a remote folder; -p also creates missing parents.

        Example: mkdir -p backups/2026/11"""
        parsed = self._args(arg, 1, 1, "mkdir [-p] PATH", "p")
        if not parsed:
            return
        path, parents = parsed[1][0], "p" in parsed[0]
        try:
            made = self.client.mkdir(path, parents=parents)
        except RemoteError as exc:
            if exc.code != ErrorCode.NOT_FOUND or parents:
                raise
            parent = posixpath.dirname(path.rstrip("/")) or "."
            raise RemoteError(
                exc.code,
                f"no such folder: {parent} (mkdir -p {shlex.quote(path)} creates it too)",
            ) from None
        self.out.record("mkdir", {"path": made})

    def do_rmdir(self, arg: str) -> None:
        """rmdir PATH: remove an empty remote folder.

        Example: rmdir old"""
        parsed = self._args(arg, 1, 1, "rmdir PATH")
        if parsed:
            self.out.record("rmdir", {"path": self.client.rmdir(parsed[1][0])})

    def do_rm(self, arg: str) -> None:
        """rm [-r] PATH: remove a remote file; -r removes a folder and everything in it.

        PATH may be a pattern (rm logs/2025-*: every match).  Symlinks are
        removed, never followed.  Example: rm -r old-backups"""
        parsed = self._args(arg, 1, 1, "rm [-r] PATH", "r")
        if not parsed:
            return
        for path, _ in expand_remote(self.client, parsed[1][0]):  # rm logs/2025-*
            self._rm(path, "r" in parsed[0])

    def _rm(self, path: str, recursive: bool) -> None:
        files, freed, folders = self.client.rm_counts(path, recursive=recursive)
        self.out.record(
            "rm",
            {"path": self.remote_path(path), "files": files, "folders": folders, "bytes": freed},
        )
        if recursive:
            self.out.info(
                f"removed {files} {'file' if files == 1 else 'files'} and {folders} "
                f"{'folder' if folders == 1 else 'folders'} ({format_size(freed)})"
            )

    def do_mv(self, arg: str) -> None:
        """mv [-f] OLD NEW: rename or move a remote file or folder (into NEW if it is a folder).

        An existing NEW is refused; -f replaces it, atomically (a file, or an
        empty folder).  Example: mv -f draft.txt final.txt"""
        parsed = self._args(arg, 2, 2, "mv [-f] OLD NEW", "f")
        if parsed:
            old, new = parsed[1]
            moved = self.client.mv(old, new, replace="f" in parsed[0])
            self.out.record("mv", {"from": self.remote_path(old), "to": moved})

    def do_quota(self, arg: str) -> None:
        """quota: show the space you use and the space still available (also: df)."""
        if self._args(arg, 0, 0, "quota") is None:
            return
        usage = self.client.quota()
        limit = f"of {format_size(usage.limit)} quota" if usage.limit is not None else "(no quota)"
        self.out.result(
            "quota",
            {"used": usage.used, "limit": usage.limit, "available": usage.available},
            f"used {format_size(usage.used)} {limit}, {format_size(usage.available)} available",
        )

    def do_df(self, arg: str) -> None:
        """df: the same as quota."""
        self.do_quota(arg)
