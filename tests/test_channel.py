"""Tests for ftpproto.channel over a local socketpair: messages and exact-length file data."""

from __future__ import annotations

import errno
import io
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import digest_of

from ftpfiles.files import GuardedWriter, file_digest
from ftpproto.channel import CHUNK_SIZE, PAY_AT, Channel, Deadlines
from ftpproto.digest import new_hasher
from ftpproto.errors import ConnectionClosed, DeadlineExceeded, FramingError, MessageError
from ftpproto.framing import encode_frame
from ftpproto.messages import Message, digest, ready, request

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    """Two channels joined by a socketpair, each end with a 5 s timeout."""
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)
    try:
        yield Channel(left), Channel(right)
    finally:
        left.close()
        right.close()


def in_thread(target: Callable[[], object]) -> threading.Thread:
    """Run ``target`` in a daemon thread (so a big send cannot block the reader)."""
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def send_raw(sock: socket.socket, data: bytes) -> threading.Thread | None:
    """Send ``data`` in one ``sendall``: inline if it fits the socket buffer, else in a thread."""
    if len(data) <= 100_000:
        sock.sendall(data)
        return None
    return in_thread(lambda: sock.sendall(data))


def pattern(size: int) -> bytes:
    """``size`` bytes that are not all alike, so misplaced bytes show."""
    return bytes(i % 251 for i in range(size))


@pytest.mark.parametrize(
    "messages",
    [
        [request("pwd")],
        [request("get", "a|b %.txt")],
        [request("login", "alice", "s3cret"), request("pwd"), request("ls", "/")],
        [Message("ls", ("entry", "caf\u00e9", "file", "3", "0"))] * 50,
    ],
)
def test_send_recv_messages(pair: tuple[Channel, Channel], messages: list[Message]) -> None:
    sender, receiver = pair
    sender.send(*messages)
    assert [receiver.recv() for _ in messages] == messages


def test_recv_byte_by_byte(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    data = encode_frame(request("get", "x").encode())
    result: list[Message] = []
    thread = in_thread(lambda: result.append(receiver.recv()))
    for byte in data:
        sender.sock.sendall(bytes([byte]))
    thread.join(5)
    assert result == [request("get", "x")]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        pytest.param(b"", ConnectionClosed, id="closed"),
        pytest.param(b"\x00\x00", ConnectionClosed, id="closed-in-header"),
        pytest.param(b"\x00\x00\x00\x10Fil", ConnectionClosed, id="closed-in-payload"),
        pytest.param(b"\x00\x00\x00\x00", FramingError, id="empty-frame"),
        pytest.param(struct.pack(">I", 0xFFFFFFFF), FramingError, id="huge-frame"),
        pytest.param(encode_frame(b"HTTP/1.1 GET /"), MessageError, id="not-a-message"),
        pytest.param(encode_frame(b"FileTransfer|__init__"), MessageError, id="dunder"),
    ],
)
def test_recv_errors(pair: tuple[Channel, Channel], raw: bytes, error: type[Exception]) -> None:
    sender, receiver = pair
    sender.sock.sendall(raw)
    sender.sock.shutdown(socket.SHUT_WR)
    with pytest.raises(error):
        receiver.recv()


def test_recv_times_out(pair: tuple[Channel, Channel]) -> None:
    _, receiver = pair
    receiver.sock.settimeout(0.05)
    with pytest.raises(TimeoutError) as caught:
        receiver.recv()
    assert not isinstance(caught.value, DeadlineExceeded), "no deadlines, no reason"


# -- deadlines: which one was broken, and whether a last word can still be sent ---------------


@pytest.fixture
def watched() -> Iterator[tuple[socket.socket, Channel]]:
    """A raw socket and, at its other end, a channel with short deadlines."""
    left, right = socket.socketpair()
    left.settimeout(5)
    try:
        yield left, Channel(right, deadlines=Deadlines(0.2, 0.3, 0.2, 0))
    finally:
        left.close()
        right.close()


def test_an_idle_peer_breaks_the_idle_deadline(watched: tuple[socket.socket, Channel]) -> None:
    with pytest.raises(DeadlineExceeded, match=r"^idle for 0\.2 s$"):
        watched[1].recv()


def test_a_slow_message_breaks_the_request_deadline(
    watched: tuple[socket.socket, Channel],
) -> None:
    peer, channel = watched
    frame = encode_frame(request("pwd").encode())

    def dribble() -> None:
        for i in range(6):  # a byte every 0.1 s: more than 0.3 s for the frame's first 6
            peer.sendall(frame[i : i + 1])
            time.sleep(0.1)

    thread = in_thread(dribble)
    with pytest.raises(DeadlineExceeded, match=r"^message not completed within 0\.3 s$"):
        channel.recv()
    thread.join(5)


def test_stalled_file_data_breaks_the_stall_deadline(
    watched: tuple[socket.socket, Channel],
) -> None:
    peer, channel = watched
    peer.sendall(b"x" * 1000)
    with pytest.raises(DeadlineExceeded, match=r"^no file data for 0\.2 s$"):
        channel.recv_file(io.BytesIO(), 10_000, new_hasher())


def test_trickling_file_data_breaks_the_rate_deadline() -> None:
    left, right = socket.socketpair()
    channel = Channel(right, deadlines=Deadlines(5, 5, 0.2, 10_000))
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            left.sendall(b"x" * 100)
            time.sleep(0.02)

    thread = in_thread(trickle)
    try:
        with pytest.raises(
            DeadlineExceeded, match=r"^transfer slower than 10000 bytes/s for 0\.2 s$"
        ):
            channel.recv_file(io.BytesIO(), 1 << 20, new_hasher())
    finally:
        stop.set()
        thread.join(5)
        left.close()
        right.close()


def test_a_last_word_is_sent_at_a_frame_boundary(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    sender.send(request("pwd"))
    assert sender.in_step
    assert sender.send_last(Message("error", ("error", "408", "idle for 1 s")))
    assert receiver.recv() == request("pwd")
    assert receiver.recv() == Message("error", ("error", "408", "idle for 1 s"))


def test_no_last_word_in_the_middle_of_file_data(tmp_path: Path) -> None:
    """A download cut off mid-data: a message now would be read as file data."""
    left, right = socket.socketpair()
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sender = Channel(left, deadlines=Deadlines(5, 5, 0.2, 0))
    path = tmp_path / "big"
    path.write_bytes(bytes(8 << 20))
    try:
        with path.open("rb") as source, pytest.raises(DeadlineExceeded, match="no file data"):
            sender.send_file(source, 0, 8 << 20, progress=lambda n: None)
        assert not sender.in_step
        assert not sender.send_last(Message("error", ("error", "408", "x")))
    finally:
        left.close()
        right.close()


@pytest.mark.parametrize("size", [0, 1, 100, 4000, 5000, 70_000, CHUNK_SIZE + 17])
def test_recv_file_after_frame_in_one_write(pair: tuple[Channel, Channel], size: int) -> None:
    """The frame, the file and the next frame arrive together; each goes where it belongs."""
    sender, receiver = pair
    data = pattern(size)
    wire = (
        encode_frame(ready("get", size).encode())
        + data
        + encode_frame(digest("get", digest_of(data)).encode())
    )
    thread = send_raw(sender.sock, wire)
    assert receiver.recv() == ready("get", size)
    if size < 4000:
        assert receiver._decoder.buffered > size  # the file data came with the frame
    sink = io.BytesIO()
    hasher = new_hasher()
    progress: list[int] = []
    receiver.recv_file(sink, size, hasher, progress.append)
    assert sink.getvalue() == data
    assert hasher.hexdigest() == digest_of(data)
    assert sum(progress) == size
    assert receiver.recv() == digest("get", digest_of(data))
    if thread:
        thread.join(5)


def test_recv_file_zero_bytes_leaves_next_frame(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    sender.send(ready("get", 0), request("pwd"))
    assert receiver.recv() == ready("get", 0)
    sink = io.BytesIO()
    receiver.recv_file(sink, 0, new_hasher())
    assert sink.getvalue() == b""
    assert receiver.recv() == request("pwd")


def test_recv_file_peer_closes_early(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    sender.sock.sendall(encode_frame(ready("get", 10).encode()) + b"12345")
    sender.sock.shutdown(socket.SHUT_WR)
    assert receiver.recv() == ready("get", 10)
    sink = io.BytesIO()
    with pytest.raises(ConnectionClosed):
        receiver.recv_file(sink, 10, new_hasher())
    assert sink.getvalue() == b"12345"


@pytest.mark.parametrize(
    ("source", "size", "expected_read"),
    [
        (b"", 0, 0),
        (b"abc", 3, 3),
        (b"abc", 10, 3),
        (b"", 5, 0),
        (pattern(1000), 300_000, 1000),
        (pattern(CHUNK_SIZE + 5), CHUNK_SIZE + 5, CHUNK_SIZE + 5),
    ],
)
def test_send_stream(
    pair: tuple[Channel, Channel], source: bytes, size: int, expected_read: int
) -> None:
    sender, receiver = pair
    hasher = new_hasher()
    progress: list[int] = []
    result: list[int] = []

    def send() -> None:
        result.append(sender.send_stream(io.BytesIO(source), size, hasher, progress.append))
        sender.send(request("pwd"))

    thread = in_thread(send)
    sink = io.BytesIO()
    receiver.recv_file(sink, size, new_hasher())
    assert receiver.recv() == request("pwd")  # still in step after the padding
    thread.join(5)
    assert result == [expected_read]
    assert sum(progress) == expected_read
    assert hasher.hexdigest() == digest_of(source[:expected_read])
    assert sink.getvalue() == source[:expected_read] + bytes(size - expected_read)


@pytest.mark.parametrize(
    ("content", "offset", "size", "expected_sent"),
    [
        (b"hello world", 0, 11, 11),
        (b"hello world", 6, 5, 5),
        (b"hello world", 0, 0, 0),
        (b"hello", 0, 9, 5),
        (b"hello", 3, 10, 2),
        (pattern(CHUNK_SIZE * 2 + 3), 1, CHUNK_SIZE * 2 + 2, CHUNK_SIZE * 2 + 2),
    ],
)
def test_send_file(
    pair: tuple[Channel, Channel],
    tmp_path: Path,
    content: bytes,
    offset: int,
    size: int,
    expected_sent: int,
) -> None:
    sender, receiver = pair
    path = tmp_path / "f"
    path.write_bytes(content)
    result: list[int] = []

    def send() -> None:
        with path.open("rb") as f:
            result.append(sender.send_file(f, offset, size))
        sender.send(request("pwd"))

    thread = in_thread(send)
    sink = io.BytesIO()
    receiver.recv_file(sink, size, new_hasher())
    assert receiver.recv() == request("pwd")
    thread.join(5)
    assert result == [expected_sent]
    expected = content[offset : offset + expected_sent] + bytes(size - expected_sent)
    assert sink.getvalue() == expected


@pytest.mark.parametrize("count", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1])
def test_send_zeros(pair: tuple[Channel, Channel], count: int) -> None:
    sender, receiver = pair

    def send() -> None:
        sender.send_zeros(count)
        sender.send(request("pwd"))

    thread = in_thread(send)
    sink = io.BytesIO()
    receiver.recv_file(sink, count, new_hasher())
    assert sink.getvalue() == bytes(count)
    assert receiver.recv() == request("pwd")
    thread.join(5)


def test_guarded_writer_writes_everything(tmp_path: Path) -> None:
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        writer = GuardedWriter(fd)
        writer.write(b"abc")
        writer.write(memoryview(b"defgh")[1:4])
    finally:
        os.close(fd)
    assert writer.error is None
    assert path.read_bytes() == b"abcefg"


def test_guarded_writer_keeps_first_error_and_stops_writing(tmp_path: Path) -> None:
    bad = tmp_path / "read-only"
    bad.write_bytes(b"")
    good = tmp_path / "good"
    read_fd = os.open(bad, os.O_RDONLY)
    write_fd = os.open(good, os.O_WRONLY | os.O_CREAT)
    try:
        writer = GuardedWriter(read_fd)
        writer.write(b"first")
        first = writer.error
        assert isinstance(first, OSError)
        assert first.errno == errno.EBADF
        writer.fd = write_fd  # a later write would now succeed if it were tried
        writer.write(b"second")
        assert writer.error is first
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert good.read_bytes() == b""


@pytest.mark.parametrize("size", [10, 5000, CHUNK_SIZE + 1])
def test_recv_file_into_failing_writer_stays_in_step(
    pair: tuple[Channel, Channel], tmp_path: Path, size: int
) -> None:
    """A receiver that cannot write still reads every announced byte."""
    sender, receiver = pair
    data = pattern(size)
    wire = encode_frame(ready("put", size).encode()) + data + encode_frame(b"FileTransfer|pwd")
    thread = send_raw(sender.sock, wire)
    bad = tmp_path / "read-only"
    bad.write_bytes(b"")
    fd = os.open(bad, os.O_RDONLY)
    try:
        writer = GuardedWriter(fd)
        hasher = new_hasher()
        assert receiver.recv() == ready("put", size)
        receiver.recv_file(writer, size, hasher)
    finally:
        os.close(fd)
    assert isinstance(writer.error, OSError)
    assert hasher.hexdigest() == digest_of(data)
    assert receiver.recv() == request("pwd")
    if thread:
        thread.join(5)


# From the official BLAKE3 test vectors (BLAKE3-team/BLAKE3, test_vectors/test_vectors.json):
# the default 32-byte hash of ``pattern(n)``, whose bytes are 0, 1, ..., 250, 0, 1, ...
BLAKE3_VECTORS = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
    102400: "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085",
}


@pytest.mark.parametrize("size", sorted(BLAKE3_VECTORS))
def test_file_digest_is_blake3(tmp_path: Path, size: int) -> None:
    """The protocol's digest is BLAKE3, so the tests' digest_of cannot drift with it unseen."""
    expected = BLAKE3_VECTORS[size]
    assert digest_of(pattern(size)) == expected
    path = tmp_path / "vector.bin"
    path.write_bytes(pattern(size))
    with open(path, "rb") as f:
        hasher, count = file_digest(f, 0, size)
    assert (hasher.hexdigest(), count) == (expected, size)


@pytest.mark.parametrize(
    ("content", "offset", "size", "expected_count"),
    [
        (b"", 0, 0, 0),
        (b"hello world", 0, 11, 11),
        (b"hello world", 6, 5, 5),
        (b"hello world", 0, 5, 5),
        (b"hello", 0, 100, 5),
        (b"hello", 10, 5, 0),
        (pattern(3 * 1024 * 1024 + 7), 3, 3 * 1024 * 1024, 3 * 1024 * 1024),
    ],
)
def test_file_digest(
    tmp_path: Path, content: bytes, offset: int, size: int, expected_count: int
) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    with path.open("rb") as f:
        f.seek(2)
        hasher, count = file_digest(f, offset, size)
        assert f.tell() == 2
    assert (hasher.hexdigest(), count) == (
        digest_of(content[offset : offset + expected_count]),
        expected_count,
    )


def test_last_message_reads_what_the_peer_said_before_closing(
    pair: tuple[Channel, Channel],
) -> None:
    left, right = pair
    right.send(Message("error", ("error", "408", "no file data for 60 s")))
    right.close()
    assert left.last_message(1) == Message("error", ("error", "408", "no file data for 60 s"))
    assert left.sock.gettimeout() == 5, "the socket's timeout was not restored"
    assert left.last_message(1) is None, "closed without a word"


def test_last_message_gives_up(pair: tuple[Channel, Channel]) -> None:
    left, _ = pair
    assert left.last_message(0.05) is None


class _Owed:
    """Replies owed: ``ready`` can go now, ``later`` are still being finished (after them)."""

    def __init__(self) -> None:
        self.ready: list[Message] = []
        self.later: list[Message] = []
        self.pay_at = PAY_AT

    def due(self, every: bool) -> list[Message]:
        taken = self.ready + (self.later if every else [])
        self.ready = []
        if every:
            self.later = []
        return taken

    def owing(self) -> int:
        return len(self.ready) + len(self.later)


def test_owed_replies_go_first_and_before_a_wait(pair: tuple[Channel, Channel]) -> None:
    """``owed``: written ahead of the next write, or before the channel waits for the peer."""
    server, client = pair
    owed = _Owed()
    server.owed = owed
    owed.ready += [ready("offer", 3), ready("offer", 4)]
    server.send(request("pwd"))  # the owed replies first, then this
    assert [client.recv() for _ in range(3)] == [
        ready("offer", 3),
        ready("offer", 4),
        request("pwd"),
    ]
    owed.ready.append(ready("offer", 5))
    server.send_parts(ready("fetch", 2), b"ab", digest("fetch", "0" * 64))
    assert client.recv() == ready("offer", 5)
    assert client.recv() == ready("fetch", 2)
    sink = io.BytesIO()
    client.recv_file(sink, 2, new_hasher())
    assert sink.getvalue() == b"ab"
    assert client.recv() == digest("fetch", "0" * 64)
    owed.ready.append(ready("offer", 6))
    received: list[Message] = []
    reader = threading.Thread(target=lambda: received.append(server.recv()))
    reader.start()  # nothing to read: it pays before it waits
    assert client.recv() == ready("offer", 6)
    client.send(request("send"), request("quit"))  # two messages in one write
    reader.join(5)
    assert received == [request("send")]
    owed.ready.append(ready("offer", 7))
    assert server.recv() == request("quit")  # already buffered: no wait, nothing paid
    assert owed.ready == [ready("offer", 7)]


def test_owed_replies_ride_along_while_the_peer_sends(pair: tuple[Channel, Channel]) -> None:
    """With the peer's bytes already there, replies wait until ``PAY_AT`` are owed."""
    server, client = pair
    owed = _Owed()
    server.owed = owed
    owed.ready += [ready("offer", n) for n in range(1, PAY_AT)]
    client.send(request("pwd"))
    time.sleep(0.2)  # in the server's socket before it reads
    assert server.recv() == request("pwd")
    assert len(owed.ready) == PAY_AT - 1, "paid although the read did not wait"
    owed.ready.append(ready("offer", PAY_AT))
    client.send(request("pwd"))
    time.sleep(0.2)
    assert server.recv() == request("pwd")
    assert owed.ready == []
    assert [client.recv() for _ in range(PAY_AT)] == [
        ready("offer", n) for n in range(1, PAY_AT + 1)
    ]


def test_owed_replies_being_finished_wait_only_if_the_read_would(
    pair: tuple[Channel, Channel],
) -> None:
    """A reply still being finished holds up a read only when the peer's bytes are not there."""
    server, client = pair
    owed = _Owed()
    server.owed = owed
    owed.ready += [ready("offer", n) for n in range(1, PAY_AT)]
    owed.later.append(ready("offer", PAY_AT))
    client.send(request("pwd"))
    time.sleep(0.2)  # the request is in the server's socket before it reads
    assert server.recv() == request("pwd")  # readable: the ready ones went out, not the other
    assert [client.recv() for _ in range(PAY_AT - 1)] == [
        ready("offer", n) for n in range(1, PAY_AT)
    ]
    assert owed.later == [ready("offer", PAY_AT)]
    client.sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv()
    client.sock.settimeout(5)
    received: list[Message] = []
    reader = threading.Thread(target=lambda: received.append(server.recv()))
    reader.start()  # nothing to read: it pays everything before it waits
    assert client.recv() == ready("offer", PAY_AT)
    client.send(request("quit"))
    reader.join(5)
    assert received == [request("quit")] and owed.later == []


def test_send_parts_gathers_big_data_whole(pair: tuple[Channel, Channel]) -> None:
    """Messages and data sent gathered (``sendmsg``) arrive whole, however the kernel splits."""
    server, client = pair
    server.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = os.urandom(3 * 1024 * 1024 + 7)
    sender = threading.Thread(
        target=server.send_parts, args=(ready("fetch", len(data)), data, digest("fetch", "1" * 64))
    )
    sender.start()
    assert client.recv() == ready("fetch", len(data))
    sink = io.BytesIO()
    client.recv_file(sink, len(data), new_hasher())
    assert sink.getvalue() == data
    assert client.recv() == digest("fetch", "1" * 64)
    sender.join(5)


def test_a_lower_pay_at_pays_sooner(pair: tuple[Channel, Channel]) -> None:
    """``pay_at`` (a server's small window lowers it): owed replies go once that many are owed."""
    server, client = pair
    owed = _Owed()
    owed.pay_at = 2
    server.owed = owed
    owed.ready.append(ready("offer", 1))
    client.send(request("pwd"), request("pwd"))
    time.sleep(0.2)  # in the server's socket before it reads
    assert server.recv() == request("pwd")
    assert owed.ready == [ready("offer", 1)], "paid below pay_at although the read did not wait"
    owed.ready.append(ready("offer", 2))
    client.send(request("quit"))
    time.sleep(0.2)
    assert server.recv() == request("pwd")  # buffered: no read, nothing paid yet
    assert server.recv() == request("quit")  # read with two owed: both go
    assert [client.recv() for _ in range(2)] == [ready("offer", 1), ready("offer", 2)]
