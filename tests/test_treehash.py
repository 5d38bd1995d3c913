"""Hashing many local files with forked helpers (``ftpclient.treehash``): same answers.

The helpers take chunks of files from a pipe as they are free; whatever a
helper did not finish, this process hashes, so the answer never changes.
"""

from __future__ import annotations

import mmap
import os
import select
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ftpclient import treehash
from ftpclient.treehash import Hashed, ReadBuffer, hash_file, hash_files
from ftpproto.digest import READ_PIECE, new_hasher


@pytest.fixture
def paths(tmp_path: Path) -> list[str]:
    """Files of many sizes (one over the limit used below), and paths that give None."""
    found = []
    for index in range(40):
        path = tmp_path / f"f{index:02}"
        path.write_bytes(bytes([index]) * (index * 997 if index != 7 else READ_PIECE + 3))
        found.append(str(path))
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to("f01")
    return [*found, str(tmp_path / "fifo"), str(tmp_path / "link"), str(tmp_path / "missing")]


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Helpers are forked for 8 files or more, three shares, as in a single-threaded client.

    (The test process has threads of its own: the check is told otherwise.)
    Yields the pids of the helpers forked.
    """
    started: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            started.append(pid)
        return pid

    monkeypatch.setattr(treehash, "FORK_FROM", 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(os, "fork", fork)
    yield started


def serial(paths: list[str], most: int) -> list[Hashed | None]:
    buffer = ReadBuffer()
    return [hash_file(path, buffer, most) for path in paths]


def test_hash_file_gives_size_time_and_digest_or_none(paths: list[str]) -> None:
    buffer = ReadBuffer()
    size, mtime, digest = hash_file(paths[3], buffer) or (0, 0, None)
    expected = new_hasher()
    expected.update(Path(paths[3]).read_bytes())
    assert (size, mtime, digest) == (3 * 997, int(os.stat(paths[3]).st_mtime), expected.hexdigest())
    big_mtime = int(os.stat(paths[7]).st_mtime)  # its own: written maybe a second later
    assert hash_file(paths[7], buffer, most=READ_PIECE) == (READ_PIECE + 3, big_mtime, None)
    assert [hash_file(path, buffer) for path in paths[-3:]] == [None, None, None]


def test_the_read_buffer_grows_only_as_far_as_the_files_need() -> None:
    buffer = ReadBuffer()
    assert len(buffer.fit(0)) == 0
    assert len(buffer.fit(1000)) == 1000
    assert len(buffer.fit(1500)) == 2000  # at least doubled
    assert len(buffer.fit(10)) == 2000  # never shrunk
    assert len(buffer.fit(READ_PIECE * 3)) == READ_PIECE  # bigger files are read in pieces


def test_helpers_give_the_answers_of_one_process(paths: list[str], forks: list[int]) -> None:
    beside: list[int] = []
    found = hash_files(paths, READ_PIECE, lambda: beside.append(len(forks)))
    assert len(forks) == 2 and beside == [2]  # called once, after both helpers were forked
    assert found == serial(paths, READ_PIECE)
    assert found[7] is not None and found[7][2] is None  # over the limit: no digest
    assert found[-3:] == [None, None, None]
    for pid in forks:  # every helper was waited for
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_a_chunk_a_failed_helper_took_is_hashed_here(
    paths: list[str], forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper that takes a chunk and dies before filling its slots loses nothing."""
    parent = os.getpid()
    real_chunks: Callable[[treehash._SharedJob], None] = treehash._SharedJob.hash_chunks
    taken_read, taken_write = os.pipe()

    def hash_chunks(job: treehash._SharedJob) -> None:
        if os.getpid() != parent:  # a helper: take one chunk, say so, fail
            os.read(job.chunks, 4)
            os.write(taken_write, b"x")
            raise RuntimeError("a helper that fails")
        assert select.select([taken_read], [], [], 10)[0], "no helper took a chunk"
        real_chunks(job)

    monkeypatch.setattr(treehash._SharedJob, "hash_chunks", hash_chunks)
    try:
        assert hash_files(paths, READ_PIECE) == serial(paths, READ_PIECE)
    finally:
        os.close(taken_read)
        os.close(taken_write)
    assert len(forks) == 2


def test_chunks_the_pipe_could_not_take_are_hashed_here(
    paths: list[str], forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_deal = treehash._SharedJob._deal
    dealt: list[int] = []

    def deal_half(count: int) -> int:
        dealt.append(count)
        return real_deal(count // 2)

    monkeypatch.setattr(treehash._SharedJob, "_deal", staticmethod(deal_half))
    assert hash_files(paths, READ_PIECE) == serial(paths, READ_PIECE)
    assert dealt == [-(-len(paths) // treehash.CHUNK)]


def test_no_helper_where_fork_fails_or_another_thread_runs(
    paths: list[str], forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert hash_files(paths, READ_PIECE) == serial(paths, READ_PIECE)

    def forbidden() -> int:
        raise AssertionError("forked beside another thread")

    monkeypatch.setattr(os, "fork", forbidden)
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    called: list[bool] = []
    assert hash_files(paths, None, lambda: called.append(True)) == serial(paths, READ_PIECE * 2)
    assert called == [True]


def test_no_helper_without_memory_to_share(
    paths: list[str], forks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_map(*_args: object) -> mmap.mmap:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", no_map)
    assert hash_files(paths, READ_PIECE) == serial(paths, READ_PIECE)
    assert forks == []


def test_few_files_are_hashed_here(paths: list[str], forks: list[int]) -> None:
    assert hash_files(paths[:7]) == serial(paths[:7], READ_PIECE * 2)
    assert forks == []


def test_an_interrupt_leaves_no_helper_behind(paths: list[str], forks: list[int]) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        hash_files(paths, None, interrupted)
    assert len(forks) == 2
    for pid in forks:  # killed and waited for, not left running or as a zombie
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
