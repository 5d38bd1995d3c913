"""The virtual filesystem that confines a session to its user's home folder.

Clients name *virtual* paths: ``/`` is the home folder, and relative paths are
taken against the session's virtual working folder (the process's real
working directory is never changed).  :meth:`Jail.resolve` normalises a path,
follows symlinks with ``realpath`` and then checks with
``os.path.commonpath`` that the result is still inside the real home; every
path a client names goes through it before any ``os`` call.  Replies only
ever show virtual paths.
"""

from __future__ import annotations

import os
import posixpath

from ftpproto.errors import ErrorCode, ProtocolError

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "PARTIAL_DIR",
    "TEMP_PREFIX",
    "Jail",
    "is_reserved",
    "is_temporary",
]

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
TEMP_PREFIX = ".ftp-upload-"  # uploads in progress, next to their target
PARTIAL_DIR = ".ftp-partial"  # interrupted uploads kept for resuming, at the home's top


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary upload file."""
    return name.startswith(TEMP_PREFIX)


def is_reserved(name: str) -> bool:
    """Whether ``name`` belongs to the server (hidden from listings, refused in paths)."""
    return name.startswith(TEMP_PREFIX) or name == PARTIAL_DIR


class Jail:
    """One session's view of its home folder: a virtual cwd and path resolution."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(home)
        self.cwd = "/"

    def virtual(self, path: str) -> str:
        """The normalised absolute virtual path for ``path``; ``..`` stops at ``/``."""
        if not path:
            raise ProtocolError(ErrorCode.BAD_PATH, "empty path")
        if "\0" in path:
            raise ProtocolError(ErrorCode.BAD_PATH, "path contains a NUL byte")
        if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
            raise ProtocolError(ErrorCode.PATH_TOO_LONG, f"path longer than {MAX_PATH_BYTES} bytes")
        joined = posixpath.normpath(posixpath.join(self.cwd, path))
        virtual = "/" + joined.lstrip("/")
        for name in virtual.split("/"):
            if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
                raise ProtocolError(
                    ErrorCode.PATH_TOO_LONG, f"a name in the path is over {MAX_NAME_BYTES} bytes"
                )
            if is_reserved(name):
                raise ProtocolError(ErrorCode.BAD_PATH, f"reserved name: {name}")
        if len(virtual.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
            raise ProtocolError(ErrorCode.PATH_TOO_LONG, f"path longer than {MAX_PATH_BYTES} bytes")
        return virtual

    def resolve(self, path: str, follow: bool = True) -> tuple[str, str]:
        """``(virtual, real)`` for a client path; refuse anything that leads outside the home.

        The real path has every symlink resolved, so the caller acts on what
        was checked.  A symlink whose target lies outside the home is refused
        with PERMISSION_DENIED whatever the command.  With ``follow=False``
        the last name is not followed (to remove or rename a symlink itself);
        only its folder is resolved and checked, and ``/`` is refused.
        """
        virtual = self.virtual(path)
        if not follow:
            if virtual == "/":
                raise ProtocolError(ErrorCode.PERMISSION_DENIED, "not allowed on your home folder")
            parent, name = posixpath.split(virtual)
            real_parent = self._checked(os.path.join(self.root, parent.lstrip("/")), virtual)
            return virtual, os.path.join(real_parent, name)
        return virtual, self._checked(os.path.join(self.root, virtual.lstrip("/")), virtual)

    def _checked(self, unresolved: str, virtual: str) -> str:
        real = os.path.realpath(unresolved)
        if not self.contains(real):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, f"permission denied: {virtual}")
        return real

    def contains(self, real: str) -> bool:
        """Whether the real path ``real`` (already resolved) lies inside the home."""
        return os.path.commonpath([self.root, real]) == self.root

    def chdir(self, virtual: str) -> None:
        """Set the virtual working folder (the caller has checked it is a folder)."""
        self.cwd = virtual
