"""The virtual filesystem that confines a session to its user's home folder.

Clients name *virtual* paths: ``/`` is the home folder, and relative paths are
taken against the session's virtual working folder (the process's real
working directory is never changed).  :meth:`Jail.resolve` normalises a path,
resolves its symlinks as ``realpath`` would (one ``lstat`` per name below
the real home; ``realpath`` itself from the first symlink on) and then
checks with ``os.path.commonpath`` that the result is still inside the real home; every
path a client names goes through it before any ``os`` call.  Replies only
ever show virtual paths.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.storage.paths import (
    MAX_NAME_BYTES,
    MAX_PATH_BYTES,
    PARTIAL_DIR,
    TEMP_PREFIX,
    is_reserved,
    is_temporary,
    virtual_path,
)

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "PARTIAL_DIR",
    "TEMP_PREFIX",
    "Jail",
    "is_reserved",
    "is_temporary",
]


class Jail:
    """One session's view of its home folder: a virtual cwd and path resolution."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(home)
        self.cwd = "/"

    def virtual(self, path: str) -> str:
        """The normalised absolute virtual path for ``path``; ``..`` stops at ``/``."""
        return virtual_path(self.cwd, path)

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
            real_parent = self._checked(parent, virtual)[0]
            return virtual, os.path.join(real_parent, name)
        return virtual, self._checked(virtual, virtual)[0]

    def resolve_status(self, path: str) -> tuple[str, str, os.stat_result | None, bool]:
        """:meth:`resolve`, with what the walk saw of the last name: ``(virtual, real, st, seen)``.

        ``seen`` is True when the walk looked at the last name itself, and
        ``st`` is then its ``lstat`` (None: no such name, in a folder that
        exists); it spares the caller looking again.  At the home itself, a
        link on the way or a missing folder before the last name, ``seen``
        is False and the caller looks for itself.
        """
        virtual = self.virtual(path)
        real, st, seen = self._checked(virtual, virtual)
        return virtual, real, st, seen

    def _checked(self, inside: str, virtual: str) -> tuple[str, os.stat_result | None, bool]:
        """The real path of the virtual path ``inside`` (and :meth:`_walk`'s status of it).

        Refused unless it is in the home.
        """
        real, st, seen = self._walk(inside.lstrip("/"))
        if not self.contains(real):
            raise ProtocolError(ErrorCode.PERMISSION_DENIED, f"permission denied: {virtual}")
        return real, st, seen

    def _walk(self, relative: str) -> tuple[str, os.stat_result | None, bool]:
        """``realpath(root/relative)`` for a normalised ``relative``, looking only below the root.

        The root is real already, so while no name below it is a symlink the
        answer is the joined path: one ``lstat`` per name below the root,
        where ``realpath`` takes one per name from ``/`` (in Python).  From a
        name that cannot be looked at (missing, say) ``realpath`` keeps the
        rest as given, and so does this.  At the first symlink, ``realpath``
        of the whole path decides.  Also returns the last name's status and
        whether it was looked at (see :meth:`resolve_status`).
        """
        if not relative:
            return self.root, None, False
        path = self.root.rstrip("/")
        names = relative.split("/")
        last = len(names) - 1
        for index, name in enumerate(names):
            path = f"{path}/{name}"
            try:
                st = os.lstat(path)
            except OSError as exc:
                seen = index == last and exc.errno == errno.ENOENT  # (its folder is one)
                return "/".join([path, *names[index + 1 :]]), None, seen
            if stat.S_ISLNK(st.st_mode):
                return os.path.realpath(os.path.join(self.root, relative)), None, False
        return path, st, True

    def contains(self, real: str) -> bool:
        """Whether the real path ``real`` (already resolved) lies inside the home."""
        return os.path.commonpath([self.root, real]) == self.root

    def chdir(self, virtual: str) -> None:
        """Set the virtual working folder (the caller has checked it is a folder)."""
        self.cwd = virtual
