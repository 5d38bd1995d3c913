"""Tests for the spliced receive (ftpproto.splicing) over a real TCP connection on 127.0.0.1.

``Channel.recv_file`` into a :class:`GuardedWriter` on a file opened for
reading and writing splices transfers of ``SPLICE_MIN`` bytes or more.  These
tests check the bytes on disk and the digest, that the splice path was the
one taken, and each way out of it: a file that cannot be spliced into, a
write error, no pipe to be had, a peer that stalls or leaves, a file that is
shorter than what was written.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HOST, OsView, digest_of

import ftpfiles.files
import ftpproto.filedata
import ftpproto.splicing
from ftpfiles.files import GuardedWriter
from ftpproto.channel import SPLICE_MIN, Channel
from ftpproto.digest import Hasher, new_hasher
from ftpproto.errors import ConnectionClosed
from ftpproto.framing import encode_frame
from ftpproto.messages import ready, request
from ftpproto.splicing import HASH_WINDOW, HELPER_WINDOW, PIPE_SIZE, can_splice

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
BIG = HASH_WINDOW + PIPE_SIZE + 12_345  # more than one hash window, ending mid-piece


@pytest.fixture
def tcp() -> Iterator[tuple[socket.socket, Channel]]:
    """A connected TCP pair on loopback: the sending socket and a receiving channel."""
    with socket.create_server((HOST, 0)) as listener:
        sender = socket.create_connection(listener.getsockname(), timeout=10)
        receiver, _ = listener.accept()
    receiver.settimeout(10)
    try:
        yield sender, Channel(receiver)
    finally:
        sender.close()
        receiver.close()


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts :func:`splice_file` returned, one per call."""
    counts: list[int] = []
    real = ftpproto.splicing.splice_file

    def recording(*args: Any) -> int:
        counts.append(real(*args))
        return counts[-1]

    monkeypatch.setattr(ftpproto.filedata, "splice_file", recording)
    return counts


def send_in_thread(sock: socket.socket, data: bytes, close: bool = False) -> threading.Thread:
    def run() -> None:
        try:
            sock.sendall(data)
            if close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def open_rw(path: Path, flags: int = 0) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)


def receive(
    tcp: tuple[socket.socket, Channel],
    path: Path,
    wire: bytes,
    size: int,
    flags: int = 0,
    close: bool = False,
) -> tuple[GuardedWriter, Hasher]:
    """Send ``wire`` (then close, if asked) while the channel receives ``size`` bytes."""
    sender, receiver = tcp
    thread = send_in_thread(sender, wire, close)
    fd = open_rw(path, flags)
    try:
        writer, hasher = GuardedWriter(fd), new_hasher()
        receiver.recv_file(writer, size, hasher)
    finally:
        os.close(fd)
    thread.join(10)
    return writer, hasher


@pytest.fixture
def helpers(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The hashing helper threads :func:`splice_file` starts."""
    started: list[threading.Thread] = []
    real_thread = ftpproto.splicing.threading.Thread

    def recording(*args: Any, **kwargs: Any) -> threading.Thread:
        thread = real_thread(*args, **kwargs)
        if kwargs.get("name") == "hash-windows":
            started.append(thread)
        return thread

    monkeypatch.setattr(ftpproto.splicing.threading, "Thread", recording)
    return started


@pytest.mark.parametrize("spare_cpu", [True, False], ids=["helper-hashes", "one-cpu-inline"])
def test_windows_hashed_in_a_helper_or_inline_give_the_digest(
    tcp: tuple[socket.socket, Channel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spliced: list[int],
    helpers: list[threading.Thread],
    spare_cpu: bool,
) -> None:
    """Four helper windows and a bit: a helper thread (with one CPU, this one) hashes them."""
    monkeypatch.setattr(ftpproto.splicing, "_spare_cpu", lambda: spare_cpu)
    data = os.urandom(4 * HELPER_WINDOW + 54_321)
    path = tmp_path / "file.part"
    writer, hasher = receive(tcp, path, data, len(data))
    assert writer.error is None and spliced == [len(data)]
    assert hasher.hexdigest() == digest_of(data)
    assert path.read_bytes() == data
    assert len(helpers) == (1 if spare_cpu else 0)
    assert not any(thread.is_alive() for thread in helpers)


def test_a_transfer_under_two_windows_is_hashed_inline(
    tcp: tuple[socket.socket, Channel],
    tmp_path: Path,
    spliced: list[int],
    helpers: list[threading.Thread],
) -> None:
    data = os.urandom(2 * HELPER_WINDOW - 1)
    _, hasher = receive(tcp, tmp_path / "small", data, len(data))
    assert hasher.hexdigest() == digest_of(data) and spliced == [len(data)]
    assert helpers == []


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs to pin to one",
)
def test_a_receiver_pinned_to_one_cpu_hashes_inline(
    tcp: tuple[socket.socket, Channel], tmp_path: Path, helpers: list[threading.Thread]
) -> None:
    """A server worker is pinned to one CPU: a helper there would only take turns with it."""
    data = os.urandom(3 * HELPER_WINDOW)
    everywhere = os.sched_getaffinity(0)
    outcome: list[tuple[GuardedWriter, Hasher]] = []

    def pinned_receive() -> None:
        os.sched_setaffinity(0, {min(everywhere)})  # this thread only, as a worker process
        outcome.append(receive(tcp, tmp_path / "pinned", data, len(data)))

    thread = threading.Thread(target=pinned_receive)
    thread.start()
    thread.join(30)
    assert outcome and outcome[0][1].hexdigest() == digest_of(data)
    assert helpers == []


def test_a_sender_that_leaves_mid_transfer_stops_the_helper(
    tcp: tuple[socket.socket, Channel], tmp_path: Path, helpers: list[threading.Thread]
) -> None:
    """The error comes out and no helper is left reading the file afterwards."""
    with pytest.raises(ConnectionClosed):
        receive(
            tcp, tmp_path / "left", os.urandom(3 * HELPER_WINDOW), 5 * HELPER_WINDOW, close=True
        )
    assert len(helpers) == 1 and not helpers[0].is_alive()


@pytest.mark.parametrize("size", [SPLICE_MIN + 65536, BIG])
def test_big_receive_is_spliced_at_the_file_position(
    tcp: tuple[socket.socket, Channel], tmp_path: Path, spliced: list[int], size: int
) -> None:
    """Bytes after a frame in the same segment, a resumed file, the next frame after."""
    sender, receiver = tcp
    data = os.urandom(size)
    kept = b"kept from before\n"
    path = tmp_path / "file.part"
    path.write_bytes(kept + b"stale tail that must be overwritten")
    thread = send_in_thread(
        sender, encode_frame(ready("get", size).encode()) + data + encode_frame(b"FileTransfer|pwd")
    )
    fd = open_rw(path)
    try:
        os.lseek(fd, len(kept), os.SEEK_SET)
        os.ftruncate(fd, len(kept))
        writer = GuardedWriter(fd)
        hasher = new_hasher()
        progress: list[int] = []
        assert receiver.recv() == ready("get", size)
        receiver.recv_file(writer, size, hasher, progress.append)
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(kept) + size
    finally:
        os.close(fd)
    thread.join(10)
    assert writer.error is None
    assert path.read_bytes() == kept + data
    assert hasher.hexdigest() == digest_of(data)
    assert sum(progress) == size
    assert len(spliced) == 1 and 0 < spliced[0] <= size, "the splice path was not taken"
    assert receiver.recv() == request("pwd")


def test_a_file_that_refuses_splice_is_written(
    tcp: tuple[socket.socket, Channel], tmp_path: Path, spliced: list[int]
) -> None:
    """``O_APPEND`` makes ``splice`` fail with EINVAL: the bytes are written instead."""
    data = os.urandom(3 * MIB + 1)
    path = tmp_path / "append"
    writer, hasher = receive(tcp, path, data, len(data), os.O_APPEND)
    assert writer.error is None
    assert path.read_bytes() == data
    assert hasher.hexdigest() == digest_of(data)
    assert spliced and spliced[0] > 0, "the splice path was not tried"


@pytest.mark.parametrize("after", [0, PIPE_SIZE + 7, HASH_WINDOW + 5])
def test_write_error_mid_splice_stays_in_step(
    tcp: tuple[socket.socket, Channel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spliced: list[int],
    after: int,
) -> None:
    """A disk that fills up: the error is kept, every byte is read and hashed, in order."""
    data = os.urandom(HASH_WINDOW + 3 * MIB)
    written = [0]

    def failing_splice(src: int, dst: int, count: int, *args: Any, **kwargs: Any) -> int:
        if stat.S_ISREG(os.fstat(dst).st_mode):  # pipe -> file, not socket -> pipe
            room = after - written[0]
            if room <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            moved = os.splice(src, dst, min(count, room), *args, **kwargs)
            written[0] += moved
            return moved
        return os.splice(src, dst, count, *args, **kwargs)

    monkeypatch.setattr(ftpfiles.files, "os", OsView(splice=failing_splice))
    path = tmp_path / "full"
    writer, hasher = receive(tcp, path, data + encode_frame(b"FileTransfer|pwd"), len(data))
    assert isinstance(writer.error, OSError) and writer.error.errno == errno.ENOSPC
    assert path.read_bytes() == data[:after], "bytes after the error reached the file"
    assert hasher.hexdigest() == digest_of(data)
    assert len(spliced) == 1 and after <= spliced[0] < len(data), "splicing went on after it"
    assert tcp[1].recv() == request("pwd")


def test_no_pipe_to_be_had_receives_the_usual_way(
    tcp: tuple[socket.socket, Channel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spliced: list[int],
) -> None:
    """The kernel refuses a 1 MiB pipe (the user's pipes are at their limit)."""
    data = os.urandom(3 * MIB)
    real = fcntl.fcntl

    def refusing(fd: int, command: int, *args: Any) -> Any:
        if command == fcntl.F_SETPIPE_SZ:
            raise PermissionError(errno.EPERM, "over pipe-user-pages-soft")
        return real(fd, command, *args)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    path = tmp_path / "plain"
    writer, hasher = receive(tcp, path, data, len(data))
    assert writer.error is None
    assert spliced == [0]
    assert path.read_bytes() == data
    assert hasher.hexdigest() == digest_of(data)


@pytest.mark.parametrize(
    ("close", "error"), [(False, TimeoutError), (True, ConnectionClosed)], ids=["stalls", "leaves"]
)
def test_sender_that_stops_short(
    tcp: tuple[socket.socket, Channel], tmp_path: Path, close: bool, error: type[Exception]
) -> None:
    """3 MiB of 4, then silence or a close: a timeout (the socket's timeout holds while
    splicing, though the socket is non-blocking underneath) or a closed connection."""
    tcp[1].sock.settimeout(0.3)
    with pytest.raises(error):
        receive(tcp, tmp_path / "short", os.urandom(3 * MIB), 4 * MIB, close=close)


def test_can_splice_needs_a_regular_file_open_for_reading_and_writing(
    tcp: tuple[socket.socket, Channel], tmp_path: Path
) -> None:
    _, receiver = tcp
    path = tmp_path / "f"
    path.write_bytes(b"")
    read_write = os.open(path, os.O_RDWR)
    write_only = os.open(path, os.O_WRONLY)
    pipe_read, pipe_write = os.pipe()
    try:
        assert can_splice(receiver.sock, read_write)
        assert not can_splice(receiver.sock, write_only), "a write-only file cannot be mapped"
        assert not can_splice(receiver.sock, pipe_write), "a pipe is no file"
    finally:
        for fd in (read_write, write_only, pipe_read, pipe_write):
            os.close(fd)


def test_hash_of_a_file_shorter_than_written_reads_what_is_there(tmp_path: Path) -> None:
    """Were the file cut meanwhile, the map is refused and the bytes read: a digest mismatch."""
    data = os.urandom(100_000)
    path = tmp_path / "cut"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDWR)
    try:
        hasher = new_hasher()
        ftpproto.splicing._hash_written(hasher, fd, 5000, 200_000)
    finally:
        os.close(fd)
    assert hasher.hexdigest() == digest_of(data[5000:])
