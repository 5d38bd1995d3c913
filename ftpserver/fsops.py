"""Low-level local file operations, and the one place ``OSError`` becomes a reply.

* :func:`os_error` maps an ``OSError`` to a :class:`ProtocolError` whose text
  names the *virtual* path, never the server's real one (every storage
  backend raises ``OSError`` codes, whatever its disk).
* :func:`rename_noreplace` renames without replacing what is already there.
* :func:`list_entries` streams a folder listing without holding it whole;
  :func:`scan_entries` gives each entry's status with it.
* :func:`remove_folder` removes an empty folder and says why one that holds
  only uploads in progress is not empty.
* :func:`file_size` and :func:`entry` read what a listing shows.

The local storage backend (:mod:`ftpserver.storage.local`) is built on these.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterator
from typing import cast

from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.storage.base import Entry
from ftpserver.storage.paths import is_reserved, is_temporary, printable

__all__ = [
    "entry",
    "file_size",
    "list_entries",
    "os_error",
    "remove_folder",
    "rename_noreplace",
    "scan_entries",
]

_ERRNO: dict[int, tuple[ErrorCode, str]] = {
    errno.ENOENT: (ErrorCode.NOT_FOUND, "no such file or folder"),
    errno.EACCES: (ErrorCode.PERMISSION_DENIED, "permission denied on the server"),
    errno.EPERM: (ErrorCode.PERMISSION_DENIED, "permission denied on the server"),
    errno.EISDIR: (ErrorCode.IS_DIRECTORY, "is a folder"),
    errno.ENOTDIR: (ErrorCode.NOT_DIRECTORY, "not a folder"),
    errno.EEXIST: (ErrorCode.EXISTS, "already exists"),
    errno.ENOTEMPTY: (ErrorCode.EXISTS, "folder not empty"),
    errno.EINVAL: (ErrorCode.BAD_REQUEST, "cannot move a folder into itself"),
    errno.EXDEV: (ErrorCode.IO_ERROR, "cannot move across the server's filesystems"),
    errno.ENOSPC: (ErrorCode.NO_SPACE, "no space left on the server"),
    errno.EDQUOT: (ErrorCode.NO_SPACE, "disk quota exceeded on the server"),
    errno.ENAMETOOLONG: (ErrorCode.PATH_TOO_LONG, "name too long"),
    errno.ELOOP: (ErrorCode.BAD_PATH, "too many levels of symbolic links"),
}


def os_error(exc: OSError, subject: str | None) -> ProtocolError:
    """The protocol error for ``exc``; ``subject`` is the virtual path the client named."""
    code, text = _ERRNO.get(exc.errno or 0, (ErrorCode.IO_ERROR, "server file error"))
    return ProtocolError(code, f"{text}: {subject}" if subject else text)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1  # from <linux/fs.h>


def _load_renameat2() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a C library older than glibc 2.28
        return None
    path, fd = ctypes.c_char_p, ctypes.c_int
    function.argtypes = [fd, path, fd, path, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast("Callable[..., int]", function)


_renameat2 = _load_renameat2()


def rename_noreplace(source: str, target: str) -> None:
    """Rename ``source`` to ``target``; ``FileExistsError`` if ``target`` exists.

    On Linux the kernel checks and renames in one step (``renameat2`` with
    ``RENAME_NOREPLACE``), so of two sessions moving onto one name at once
    exactly one succeeds and nothing is overwritten.  Where that is not
    available (another system, or a filesystem that refuses the flag) the
    check comes first and a race remains possible.
    """
    if _renameat2 is not None:
        done = _renameat2(
            _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE
        )
        if done == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code))
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
    os.rename(source, target)


_KINDS = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "link"}


def entry(name: str, st: os.stat_result) -> Entry:
    """The listing entry for ``st`` under ``name``; a symlink is ``link``."""
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
    return Entry(printable(name), kind, st.st_size if kind == "file" else 0, int(st.st_mtime))


def file_size(path: str) -> int:
    """Size of a regular file at ``path`` (not following a symlink); 0 for anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def list_entries(real_dir: str) -> Iterator[Entry]:
    """Entries of a folder one by one, hiding the server's own files."""
    return (found for found, _ in scan_entries(real_dir))


def scan_entries(folder: str | int) -> Iterator[tuple[Entry, os.stat_result]]:
    """Entries of a folder (its path, or an open folder's descriptor) with their status.

    The status is ``lstat``'s (a link is not followed); the server's own
    files are hidden, and a name gone meanwhile is left out.
    """
    with os.scandir(folder) as scan:
        for item in scan:
            if is_reserved(item.name):
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield entry(item.name, st), st


def remove_folder(real: str, virtual: str) -> None:
    """Remove the empty folder ``real``; ``virtual`` names it in errors.

    A folder that holds nothing but uploads in progress looks empty in a
    listing, so its error says why it cannot go yet.
    """
    try:
        os.rmdir(real)
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY and _only_uploads(real):
            raise ProtocolError(
                ErrorCode.EXISTS, f"an upload into this folder is in progress: {virtual}"
            ) from None
        raise


def _only_uploads(folder: str) -> bool:
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return bool(names) and all(is_temporary(name) for name in names)
