"""The shell's multi-file commands ``mget`` and ``mput`` (as in sftp and lftp).

``mget REMOTE...`` downloads each named remote file into the local folder
(or into ``-d FOLDER``) under its own name; ``mput LOCAL...`` uploads each
local file into the remote folder.  The files move pipelined on the one
connection (:meth:`~ftpclient.client.FileTransferClient.get_many`), each
verified by its BLAKE3 digest.  Each file is reported on its own: a
``get``/``put`` line (or ``--json`` record) when verified, an error line
naming it when it failed; the others go on, and the command fails if one
did.  The names are taken as given (no patterns).  Mixed into
:class:`~ftpclient.shell.ClientShell`.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ftpclient.client import LocalError, Monitor
from ftpclient.pipelined import FileOutcome
from ftpproto.errors import ProtocolError

if TYPE_CHECKING:
    from ftpclient.client import FileTransferClient
    from ftpclient.output import Output

__all__ = ["ManyCommands"]

Parsed = tuple[set[str], list[str]]


class ManyCommands:
    """``do_mget`` and ``do_mput``."""

    client: FileTransferClient
    out: Output
    fail: Callable[..., None]
    _args: Callable[..., Parsed | None]
    _track: Callable[[str, str, str], Monitor]

    def do_mget(self, arg: str) -> None:
        """mget [-d FOLDER] REMOTE...: download several files, pipelined, into the local folder.

        Each file keeps its name (into FOLDER with -d); a file that fails is
        named and the others still come.  Example: mget a.txt "b c.pdf" logs/d.log"""
        parsed = self._many(arg, "mget [-d FOLDER] REMOTE...")
        if parsed is None:
            return
        folder, names = parsed
        if folder and not os.path.isdir(folder):
            raise LocalError(f"not a local folder: {folder}")
        pairs = [
            (name, os.path.join(folder, posixpath.basename(name.rstrip("/")) or "download"))
            for name in names
        ]
        self._report("get", self.client.get_many(pairs, self._monitor_for("get")))

    def do_mput(self, arg: str) -> None:
        """mput [-d FOLDER] LOCAL...: upload several files, pipelined, into the remote folder.

        Each file keeps its name (into remote FOLDER with -d); a file that
        fails is named and the others still go.  Example: mput *.csv notes.txt"""
        parsed = self._many(arg, "mput [-d FOLDER] LOCAL...")
        if parsed is None:
            return
        folder, names = parsed
        pairs = []
        for name in names:
            base = os.path.basename(name.rstrip(os.sep))
            pairs.append((posixpath.join(folder, base) if folder else base, name))
        self._report("put", self.client.put_many(pairs, self._monitor_for("put")))

    def _many(self, arg: str, usage: str) -> tuple[str, list[str]] | None:
        """``(folder, names)`` from ``[-d FOLDER] NAME...``, or None after a usage error."""
        parsed = self._args(arg, 1, 1_000_000, usage, "d")
        if parsed is None:
            return None
        options, words = parsed
        if "d" not in options:
            return "", words
        if len(words) < 2:
            self.fail(f"usage: {usage}")
            return None
        return words[0], words[1:]

    def _monitor_for(self, direction: str) -> Callable[[str], Monitor | None]:
        return lambda name: self._track(direction, name, f"re{direction} {name}")

    def _report(self, direction: str, outcomes: Iterator[FileOutcome]) -> None:
        """One line (or record) per file; the command fails if any file did."""
        failed = total = 0
        for outcome in outcomes:
            total += 1
            if outcome.result is not None:
                self.out.transfer(direction, outcome.result)
                continue
            failed += 1
            error = outcome.error
            name = outcome.remote if direction == "get" else outcome.local
            text = error.text if isinstance(error, ProtocolError) else str(error)
            text = text if name in text else f"{name}: {text}"
            if isinstance(error, ProtocolError):
                self.fail(f"remote: {text}", int(error.code))
            else:
                self.fail(f"local: {text}")
        if failed:
            self.fail(f"m{direction}: {failed} of {total} files failed")
