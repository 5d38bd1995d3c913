"""The local storage backend: a user's home folder on this host's filesystem.

Every virtual path goes through the :class:`~ftpserver.jail.Jail` (``realpath``
and ``commonpath`` against the real home, symlink rules) before any ``os``
call, and nothing above this module sees a real path.  Uploads go through a
temporary file and an atomic rename (:class:`~ftpserver.storage.localfiles.LocalUpload`),
``mv`` through ``renameat2(RENAME_NOREPLACE)`` where the kernel has it, and
every change of how many bytes the home holds is made and reported to the
quota ledger under the home's lock (:class:`~ftpserver.storage.homeaccount.HomeAccount`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import stat
import time
from collections.abc import Iterator

from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.digests import DigestCache
from ftpserver.fsops import entry, file_size, list_entries, remove_folder, rename_noreplace
from ftpserver.jail import Jail
from ftpserver.state.ledger import QuotaLedger, Usage
from ftpserver.storage.base import Entry
from ftpserver.storage.homeaccount import HomeAccount
from ftpserver.storage.localfiles import LocalFolder, LocalReadHandle, LocalUpload, disk_free
from ftpserver.storage.paths import PARTIAL_DIR, is_temporary
from ftpserver.storage.temps import (
    UploadOwners,
    adopt,
    dead_owners,
    parse_temp,
    temps_in,
    wait_for_owners,
)
from ftpserver.users import User

__all__ = ["LocalStorage"]


def _loop(virtual: str) -> OSError:
    """What a symlink that never reaches a file raises (``realpath`` left it a link)."""
    return OSError(errno.ELOOP, os.strerror(errno.ELOOP), virtual)


class LocalStorage:
    """One user's home folder (see :class:`~ftpserver.storage.base.Storage`)."""

    def __init__(
        self,
        user: User,
        ledger: QuotaLedger,
        digests: DigestCache,
        *,
        file_mode: int = 0o644,
        fsync: bool = False,
        stale_after: float = 3600.0,
        owners: UploadOwners | None = None,
    ) -> None:
        self.user = user
        self.digests = digests
        self.file_mode = file_mode
        self.fsync = fsync
        self.stale_after = stale_after  # an upload's temp file untouched this long is left over
        self.owners = owners  # homes shared by the nodes of a cluster: ftpserver.storage.temps
        self.jail = Jail(user.home)
        self.account = HomeAccount(ledger, user.name, user.quota, self.jail.root, self.measure)

    # -- paths -----------------------------------------------------------------

    @property
    def cwd(self) -> str:
        return self.jail.cwd

    def virtual(self, path: str) -> str:
        return self.jail.virtual(path)

    def chdir(self, path: str) -> str:
        virtual, real = self.jail.resolve(path)
        if not stat.S_ISDIR(os.stat(real).st_mode):
            raise ProtocolError(ErrorCode.NOT_DIRECTORY, f"not a folder: {virtual}")
        self.jail.chdir(virtual)
        return virtual

    def prepare(self) -> None:
        os.makedirs(self.user.home, exist_ok=True)

    def _partial(self, virtual: str) -> str:
        """Where an interrupted upload to ``virtual`` is kept (inside the home)."""
        key = hashlib.sha256(virtual.encode("utf-8", "surrogatepass")).hexdigest()
        return os.path.join(self.jail.root, PARTIAL_DIR, key)

    # -- looking -----------------------------------------------------------------

    def stat(self, virtual: str) -> Entry:
        virtual, real = self.jail.resolve(virtual)
        st = os.lstat(real)
        if stat.S_ISLNK(st.st_mode):
            raise _loop(virtual)
        return entry(posixpath.basename(virtual), st)

    def listdir(self, virtual: str) -> Iterator[Entry]:
        virtual, real = self.jail.resolve(virtual)
        if stat.S_ISDIR(os.stat(real).st_mode):
            return list_entries(real)
        return iter([entry(posixpath.basename(virtual), os.lstat(real))])

    def kind(self, virtual: str) -> str:
        _, real = self.jail.resolve(virtual, follow=False)
        return entry("", os.lstat(real)).kind

    # -- changing ----------------------------------------------------------------

    def mkdir(self, virtual: str, parents: bool = False) -> None:
        _, real = self.jail.resolve(virtual)
        if parents:
            os.makedirs(real, exist_ok=True)
        else:
            os.mkdir(real)

    def rmdir(self, virtual: str) -> None:
        virtual, real = self.jail.resolve(virtual, follow=False)
        remove_folder(real, virtual)

    def remove(self, virtual: str) -> int:
        _, real = self.jail.resolve(virtual, follow=False)
        return self.account.remove([real])

    def remove_tree(self, virtual: str) -> tuple[int, int, int]:
        _, top = self.jail.resolve(virtual, follow=False)
        files = freed = 0
        folders = 1  # top itself
        for folder, dirs, names in os.walk(top, topdown=False, followlinks=False):
            doomed = []
            for name in names:
                path = os.path.join(folder, name)
                if is_temporary(name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    continue
                doomed.append(path)
            if doomed:
                freed += self.account.remove(doomed)
                files += len(doomed)
            for name in dirs:
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    os.unlink(path)
                    files += 1  # a link counts as a file, also one to a folder
                else:
                    os.rmdir(path)
                    folders += 1
        os.rmdir(top)
        return files, freed, folders

    def rename(self, old: str, new: str, into_folder: bool = False, replace: bool = False) -> str:
        old_virtual, old_real = self.jail.resolve(old, follow=False)
        os.lstat(old_real)
        new_virtual, new_real = self.jail.resolve(new)
        if into_folder and not os.path.isdir(new_real):
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no such folder: {new_virtual}")
        # With replace a symlink at the target is itself replaced, never followed.
        if os.path.isdir(new_real) and not os.path.islink(new_real):
            into = posixpath.join(new_virtual, posixpath.basename(old_virtual))
            new_virtual, new_real = self.jail.resolve(into, follow=not replace)
        elif replace:
            new_virtual, new_real = self.jail.resolve(new, follow=False)
        try:
            if replace:
                self.account.rename_over(old_real, new_real)
            else:
                rename_noreplace(old_real, new_real)
        except FileExistsError:
            raise ProtocolError(ErrorCode.EXISTS, f"already exists: {new_virtual}") from None
        return new_virtual

    def set_mtime(self, virtual: str, mtime: int) -> None:
        virtual, real = self.jail.resolve(virtual)
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            before = os.fstat(fd)
            if not (stat.S_ISREG(before.st_mode) or stat.S_ISDIR(before.st_mode)):
                raise ProtocolError(ErrorCode.BAD_PATH, f"not a regular file: {virtual}")
            known = self.digests.get(before, fd) if stat.S_ISREG(before.st_mode) else None
            os.utime(fd, ns=(before.st_atime_ns, mtime * 1_000_000_000))
            after = os.fstat(fd)
            if known is not None and after.st_size == before.st_size:
                self.digests.put(after, known, fd)  # same bytes, new stamp: no rehash later
        finally:
            os.close(fd)

    # -- transfers ---------------------------------------------------------------

    def open_read(self, virtual: str) -> LocalReadHandle:
        virtual, real = self.jail.resolve(virtual)
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder: {virtual}")
            raise ProtocolError(ErrorCode.BAD_PATH, f"not a regular file: {virtual}")
        return LocalReadHandle(fd, st, self.digests)

    @contextlib.contextmanager
    def tree_folder(self, virtual: str) -> Iterator[LocalFolder]:
        """The folder ``virtual``, resolved and opened once, for a tree (:class:`LocalFolder`)."""
        virtual, real = self.jail.resolve(virtual)
        folder = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield LocalFolder(folder, self.digests)
        finally:
            os.close(folder)

    def open_upload(self, virtual: str) -> LocalUpload:
        virtual, real, st, seen = self.jail.resolve_status(virtual)
        if not seen:  # (the jail's walk did not look at the name itself)
            try:
                st = os.lstat(real)
            except OSError:
                st = None
        if st is None:
            if not seen and not os.path.isdir(os.path.dirname(real)):
                parent = posixpath.dirname(virtual)
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no such folder: {parent}")
        elif stat.S_ISDIR(st.st_mode):
            raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder: {virtual}")
        elif stat.S_ISLNK(st.st_mode):  # a link that resolving left a link: a loop, not a target
            raise _loop(virtual)
        owner = self.owners.name if self.owners is not None else ""
        partial = self._partial(virtual)
        replaced = st.st_size if st is not None and stat.S_ISREG(st.st_mode) else 0
        return LocalUpload(
            self.account, self.digests, real, partial, self.file_mode, self.fsync, owner, replaced
        )

    def partial_size(self, virtual: str) -> int:
        virtual, real = self.jail.resolve(virtual)
        if self.owners is not None:  # a dead node's upload of it becomes the partial upload
            key = os.path.basename(self._partial(virtual))
            folder = os.path.dirname(real)
            found = wait_for_owners(
                self.owners, lambda: temps_in(folder, key), self.owners.lease + 1
            )
            adopt(self.account, os.path.join(self.jail.root, PARTIAL_DIR), found)
        try:
            return os.lstat(self._partial(virtual)).st_size
        except FileNotFoundError:
            return 0

    def remove_stale_partials(self, max_age: float) -> int:
        if self.owners is not None:
            self.adopt_orphans()
        deadline = time.time() - max_age
        folder = os.path.join(self.jail.root, PARTIAL_DIR)
        try:
            items = list(os.scandir(folder))
        except OSError:
            return 0
        removed = 0
        for item in items:
            with contextlib.suppress(OSError):
                if item.stat(follow_symlinks=False).st_mtime < deadline:
                    self.account.remove([item.path])
                    removed += 1
        return removed

    def adopt_orphans(self) -> int:
        """Keep the temporary uploads of dead nodes as partial uploads; how many."""
        assert self.owners is not None
        found = [t for folder, _, _ in os.walk(self.jail.root) for t in temps_in(folder)]
        dead = dead_owners(self.owners, found) if found else None
        if not dead:
            return 0
        return adopt(self.account, os.path.join(self.jail.root, PARTIAL_DIR), dead)

    # -- space -------------------------------------------------------------------

    def measure(self) -> int:
        """Bytes of regular files in the home, not counting temporary uploads.

        Temporary uploads untouched for ``stale_after`` seconds are left over
        from a crash and removed; live uploads write all the time.  On homes
        shared by a cluster, never one of a live node.
        """
        stale_before = time.time() - self.stale_after
        stale: list[str] = []
        total = 0
        for folder, _dirs, files in os.walk(self.jail.root):
            for name in files:
                path = os.path.join(folder, name)
                if not is_temporary(name):
                    total += file_size(path)
                    continue
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_mtime < stale_before:
                        stale.append(path)
        self._remove_temps(stale)
        return total

    def _remove_temps(self, paths: list[str]) -> None:
        """Remove left-over temporary uploads, except those of live nodes."""
        if paths and self.owners is not None:
            found = [parse_temp(os.path.basename(p), os.path.dirname(p)) for p in paths]
            dead = dead_owners(self.owners, [t for t in found if t is not None]) or set()
            paths = [p for p, t in zip(paths, found, strict=True) if t is None or t in dead]
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def free_space(self) -> int:
        return disk_free(self.jail.root)

    def usage(self) -> Usage:
        account = self.account
        free = self.free_space()
        return account.ask(lambda: account.ledger.usage(account.user, account.quota, free))
