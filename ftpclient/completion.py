"""Tab completion for the shell: command names, remote paths (listed as you type), local paths.

Mixed into :class:`~ftpclient.shell.ClientShell`; ``cmd.Cmd`` calls
``complete_<command>``.  Which argument is remote and which local follows
each command's usage (``get REMOTE LOCAL``, ``put LOCAL REMOTE``, ...).
Completion never raises: a lost connection just completes nothing.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from typing import TYPE_CHECKING

from ftpproto.errors import ProtocolError

if TYPE_CHECKING:
    from ftpclient.client import FileTransferClient

__all__ = ["Completion"]

# command -> kind of each argument: "r" remote, "l" local
ARGUMENT_KINDS = {
    "get": "rl",
    "reget": "rl",
    "put": "lr",
    "reput": "lr",
    "ls": "r",
    "cd": "r",
    "stat": "r",
    "rm": "r",
    "rmdir": "r",
    "mkdir": "r",
    "mv": "rr",
    "lcd": "l",
    "lls": "l",
    "lmkdir": "l",
}


def _argument_index(line: str, begidx: int) -> int:
    """Which argument (0-based, options not counted) the word at ``begidx`` is."""
    try:
        words = shlex.split(line[:begidx])
    except ValueError:
        words = line[:begidx].split()
    return len([w for w in words[1:] if not w.startswith("-")])


def complete_local(text: str) -> list[str]:
    """Local paths starting with ``text``; folders end in ``/``."""
    folder, prefix = os.path.split(text)
    try:
        names = os.listdir(os.path.expanduser(folder) or ".")
    except OSError:
        return []
    matches = []
    for name in sorted(names):
        if name.startswith(prefix) and (prefix.startswith(".") or not name.startswith(".")):
            path = os.path.join(folder, name)
            matches.append(path + "/" if os.path.isdir(os.path.expanduser(path)) else path)
    return matches


class Completion:
    """``complete_<cmd>`` methods for every command that takes paths."""

    client: FileTransferClient
    connected: bool

    def complete_remote(self, text: str) -> list[str]:
        """Remote paths starting with ``text`` (the folder is listed now); folders end in ``/``."""
        if not self.connected:
            return []
        folder, prefix = posixpath.split(text)
        try:
            entries = self.client.ls(folder or ".")
        except (ProtocolError, OSError):
            return []
        return [
            posixpath.join(folder, e.name) + ("/" if e.type == "dir" else "")
            for e in entries
            if e.name.startswith(prefix)
        ]

    def _complete_argument(self, command: str, text: str, line: str, begidx: int) -> list[str]:
        kinds = ARGUMENT_KINDS.get(command, "")
        index = _argument_index(line, begidx)
        if index >= len(kinds):
            return []
        return self.complete_remote(text) if kinds[index] == "r" else complete_local(text)

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        command = line.split(None, 1)[0] if line.strip() else ""
        return self._complete_argument(command, text, line, begidx)
