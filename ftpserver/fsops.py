"""File operations the commands share, and the one place ``OSError`` becomes a reply.

* :class:`Upload` receives a file into a temporary file in the target folder
  and renames it into place only when complete and verified; every other way
  out removes the temporary file, so an older file of the same name is never
  touched and no half-written file is ever visible.
* :func:`list_entries` streams a folder listing without holding it whole.
* :func:`os_error` maps an ``OSError`` to a :class:`ProtocolError` whose text
  names the *virtual* path, never the server's real one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from types import TracebackType

from ftpproto.channel import GuardedWriter
from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.jail import RESERVED_PREFIX, Jail, is_reserved

__all__ = ["Entry", "Upload", "list_entries", "os_error", "stat_entry"]

Entry = tuple[str, str, int, int]  # name, type (file/dir/link/other), size, mtime

_ERRNO: dict[int, tuple[ErrorCode, str]] = {
    errno.ENOENT: (ErrorCode.NOT_FOUND, "no such file or folder"),
    errno.EACCES: (ErrorCode.PERMISSION_DENIED, "permission denied on the server"),
    errno.EPERM: (ErrorCode.PERMISSION_DENIED, "permission denied on the server"),
    errno.EISDIR: (ErrorCode.IS_DIRECTORY, "is a folder"),
    errno.ENOTDIR: (ErrorCode.NOT_DIRECTORY, "not a folder"),
    errno.EEXIST: (ErrorCode.EXISTS, "already exists"),
    errno.ENOTEMPTY: (ErrorCode.EXISTS, "folder not empty"),
    errno.ENOSPC: (ErrorCode.NO_SPACE, "no space left on the server"),
    errno.EDQUOT: (ErrorCode.NO_SPACE, "disk quota exceeded on the server"),
    errno.ENAMETOOLONG: (ErrorCode.PATH_TOO_LONG, "name too long"),
    errno.ELOOP: (ErrorCode.BAD_PATH, "too many levels of symbolic links"),
}


def os_error(exc: OSError, subject: str | None) -> ProtocolError:
    """The protocol error for ``exc``; ``subject`` is the virtual path the client named."""
    code, text = _ERRNO.get(exc.errno or 0, (ErrorCode.IO_ERROR, "server file error"))
    return ProtocolError(code, f"{text}: {subject}" if subject else text)


class Upload:
    """A temporary file next to ``target`` that becomes ``target`` on :meth:`commit`.

    Use as a context manager: leaving the block without a commit removes the
    temporary file.
    """

    def __init__(self, target: str, mode: int = 0o644, fsync: bool = True) -> None:
        self.target = target
        self.fsync = fsync
        folder = os.path.dirname(target)
        token = os.urandom(8).hex()
        self.temp = os.path.join(folder, f"{RESERVED_PREFIX}{token}")
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        self.writer = GuardedWriter(fd)
        self._done = False

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()

    def commit(self) -> None:
        """Flush, optionally fsync, and rename over the target; raise a write error seen."""
        if self.writer.error is not None:
            raise self.writer.error
        if self.fsync:
            os.fsync(self.writer.fd)
        os.close(self.writer.fd)
        self._done = True
        os.replace(self.temp, self.target)

    def discard(self) -> None:
        """Remove the temporary file unless it was committed."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            os.close(self.writer.fd)
        with contextlib.suppress(OSError):
            os.unlink(self.temp)


def stat_entry(jail: Jail, name: str, real: str) -> Entry:
    """One listing entry; a symlink out of the home shows as ``link`` and is not followed."""
    st = os.lstat(real)
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(real)
        if jail.contains(target):
            with contextlib.suppress(OSError):
                st = os.stat(target)
    mode = st.st_mode
    kind = (
        "dir"
        if stat.S_ISDIR(mode)
        else "file"
        if stat.S_ISREG(mode)
        else "link"
        if stat.S_ISLNK(mode)
        else "other"
    )
    size = st.st_size if kind == "file" else 0
    return _printable(name), kind, size, int(st.st_mtime)


def list_entries(jail: Jail, real_dir: str) -> Iterator[Entry]:
    """Entries of a folder one by one, hiding the server's temporary files."""
    with os.scandir(real_dir) as scan:
        for item in scan:
            if is_reserved(item.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                yield stat_entry(jail, item.name, item.path)


def _printable(name: str) -> str:
    """A name that can be sent as UTF-8 (undecodable bytes become U+FFFD)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
