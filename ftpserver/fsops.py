"""File operations the commands share, and the one place ``OSError`` becomes a reply.

* :class:`Upload` receives a file into a temporary file in the target folder
  and renames it into place only when complete and verified.  A connection
  lost mid-upload saves what arrived as a *partial upload* (under the home's
  ``.ftp-partial`` folder, keyed by the virtual path) for ``put`` with an
  offset to resume; every other failure removes the temporary file.  An older
  file of the same name is never touched and nothing half-written is visible.
* :func:`list_entries` streams a folder listing without holding it whole.
* :func:`remove_tree` deletes a folder tree without following symlinks.
* :func:`rename_noreplace` renames without replacing what is already there.
* :func:`os_error` maps an ``OSError`` to a :class:`ProtocolError` whose text
  names the *virtual* path, never the server's real one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import cast

from ftpproto.channel import GuardedWriter, file_digest
from ftpproto.digest import Hasher, new_hasher
from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.digests import DigestCache
from ftpserver.jail import PARTIAL_DIR, TEMP_PREFIX, Jail, is_reserved, is_temporary
from ftpserver.quota import Reservation, file_size
from ftpserver.state.quotas import Quotas
from ftpserver.users import User

__all__ = [
    "Entry",
    "Upload",
    "list_entries",
    "os_error",
    "partial_path",
    "remove_folder",
    "remove_tree",
    "rename_noreplace",
    "stat_entry",
    "sweep_partials",
]

Entry = tuple[str, str, int, int]  # name, type (file/dir/link/other), size, mtime

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


def partial_path(jail: Jail, virtual: str) -> str:
    """Where an interrupted upload to ``virtual`` is kept (inside the user's home)."""
    key = hashlib.sha256(virtual.encode("utf-8", "surrogatepass")).hexdigest()
    return os.path.join(jail.root, PARTIAL_DIR, key)


class Upload:
    """A temporary file next to ``target`` that becomes ``target`` on :meth:`commit`.

    Use as a context manager.  Leaving the block without a commit removes the
    temporary file, or, if :attr:`keep_partial` is set and bytes arrived,
    saves them as the partial upload for ``target``.
    """

    def __init__(
        self, book: Quotas, user: User, target: str, partial: str, mode: int, fsync: bool
    ) -> None:
        self.book = book
        self.user = user
        self.target = target
        self.partial = partial
        self.mode = mode
        self.fsync = fsync
        self.temp = os.path.join(os.path.dirname(target), f"{TEMP_PREFIX}{os.urandom(8).hex()}")
        self.keep_partial = False
        self.reservation: Reservation | None = None
        self.writer: GuardedWriter | None = None
        self._done = False

    def start(self, size: int, resume: tuple[int, str] | None) -> tuple[int, Hasher]:
        """Create the temporary file and reserve space; return ``(offset, hasher)``.

        With ``resume=(offset, prefix_digest)`` the saved partial upload is
        taken over if it holds exactly ``offset`` bytes with that digest; the
        hasher then already covers them.  Otherwise the upload starts at 0.
        """
        claimed = 0
        if resume is not None:
            with contextlib.suppress(FileNotFoundError):
                claimed = self.book.claim(self.user, self.partial, self.temp)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (0 if claimed else os.O_EXCL)
        fd = os.open(self.temp, flags, self.mode)
        self.writer = GuardedWriter(fd)
        offset, hasher = 0, new_hasher()
        if resume is not None and claimed == resume[0] <= size:
            with open(fd, "rb", buffering=0, closefd=False) as reader:
                prefix, _ = file_digest(reader, 0, claimed)
            if prefix.hexdigest() == resume[1]:
                offset, hasher = claimed, prefix
        if os.fstat(fd).st_size != offset:
            # Only when needed: on ext4, truncating a file makes its close flush it.
            os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        self.keep_partial = offset > 0
        replaced = file_size(self.target)
        self.reservation = self.book.reserve(self.user, size, replaced, self.temp)
        self.keep_partial = True
        return offset, hasher

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish(commit=False)

    def commit(self, digests: DigestCache | None = None, hexdigest: str = "") -> None:
        """Flush, optionally fsync, and rename over the target; raise a write error seen.

        With ``digests`` the committed file's digest is remembered, so its
        first download need not hash it again.
        """
        assert self.writer is not None
        if self.writer.error is not None:
            self.keep_partial = False
            raise self.writer.error
        if self.fsync:
            os.fsync(self.writer.fd)
        self._finish(commit=True, digests=digests, hexdigest=hexdigest)
        with contextlib.suppress(FileNotFoundError):
            self.book.remove(self.user, self.partial)

    def _finish(
        self, commit: bool, digests: DigestCache | None = None, hexdigest: str = ""
    ) -> None:
        if self._done:
            return
        self._done = True
        fd = self.writer.fd if self.writer is not None else -1
        # The reservation goes back in the same quota step that counts the
        # file (replace(release=...)), or on its own if nothing is kept.
        reservation, self.reservation = self.reservation, None
        try:
            if commit:
                held, reservation = reservation, None
                self.book.replace(self.user, self.temp, self.target, enforce=True, release=held)
                if digests is not None and hexdigest:
                    digests.put(os.fstat(fd), hexdigest, fd)
            elif self.keep_partial and file_size(self.temp) > 0:
                os.makedirs(os.path.dirname(self.partial), exist_ok=True)
                held, reservation = reservation, None
                self.book.replace(self.user, self.temp, self.partial, release=held)
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.temp)
            if reservation is not None:
                self.book.release(reservation)


_KINDS = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "link"}


def _entry(name: str, st: os.stat_result) -> Entry:
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "other")
    return _printable(name), kind, st.st_size if kind == "file" else 0, int(st.st_mtime)


def stat_entry(name: str, real: str) -> Entry:
    """One listing entry; a symlink is shown as ``link`` and not followed."""
    return _entry(name, os.lstat(real))


def list_entries(real_dir: str) -> Iterator[Entry]:
    """Entries of a folder one by one, hiding the server's own files."""
    with os.scandir(real_dir) as scan:
        for item in scan:
            if is_reserved(item.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                yield _entry(item.name, item.stat(follow_symlinks=False))


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


def remove_tree(book: Quotas, user: User, top: str) -> tuple[int, int]:
    """Delete the folder ``top`` and everything in it, never following a symlink.

    Returns ``(files, bytes)`` removed.  Symlinks are removed as links.
    """
    files = freed = 0
    for folder, dirs, names in os.walk(top, topdown=False, followlinks=False):
        for name in names:
            path = os.path.join(folder, name)
            if is_temporary(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            freed += book.remove(user, path)
            files += 1
        for name in dirs:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                os.unlink(path)
            else:
                os.rmdir(path)
    os.rmdir(top)
    return files, freed


def sweep_partials(book: Quotas, users: list[User], max_age: float) -> int:
    """Remove partial uploads untouched for ``max_age`` seconds; returns how many."""
    removed = 0
    deadline = time.time() - max_age
    for user in users:
        folder = os.path.join(os.path.realpath(user.home), PARTIAL_DIR)
        try:
            items = list(os.scandir(folder))
        except OSError:
            continue
        for item in items:
            with contextlib.suppress(OSError):
                if item.stat(follow_symlinks=False).st_mtime < deadline:
                    book.remove(user, item.path)
                    removed += 1
    return removed


def _printable(name: str) -> str:
    """A name that can be sent as UTF-8 (undecodable bytes become U+FFFD)."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
