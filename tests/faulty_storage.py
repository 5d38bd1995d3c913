"""A storage that fails on purpose: :class:`LocalStorage` with faults at chosen points.

The fault tests install it with :func:`install` (the server's
``storage_factory`` hook), then say what fails with :meth:`Faults.fail`:

* ``write`` - the upload's writes (and splices) fail with the errno once
  ``after`` bytes went into the upload's file, with a short write first, as
  a filling disk does;
* ``fsync`` - flushing a finished upload;
* ``create`` (starting an upload), ``mkdir``, ``rmdir``, ``remove``
  (also inside ``remove_tree``) and ``rename`` - for the virtual paths a
  predicate picks.

Every other call is the real :class:`LocalStorage`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ftpfiles.files import GuardedWriter
from ftpproto.digest import Hasher
from ftpserver.server import FileTransferServer, local_storage
from ftpserver.storage.base import AbortedOnExit, Resume, Storage
from ftpserver.storage.local import LocalStorage
from ftpserver.storage.localfiles import LocalUpload
from ftpserver.users import User

__all__ = ["FailingWriter", "Faults", "FaultyStorage", "FaultyUpload", "install"]


@dataclass
class _Rule:
    code: int
    where: Callable[[str], bool]
    after: int = 0


@dataclass
class Faults:
    """Which storage operations fail, and a record of the failures."""

    armed: bool = True
    rules: dict[str, _Rule] = field(default_factory=dict)
    struck: list[str] = field(default_factory=list)

    def fail(
        self,
        point: str,
        code: int,
        where: Callable[[str], bool] = lambda virtual: True,
        after: int = 0,
    ) -> Faults:
        """Make ``point`` fail with ``code`` for the virtual paths ``where`` picks."""
        self.rules[point] = _Rule(code, where, after)
        return self

    def rule(self, point: str, virtual: str) -> _Rule | None:
        rule = self.rules.get(point)
        return rule if self.armed and rule is not None and rule.where(virtual) else None

    def check(self, point: str, *virtuals: str) -> None:
        """Raise the planned error if ``point`` fails for any of ``virtuals``."""
        for virtual in virtuals:
            rule = self.rule(point, virtual)
            if rule is not None:
                self.struck.append(f"{point} {virtual}")
                raise OSError(rule.code, os.strerror(rule.code), virtual)


class FailingWriter(GuardedWriter):
    """The upload's writer: after ``after`` bytes every write and splice fails."""

    def __init__(self, fd: int, faults: Faults, virtual: str) -> None:
        super().__init__(fd)
        self.faults = faults
        self.virtual = virtual
        self.written = 0

    def _room(self) -> int | None:
        """Bytes that may still go (raising when none), or None: not faulted."""
        rule = self.faults.rule("write", self.virtual)
        if rule is None:
            return None
        room = rule.after - self.written
        if room <= 0:
            self.faults.check("write", self.virtual)
        return room

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view and self.error is None:
            try:
                room = self._room()
            except OSError as exc:
                self.error = exc
                return
            if room is None:
                super().write(view)
                return
            piece = view[:room]  # a short write, as a filling disk does
            super().write(piece)
            self.written += len(piece)
            view = view[len(piece) :]

    def splice_from(self, pipe: int, count: int) -> int:
        try:
            room = self._room()
        except OSError as exc:
            self.error = exc
            return 0
        if room is None:
            return super().splice_from(pipe, count)
        moved = super().splice_from(pipe, min(count, room))
        self.written += moved
        return moved


class FaultyUpload(AbortedOnExit):
    """A :class:`LocalUpload` whose creation, writes and fsync may fail."""

    remote_commit = False

    def __init__(self, inner: LocalUpload, faults: Faults, virtual: str) -> None:
        self.inner = inner
        self.faults = faults
        self.virtual = virtual

    @property
    def keep_partial(self) -> bool:
        return self.inner.keep_partial

    @keep_partial.setter
    def keep_partial(self, value: bool) -> None:
        self.inner.keep_partial = value

    @property
    def sink(self) -> GuardedWriter:
        return self.inner.sink

    def start(self, size: int, resume: Resume | None) -> tuple[int, Hasher]:
        self.faults.check("create", self.virtual)
        started = self.inner.start(size, resume)
        self.inner.writer = FailingWriter(self.inner.sink.fd, self.faults, self.virtual)
        return started

    def commit(self, hexdigest: str) -> None:
        if self.inner.fsync and self.inner.sink.error is None:
            self.faults.check("fsync", self.virtual)
        self.inner.commit(hexdigest)

    def abort(self) -> None:
        self.inner.abort()


class FaultyStorage(LocalStorage):
    """:class:`LocalStorage` that fails where :attr:`faults` says."""

    faults: Faults

    def mkdir(self, virtual: str, parents: bool = False) -> None:
        self.faults.check("mkdir", virtual)
        super().mkdir(virtual, parents)

    def rmdir(self, virtual: str) -> None:
        self.faults.check("rmdir", virtual)
        super().rmdir(virtual)

    def remove(self, virtual: str) -> int:
        self.faults.check("remove", virtual)
        return super().remove(virtual)

    def remove_tree(self, virtual: str) -> tuple[int, int, int]:
        self.faults.check("remove", virtual)
        return super().remove_tree(virtual)

    def rename(self, old: str, new: str, into_folder: bool = False, replace: bool = False) -> str:
        self.faults.check("rename", old, new)
        return super().rename(old, new, into_folder, replace)

    def open_upload(self, virtual: str) -> FaultyUpload:  # type: ignore[override]
        return FaultyUpload(super().open_upload(virtual), self.faults, virtual)


def install(server: FileTransferServer, faults: Faults) -> Faults:
    """Serve every session of ``server`` from here on with a :class:`FaultyStorage`."""

    def factory(srv: FileTransferServer, user: User) -> Storage:
        base = local_storage(srv, user)
        assert isinstance(base, LocalStorage)
        storage = FaultyStorage(
            user,
            base.account.ledger,
            base.digests,
            file_mode=base.file_mode,
            fsync=base.fsync,
            stale_after=base.stale_after,
        )
        storage.faults = faults
        return storage

    server.storage_factory = factory
    return faults
