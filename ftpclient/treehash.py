"""Hashing many local files at once, on more than one core where that is safe.

``mirror -c`` hashes every file of the local tree, and most of that time is
the kernel copying the file's pages and BLAKE3 running over them: one core's
work per file, with little Python.  Threads do not help here (every system
call hands the GIL over; docs/PERFORMANCE.md, "Trees and slow links"), so
:func:`hash_files` forks helper processes that hash files into a shared
anonymous memory map while this process hashes too.  The files are dealt
in chunks through a pipe filled before the fork: each process reads the
next chunk's number when it is free, so one that gets less CPU (this one
also reads the server's answer meanwhile) does less of the work instead of
keeping the others waiting.  On the benchmark's two cores that halves the
hashing of a 2,000-file tree.

Forking is done only where it is safe and pays: on Linux, with at least
:data:`FORK_FROM` files, and only while this process has a single thread
(a child of a threaded process may find a lock held forever, and Python
3.12 warns of it).  A helper touches nothing but the files, the pipe and
the slots, and leaves with ``os._exit``.  Every slot says whether it was
filled (its mark is written last); whatever no helper filled, because one
failed or could not be started, is hashed here at the end, so the answer
never depends on the helpers.
"""

from __future__ import annotations

import contextlib
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

__all__ = ["FORK_FROM", "Hashed", "ReadBuffer", "hash_file", "hash_files"]

FORK_FROM = 256  # files: for fewer, forking costs more than it saves
MOST_HELPERS = 3
CHUNK = 4  # files per chunk at least: a chunk costs one read of the pipe
MOST_CHUNKS = 1024  # their numbers fit a pipe of one page, the least a pipe holds
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DATA = struct.Struct("<qq32s")  # size, modification time, raw digest
# a slot per file: what is known (below), then its data, written before the mark
_SLOT = struct.Struct("<B" + _DATA.format.removeprefix("<"))
_TOKEN = struct.Struct("<I")  # a chunk's number in the pipe
_PENDING, _UNREAD, _STATUS, _DIGEST = 0, 1, 2, 3

Hashed = tuple[int, int, str | None]  # size, modification time (s), digest (None: too big)


class ReadBuffer:
    """One buffer reused to read file after file, grown only as far as the files need.

    Taking the whole :data:`~ftpproto.digest.READ_PIECE` up front costs 1-10
    ms here when the memory is new to the process (a page fault per page;
    in a virtual machine, often the host's too): more than hashing a
    hundred small files.  It grows by at least doubling, up to that piece.
    """

    def __init__(self) -> None:
        self._view = memoryview(bytearray())

    def fit(self, size: int) -> memoryview:
        """The buffer, grown first to hold ``size`` bytes (or a whole piece) if it cannot."""
        held = len(self._view)
        if held < size and held < READ_PIECE:
            self._view = memoryview(bytearray(min(READ_PIECE, max(size, 2 * held))))
        return self._view


def hash_file(path: str, buffer: ReadBuffer, most: int | None = None) -> Hashed | None:
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
        if hash_fd(hasher, fd, 0, size, buffer.fit(size)) < size:
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
    hashes its part: the place to start a thread that works meanwhile.
    """
    processes = _processes(len(paths))
    job = None
    if processes > 1:
        with contextlib.suppress(OSError):  # no memory to share or no pipe: hashed here alone
            job = _SharedJob(paths, most)
    if job is None:
        if beside is not None:
            beside()
        buffer = ReadBuffer()
        return [hash_file(path, buffer, most) for path in paths]
    helpers: list[int] = []
    try:
        for _ in range(processes - 1):
            pid = job.fork_helper()
            if pid:
                helpers.append(pid)
        if beside is not None:
            beside()
        job.hash_chunks()
        while helpers:  # by pid: other children of this process are not ours
            os.waitpid(helpers[-1], 0)
            helpers.pop()
        job.hash_pending()  # what a helper that failed left
        return job.results()
    finally:
        for pid in helpers:  # interrupted: no helper is left behind
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        job.close()


def _processes(count: int) -> int:
    """How many processes hash ``count`` files: 1 unless forking pays and is safe."""
    if count < FORK_FROM or sys.platform != "linux" or threading.active_count() != 1:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MOST_HELPERS + 1))


class _SharedJob:
    """Files hashed in chunks, by whichever process is free, into a slot each.

    The slots are an anonymous shared memory map; the chunks' numbers wait
    in a pipe, filled here before any helper starts.  Raises OSError if
    either cannot be made.
    """

    def __init__(self, paths: list[str], most: int | None) -> None:
        self.paths = paths
        self.most = most
        self.chunk = max(CHUNK, -(-len(paths) // MOST_CHUNKS))
        self.slots = mmap.mmap(-1, len(paths) * _SLOT.size)
        try:
            self.chunks = self._deal(-(-len(paths) // self.chunk))
        except OSError:
            self.slots.close()
            raise

    @staticmethod
    def _deal(count: int) -> int:
        """A pipe holding the numbers 0 to ``count - 1``; its read end (the write end is closed).

        A number the pipe could not take is left to :meth:`hash_pending`.
        """
        read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            with contextlib.suppress(BlockingIOError):
                os.write(write_end, b"".join(_TOKEN.pack(number) for number in range(count)))
            os.set_blocking(read_end, True)
        except OSError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        return read_end

    def close(self) -> None:
        os.close(self.chunks)
        self.slots.close()

    def fork_helper(self) -> int:
        """Fork a helper hashing chunks; its pid, or 0 if none could be started.

        Ctrl-C is held back across the fork, so the helper is inside its
        ``try`` before a ``KeyboardInterrupt`` can reach it: it then leaves
        at once, and never runs this process's code.
        """
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        pid = -1
        try:
            pid = os.fork()
        except OSError:
            pass  # no helper: this process hashes its chunks too
        finally:
            if pid != 0:  # this process; the helper lets Ctrl-C through inside its try
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if pid != 0:
            return max(pid, 0)
        code = 1
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            self.hash_chunks()
            code = 0
        finally:
            os._exit(code)  # no atexit handlers, no flushing of this process's buffers

    def hash_chunks(self) -> None:
        """Hash the chunk whose number comes next from the pipe, until it is empty.

        Every read takes one whole number: the pipe was filled before any
        reader started, and the kernel serves one read at a time.
        """
        buffer = ReadBuffer()
        while len(token := os.read(self.chunks, _TOKEN.size)) == _TOKEN.size:
            (number,) = _TOKEN.unpack(token)
            first = number * self.chunk
            for index in range(first, min(first + self.chunk, len(self.paths))):
                self._hash(index, buffer)

    def hash_pending(self) -> None:
        """Hash every file whose slot is still unfilled."""
        marks = self.slots[:: _SLOT.size]
        buffer = ReadBuffer()
        index = marks.find(_PENDING)
        while index >= 0:
            self._hash(index, buffer)
            index = marks.find(_PENDING, index + 1)

    def _hash(self, index: int, buffer: ReadBuffer) -> None:
        """Fill the slot of the path at ``index``: its data first, then its mark."""
        hashed = hash_file(self.paths[index], buffer, self.most)
        offset = index * _SLOT.size
        mark = _UNREAD
        if hashed is not None:
            size, mtime, digest = hashed
            mark = _STATUS if digest is None else _DIGEST
            raw = b"" if digest is None else bytes.fromhex(digest)
            _DATA.pack_into(self.slots, offset + 1, size, mtime, raw)
        self.slots[offset] = mark  # last: a helper killed before this leaves the slot pending

    def results(self) -> list[Hashed | None]:
        """What the slots hold, in the order of the paths."""
        return [
            None
            if mark in (_PENDING, _UNREAD)
            else (size, mtime, raw.hex() if mark == _DIGEST else None)
            for mark, size, mtime, raw in _SLOT.iter_unpack(self.slots)
        ]
