"""What the shell's command mixins take from :class:`~ftpclient.shell.ClientShell`.

:class:`~ftpclient.remotecmds.RemoteCommands`,
:class:`~ftpclient.manycmds.ManyCommands` and
:class:`~ftpclient.mirrorcmds.MirrorCommands` are parts of the one shell
class; :class:`ShellParts` declares, once, the shell's attributes they use
(the connection, the output, how a command fails and how its words are
parsed) so that each part type-checks on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ftpclient.client import FileTransferClient
    from ftpclient.output import Output

__all__ = ["Parsed", "ShellParts"]

Parsed = tuple[set[str], list[str]]  # the flags given and the other words of a command


class ShellParts:
    """The shell's attributes its command mixins use (set by ``ClientShell``)."""

    client: FileTransferClient
    out: Output
    fail: Callable[..., None]
    _args: Callable[..., Parsed | None]
