"""The command table shared by server and client, declared as data.

The server checks every request against this table *before* dispatching it:
a name that is not here is refused, a command that needs a login is refused
before one, and the argument count must fit.  Only then does it call
``cmd_<name>``.  The client uses the same table for its help texts.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["COMMANDS", "READ_ONLY", "RIGHTS", "CommandSpec", "lookup"]

# The rights a user can be given in users.yaml, and the read-only shorthand.
RIGHTS = ("list", "read", "write", "mkdir", "delete", "rename")
READ_ONLY = ("list", "read")


class CommandSpec(NamedTuple):
    """What a wire command takes and whether it needs a login."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    needs_login: bool = True
    summary: str = ""
    permission: str | None = None  # the right a user needs (see RIGHTS), if any

    @property
    def usage(self) -> str:
        """``name REQUIRED [OPTIONAL]`` as shown in help texts."""
        words = [self.name, *self.required, *(f"[{p}]" for p in self.optional)]
        return " ".join(words)

    def accepts(self, nargs: int) -> bool:
        """Whether ``nargs`` arguments fit this command."""
        return len(self.required) <= nargs <= len(self.required) + len(self.optional)


_SPECS = (
    CommandSpec("login", ("USER", "PASSWORD"), needs_login=False, summary="log in"),
    CommandSpec(
        "challenge", (), needs_login=False, summary="a fresh challenge to sign for login_key"
    ),
    CommandSpec(
        "login_key",
        ("USER", "ALGORITHM", "KEY", "SIGNATURE"),
        needs_login=False,
        summary="log in with a public key and a signed challenge",
    ),
    CommandSpec("help", (), ("COMMAND",), needs_login=False, summary="list commands or show one"),
    CommandSpec("quit", (), needs_login=False, summary="end the session"),
    CommandSpec("pwd", (), summary="show the remote working folder"),
    CommandSpec("cd", ("PATH",), summary="change the remote working folder"),
    CommandSpec(
        "ls", (), ("PATH",), summary="list a folder: name, type, size, mtime", permission="list"
    ),
    CommandSpec(
        "stat",
        ("PATH",),
        ("blake3",),
        summary="type, size, mtime (and BLAKE3 digest) of a path",
        permission="list",
    ),
    CommandSpec(
        "get",
        ("PATH",),
        ("OFFSET", "PREFIX_BLAKE3"),
        summary="download a file, or resume from OFFSET",
        permission="read",
    ),
    CommandSpec(
        "put",
        ("PATH", "SIZE"),
        ("OFFSET", "PREFIX_BLAKE3"),
        summary="upload a file of SIZE bytes, or resume from OFFSET",
        permission="write",
    ),
    CommandSpec(
        "partial",
        ("PATH",),
        summary="bytes of an interrupted upload kept for resuming",
        permission="write",
    ),
    CommandSpec("mkdir", ("PATH",), ("parents",), summary="create a folder", permission="mkdir"),
    CommandSpec("rmdir", ("PATH",), summary="remove an empty folder", permission="delete"),
    CommandSpec(
        "rm",
        ("PATH",),
        ("recursive", "folders"),
        summary="remove a file (or a tree)",
        permission="delete",
    ),
    CommandSpec(
        "mv",
        ("OLD", "NEW"),
        ("replace",),
        summary="rename or move a file or folder",
        permission="rename",
    ),
    CommandSpec(
        "touch",
        ("PATH", "MTIME"),
        summary="set the modification time of a file or folder",
        permission="write",
    ),
    CommandSpec(
        "tree",
        ("PATH",),
        ("blake3",),
        summary="every file and folder under PATH: size, mtime (and BLAKE3 digest)",
        permission="list",
    ),
    CommandSpec("quota", (), summary="used and available space"),
    CommandSpec("window", (), summary="files and bytes a pipelined transfer may have in flight"),
    CommandSpec(
        "fetch", ("PATH",), summary="download a file, pipelined (no recv_ready)", permission="read"
    ),
    CommandSpec(
        "offer",
        ("PATH", "SIZE"),
        summary="announce a pipelined upload of SIZE bytes",
        permission="write",
    ),
    CommandSpec("send", (), ("abort",), summary="the data of the oldest ready offer follows"),
)

COMMANDS: dict[str, CommandSpec] = {spec.name: spec for spec in _SPECS}


def lookup(name: str) -> CommandSpec | None:
    """The spec of a known command, or ``None``: the allow-list check."""
    return COMMANDS.get(name)
