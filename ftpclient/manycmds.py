"""The shell's many-file commands: ``mget``, ``mput``, ``get``/``put`` of a pattern.

``mget [-p] [-d FOLDER] PATTERN...`` downloads every remote file the
patterns match into the local folder (or into ``-d FOLDER``) under its own
name; ``mput`` uploads local files into the remote folder (as in sftp and lftp).  Patterns are
expanded as :mod:`ftpclient.globbing` does (quoted: a name as it is), and
``-p`` keeps modification times.  The files move pipelined on the one
connection through :func:`ftpclient.copying.copy_files`, each verified by
its BLAKE3 digest.  Each file is reported on its own: a ``get``/``put``
line (or ``--json`` record) when verified, an error line naming it when it
failed; the others go on, and the command fails
(``mget: N of M files failed``) if one did.  ``get PATTERN [LOCAL]`` and
``put PATTERN [REMOTE]`` copy the same way.  Mixed into
:class:`~ftpclient.shell.ClientShell`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ftpclient.client import LocalError
from ftpclient.globbing import expand_local, expand_remote
from ftpclient.shellparts import ShellParts
from ftpproto.errors import ProtocolError
from ftpproto.units import format_size

if TYPE_CHECKING:
    from ftpclient.client import Monitor
    from ftpclient.copying import CopyResult
    from ftpclient.pipelined import FileOutcome

__all__ = ["ManyCommands"]


class ManyCommands(ShellParts):
    """``do_mget``, ``do_mput`` and the pattern copies of ``get``/``put``."""

    _track: Callable[[str, str, str], Monitor]

    def do_mget(self, arg: str) -> None:
        """mget [-p] [-d FOLDER] PATTERN...: download the remote files that match, pipelined.

        Each keeps its name, here (in the local FOLDER with -d); -p keeps the
        modification times.  Quote a pattern to take it as a name.  A file
        that fails is named and the others still come.
        Example: mget -d reports *.csv "May 2026.pdf\""""
        self._many("get", arg)

    def do_mput(self, arg: str) -> None:
        """mput [-p] [-d FOLDER] PATTERN...: upload the local files that match, pipelined.

        Each keeps its name, in the remote folder (in FOLDER there with -d);
        -p keeps the modification times.  A file that fails is named and the
        others still go.  Example: mput -p *.log notes.txt"""
        self._many("put", arg)

    def _many(self, direction: str, arg: str) -> None:
        usage = f"m{direction} [-p] [-d FOLDER] PATTERN..."
        parsed = self._args(arg, 1, 1_000_000, usage, "pd")
        if parsed is None:
            return
        options, words = parsed
        folder: str | None = None
        if "d" in options:
            if len(words) < 2:
                self.fail(f"usage: {usage}")
                return
            folder, words = words[0], words[1:]
            if direction == "get" and not os.path.isdir(folder):
                raise LocalError(f"not a local folder: {folder}")
        self.copy_matches(direction, words, folder, "p" in options, f"m{direction}")

    def mtime_warnings(self, result: CopyResult) -> None:
        """One notice per modification time that could not be kept."""
        for problem in result.mtime_failures:
            self.out.warning(f"modification time not kept: {problem}")

    def copy_matches(
        self,
        direction: str,
        words: list[str],
        target: str | None,
        preserve: bool,
        command: str | None = None,
    ) -> None:
        """Copy every file the words (patterns or names) name into ``target`` (a folder)."""
        sources: list[str] = []
        mtimes: dict[str, int] = {}  # remote files' times, known from their listing
        for word in words:
            if direction == "get":
                for path, entry in expand_remote(self.client, word):
                    if entry.type not in ("file", "?"):
                        self.out.warning(f"skipped ({entry.type}): {path}")
                        continue
                    sources.append(path)
                    if entry.type == "file":
                        mtimes[path] = entry.mtime
            else:
                for path in expand_local(word):
                    if os.path.isfile(path) or not os.path.lexists(path):
                        sources.append(path)  # a missing one fails in its turn, named
                    else:
                        self.out.warning(f"skipped (not a file): {path}")
        if direction == "get":
            if target and len(sources) > 1 and not os.path.isdir(target):
                raise LocalError(f"not a folder: {target} ({len(sources)} files match)")
            pairs = [(path, target or "") for path in sources]
        else:
            base = target.rstrip("/") + "/" if target else ""
            pairs = [(path, base + os.path.basename(path)) for path in sources]
        from ftpclient.copying import copy_files  # here: only a transfer needs it

        result = copy_files(
            self.client,
            direction,
            pairs,
            preserve,
            lambda done: self.out.transfer(direction, done),
            lambda name: self._track(direction, name, f"{direction} -a {name}"),
            mtimes,
            on_failure=lambda outcome: self._failed(direction, outcome),
        )
        self.mtime_warnings(result)
        self.out.info(f"{len(result.files)} files ({format_size(result.size)}) copied")
        if result.failures:
            failed, total = len(result.failures), len(pairs)
            self.fail(f"{command or direction}: {failed} of {total} files failed")

    def _failed(self, direction: str, outcome: FileOutcome) -> None:
        """The error line (or record) of one file that failed, naming it."""
        error = outcome.error
        name = outcome.remote if direction == "get" else outcome.local
        text = error.text if isinstance(error, ProtocolError) else str(error)
        text = text if name in text else f"{name}: {text}"
        if isinstance(error, ProtocolError):
            self.fail(f"remote: {text}", int(error.code))
        else:
            self.fail(f"local: {text}")
