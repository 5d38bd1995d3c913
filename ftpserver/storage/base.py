"""The storage interface: what a session may do with its user's files.

One :class:`Storage` per logged-in user.  It takes *virtual* paths only
(absolute, normalised by :meth:`Storage.virtual`), does its own jailing, and
never hands out a real path, an ``os.stat_result`` or a key: results are the
small value types below.  Errors are :class:`~ftpproto.errors.ProtocolError`
or ``OSError`` (which the session's dispatcher turns into a reply in one
place, :func:`ftpserver.fsops.os_error`).

A backend keeps the quota ledger (:class:`~ftpserver.state.ledger.QuotaLedger`)
exact: every change of how many bytes a home holds is reported to it in the
same step as the change itself.  Optional fast paths are capabilities the
caller asks for, never ``isinstance`` checks: a :class:`ReadHandle` may have a
file descriptor (``sendfile``), an :class:`UploadHandle`'s :attr:`sink` may be
a :class:`~ftpfiles.files.GuardedWriter` on a file (``splice``).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import NamedTuple, Protocol, TypeVar

from ftpproto.digest import Hasher
from ftpproto.handshake import Resume
from ftpserver.state.ledger import Usage

__all__ = ["Entry", "ReadHandle", "Resume", "Sink", "Storage", "UploadHandle"]


class Entry(NamedTuple):
    """One listing entry: ``kind`` is ``file``, ``dir``, ``link`` or ``other``."""

    name: str
    kind: str
    size: int  # bytes for a file, 0 otherwise
    mtime: int  # seconds since the epoch


_Handle = TypeVar("_Handle")


class ClosedOnExit:
    """A handle that ``with`` closes at the end of the block (``close()``)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Handle) -> _Handle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AbortedOnExit:
    """An upload that ``with`` gives up at the end of the block unless committed (``abort()``)."""

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Handle) -> _Handle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


class Sink(Protocol):
    """Where received file data goes."""

    def write(self, data: bytes | memoryview, /) -> object: ...


class ReadHandle(Protocol):
    """One version of a regular file, open for reading.  Use as a context manager."""

    @property
    def size(self) -> int:
        """The size of the version that was opened."""
        ...

    @property
    def version(self) -> tuple[int, ...]:
        """What identifies this version of the content; it changes when the content does."""
        ...

    def fileno(self) -> int | None:
        """A file descriptor for ``sendfile``/``pread``, or None (read with :meth:`readinto`)."""
        ...

    def readinto(self, buffer: memoryview, /) -> int:
        """Read the next bytes into ``buffer`` from the current position; 0 at the end."""
        ...

    def seek(self, offset: int, /) -> None:
        """Set the position :meth:`readinto` reads from."""
        ...

    def changed(self) -> bool:
        """Whether the file was written since it was opened (its data is no longer that version)."""
        ...

    def stored_digest(self) -> str | None:
        """The remembered hex digest of this version, or None if not known."""
        ...

    def store_digest(self, hexdigest: str) -> None:
        """Remember the hex digest of this version."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> ReadHandle: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class UploadHandle(Protocol):
    """An upload in progress, invisible until :meth:`commit`.  Use as a context manager.

    Leaving the block without a commit discards it, or, if :attr:`keep_partial`
    is set and bytes arrived, keeps them as the partial upload of its target.
    """

    keep_partial: bool
    # Whether commit() waits on a remote store (S3): a session with pipelined
    # uploads then commits on a helper thread (ftpserver.finishing) while it
    # reads the next file.  A local commit is a few system calls, cheaper
    # than handing it to another thread under the interpreter lock.
    remote_commit: bool

    def start(self, size: int, resume: Resume | None) -> tuple[int, Hasher]:
        """Reserve space and prepare to receive; return ``(offset, hasher)``.

        With ``resume=(offset, prefix_digest)`` a kept partial upload is taken
        over if it holds exactly ``offset`` bytes with that digest, and the
        hasher already covers them; otherwise the upload starts at 0 (the
        rule is :func:`ftpproto.handshake.upload_start`'s).
        """
        ...

    @property
    def sink(self) -> Sink:
        """Where the data goes (after :meth:`start`)."""
        ...

    def commit(self, hexdigest: str) -> None:
        """Make the upload the target's content; raise a write error seen meanwhile."""
        ...

    def abort(self) -> None:
        """Give the upload up (or keep it as partial, see above); safe to call twice."""
        ...

    def __enter__(self) -> UploadHandle: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Storage(Protocol):
    """One user's files, by virtual path.  Every method may raise ProtocolError or OSError."""

    @property
    def cwd(self) -> str:
        """The session's virtual working folder."""
        ...

    def virtual(self, path: str) -> str:
        """The absolute virtual path for a client's ``path`` (checked, not looked up)."""
        ...

    def chdir(self, path: str) -> str:
        """Make the folder ``path`` the working folder; return its virtual path."""
        ...

    def prepare(self) -> None:
        """Make the home ready for a session (create it if missing)."""
        ...

    def stat(self, virtual: str) -> Entry:
        """The entry for ``virtual``, a symlink inside the home followed."""
        ...

    def listdir(self, virtual: str) -> Iterator[Entry]:
        """The entries of a folder one by one (no symlink followed), or the one entry of a file.

        A missing path or a symlink loop is raised by the call; a folder that
        cannot be read may raise during the iteration (the dispatcher answers
        either way, after any entries already sent).
        """
        ...

    def mkdir(self, virtual: str, parents: bool = False) -> None:
        """Create a folder; with ``parents`` also missing parents, and an existing one is fine."""
        ...

    def rmdir(self, virtual: str) -> None:
        """Remove an empty folder (a symlink is not followed)."""
        ...

    def kind(self, virtual: str) -> str:
        """The kind of ``virtual`` itself (a symlink not followed): as :attr:`Entry.kind`."""
        ...

    def remove(self, virtual: str) -> int:
        """Remove a file or symlink (never followed); the bytes freed."""
        ...

    def remove_tree(self, virtual: str) -> tuple[int, int, int]:
        """Remove a folder and all it holds, never following a symlink.

        Returns ``(files, bytes, folders)`` removed; ``virtual`` itself counts
        as a folder.  A symlink is removed as a link and counts as one file of
        0 bytes, also one that points to a folder.
        """
        ...

    def rename(self, old: str, new: str, into_folder: bool = False, replace: bool = False) -> str:
        """Move ``old`` (a symlink is moved, not followed) to ``new``; the new virtual path.

        If ``new`` is a folder ``old`` moves into it; with ``into_folder``
        (the client wrote ``NEW/``) it must be one.  Without ``replace`` an
        existing target is EXISTS, also one that appears meanwhile.  With
        ``replace`` an existing file (or empty folder, by a folder) is
        replaced atomically, so the name always holds the old or the new
        content; a symlink at the target is replaced itself, never followed;
        the bytes of what was replaced stop counting towards the quota.
        """
        ...

    def set_mtime(self, virtual: str, mtime: int) -> None:
        """Set the modification time of a file or folder (a symlink inside the home followed).

        ``mtime`` is in seconds since the epoch.  The content does not change,
        so a digest remembered for it stays valid (a backend keeps it).
        """
        ...

    def open_read(self, virtual: str) -> ReadHandle:
        """Open a regular file for reading; folders and special files are refused."""
        ...

    def open_upload(self, virtual: str) -> UploadHandle:
        """An upload to ``virtual`` (whose folder must exist); not started yet."""
        ...

    def partial_size(self, virtual: str) -> int:
        """Bytes of the kept partial upload to ``virtual``; 0 if none."""
        ...

    def remove_stale_partials(self, max_age: float) -> int:
        """Remove partial uploads untouched for ``max_age`` seconds; how many."""
        ...

    def measure(self) -> int:
        """Bytes the home holds, measured now (stale temporary uploads are removed)."""
        ...

    def free_space(self) -> int:
        """Bytes the backend can still take."""
        ...

    def usage(self) -> Usage:
        """The user's quota figures (the home is measured first if the ledger has none)."""
        ...
