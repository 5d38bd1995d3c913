"""Hashing many local files at once, on more than one core where that is safe.

``mirror -c`` hashes every file of the local tree, and most of that time is
the kernel copying the file's pages and BLAKE3 running over them: one core's
work per file, with little Python.  Threads do not help here (every system
call hands the GIL over; docs/PERFORMANCE.md, "Trees and slow links"), so
:func:`hash_files` forks helper processes, each hashing its share of the
files (every ``n``-th one) into a shared anonymous memory map, while this
process hashes its own share.  On the benchmark's two cores that halves the
hashing of a 2,000-file tree.

Forking is done only where it is safe and pays: on Linux, with at least
:data:`FORK_FROM` files, and only while this process has a single thread
(a child of a threaded process may find a lock held forever, and Python
3.12 warns of it).  A helper touches nothing but the files and its slots, and
leaves with ``os._exit``.  If one fails or cannot be started, this process
hashes that share itself, so the answer never depends on the helpers.
"""

from __future__ import annotations

import mmap
import os
import signal
import stat
import struct
import sys
import threading
from collections.abc import Callable

from ftpproto.digest import READ_PIECE, new_hasher
from ftpproto.splicing import hash_fd

__all__ = ["FORK_FROM", "Hashed", "hash_file", "hash_files"]

FORK_FROM = 256  # files: for fewer, forking costs more than it saves
MOST_HELPERS = 3
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# a slot per file: what is known (below), size, modification time, raw digest
_SLOT = struct.Struct("<Bqq32s")
_UNKNOWN, _STATUS, _DIGEST = 0, 1, 2

Hashed = tuple[int, int, str | None]  # size, modification time (s), digest (None: too big)


def hash_file(path: str, buffer: memoryview, most: int | None = None) -> Hashed | None:
    """The regular file ``path`` (never a link followed): size, time and digest; None if unread.

    The size and time are the open file's, so they describe the bytes
    hashed.  A file over ``most`` bytes is not read (its digest is None);
    one that cannot be opened, is no regular file or shrank meanwhile gives
    None.  Read with ``os.preadv`` into ``buffer`` (reused for every file).
    """
    try:
        fd = os.open(path, _OPEN)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        size, mtime = st.st_size, int(st.st_mtime)
        if most is not None and size > most:
            return size, mtime, None
        hasher = new_hasher()
        if hash_fd(hasher, fd, 0, size, buffer) < size:
            return None  # shorter than it was a moment ago
        return size, mtime, hasher.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def hash_files(
    paths: list[str], most: int | None = None, beside: Callable[[], object] | None = None
) -> list[Hashed | None]:
    """:func:`hash_file` of every path, in order; shared with forked helpers where that pays.

    ``beside`` is called once the helpers are started, before this process
    hashes its share: the place to start a thread that works meanwhile.
    """
    shares = _shares(len(paths))
    try:  # anonymous and shared: what a helper writes is seen here
        slots = mmap.mmap(-1, len(paths) * _SLOT.size) if shares > 1 else None
    except OSError:
        slots = None  # no memory to share: hashed here alone
    if slots is None:
        if beside is not None:
            beside()
        buffer = memoryview(bytearray(READ_PIECE))
        return [hash_file(path, buffer, most) for path in paths]
    with slots:
        job = _SharedJob(paths, most, shares, slots)
        helpers: dict[int, int] = {}  # pid -> share
        try:
            for share in range(1, shares):
                pid = job.fork_helper(share)
                if pid:
                    helpers[pid] = share
            if beside is not None:
                beside()
            job.hash_share(0)
            missed = [share for share in range(1, shares) if share not in helpers.values()]
            for pid in list(helpers):  # by pid: other children of this process are not ours
                if os.waitpid(pid, 0)[1] != 0:
                    missed.append(helpers[pid])
                del helpers[pid]
            for share in missed:
                job.hash_share(share)
        finally:
            for pid in helpers:  # interrupted: no helper is left behind
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        return [job.result(index) for index in range(len(paths))]


def _shares(count: int) -> int:
    """How many processes hash ``count`` files: 1 unless forking pays and is safe."""
    if count < FORK_FROM or sys.platform != "linux" or threading.active_count() != 1:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MOST_HELPERS + 1))


class _SharedJob:
    """Files hashed in ``shares`` shares (every ``shares``-th path) into a slot each."""

    def __init__(self, paths: list[str], most: int | None, shares: int, slots: mmap.mmap) -> None:
        self.paths = paths
        self.most = most
        self.shares = shares
        self.slots = slots

    def fork_helper(self, share: int) -> int:
        """Fork a helper hashing ``share``; its pid, or 0 if none could be started.

        Ctrl-C is held back across the fork, so the helper is inside its
        ``try`` before a ``KeyboardInterrupt`` can reach it: it then leaves
        at once, and never runs this process's code.
        """
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        pid = -1
        try:
            pid = os.fork()
        except OSError:
            pass  # no helper: this process hashes that share too
        finally:
            if pid != 0:  # this process; the helper lets Ctrl-C through inside its try
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if pid != 0:
            return max(pid, 0)
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            self.hash_share(share)
            code = 0
        finally:
            os._exit(code)  # no atexit handlers, no flushing of this process's buffers

    def hash_share(self, share: int) -> None:
        """Hash every ``shares``-th path from index ``share`` into its slot."""
        buffer = memoryview(bytearray(READ_PIECE))
        pack = _SLOT.pack_into
        for index in range(share, len(self.paths), self.shares):
            hashed = hash_file(self.paths[index], buffer, self.most)
            offset = index * _SLOT.size
            if hashed is None:
                pack(self.slots, offset, _UNKNOWN, 0, 0, b"")
                continue
            size, mtime, digest = hashed
            if digest is None:
                pack(self.slots, offset, _STATUS, size, mtime, b"")
            else:
                pack(self.slots, offset, _DIGEST, size, mtime, bytes.fromhex(digest))

    def result(self, index: int) -> Hashed | None:
        """What the slot of the path at ``index`` holds."""
        known, size, mtime, raw = _SLOT.unpack_from(self.slots, index * _SLOT.size)
        if known == _UNKNOWN:
            return None
        return size, mtime, raw.hex() if known == _DIGEST else None
