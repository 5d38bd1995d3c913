"""Tab completion for the shell: command names, remote paths (listed as you type), local paths.

Mixed into :class:`~ftpclient.shell.ClientShell`; ``cmd.Cmd`` calls
``complete_<command>``.  Which argument is remote and which local follows
each command's usage (``get REMOTE LOCAL``, ``put LOCAL REMOTE``, ...).
Completion never raises: a lost connection just completes nothing.
"""

from __future__ import annotations

import os
import posixpath
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
    "mget": "r" * 64,
    "mput": "l" * 64,
    "lcd": "l",
    "lls": "l",
    "lmkdir": "l",
    "mirror": "rl",  # mirror REMOTE LOCAL; in "mirror -R LOCAL" word 2 is local too
}


def current_word(line: str, end: int) -> tuple[int, int, str, str | None]:
    """The shell word that ends at ``end``: ``(start, index, text, open_quote)``.

    ``index`` counts the words before it (the command is word 0), ``text``
    is the word with quotes and backslash escapes undone, and
    ``open_quote`` is the quote still open at ``end``, if any.
    """
    start, index, word, quote = end, 0, "", None
    in_word, escaped = False, False
    for i, char in enumerate(line[:end]):
        if not in_word and not char.isspace():
            start, word, in_word = i, "", True
        if escaped:
            word, escaped = word + char, False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
            else:
                word += char
        elif char in "'\"":
            quote = char
        elif char.isspace():
            if in_word:
                index += 1
            in_word = False
        else:
            word += char
    if not in_word:
        start, word = end, ""
    return start, index, word, quote


def escape(path: str, quote: str | None, final: bool) -> str:
    """``path`` written as the shell parses it: inside ``quote``, or with backslashes.

    ``final`` closes the quote (a complete name, not a folder to go on into).
    """
    if quote == "'":
        return "'" + path.replace("'", "'\\''") + ("'" if final else "")
    if quote == '"':
        return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + ('"' if final else "")
    return "".join("\\" + c if c.isspace() or c in "\\'\"" else c for c in path)


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

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        """Complete the path argument under the cursor, quoted as the shell will parse it.

        Readline replaces only ``line[begidx:endidx]`` (it splits words at
        spaces, even escaped ones), so each candidate is cut to that part.
        """
        command = line.split(None, 1)[0] if line.strip() else ""
        start, index, word, quote = current_word(line, endidx)
        kinds = ARGUMENT_KINDS.get(command, "")
        if not 1 <= index <= len(kinds):
            return []
        paths = self.complete_remote(word) if kinds[index - 1] == "r" else complete_local(word)
        typed = line[start:begidx]
        matches = []
        for path in paths:
            written = escape(path, quote, final=len(paths) == 1 and not path.endswith("/"))
            if written.startswith(typed):
                matches.append(written[len(typed) :])
        return matches
