"""Many files on one connection, pipelined (docs/PROTOCOL.md, section 5.4).

:func:`get_many` and :func:`put_many` take ``(remote, local)`` pairs and
yield one :class:`FileOutcome` per file, in order: its verified
:class:`~ftpclient.client.TransferResult`, or the error that stopped that
file alone (the server refused it, its digest did not match, a local file
could not be read or written).  They keep up to a window of requests in
flight (the server's ``window``, no wider than :data:`WINDOW`), so a tree
of small files costs about one round trip, not several per file.  A server
without pipelining (``window`` unknown, ``405``) gets one file at a time.

Closing the iterator early (a caller that stops at the first failure) lets
what is in flight finish before it returns: downloads still on the way are
received and thrown away, uploads not yet sent are withdrawn, so the
connection stays in step for the next command.  A lost connection is
raised, as by every client method; any other exception while files are in
flight (Ctrl-C, a reply that fits nothing) closes the connection, which can
no longer be read in step.  A download interrupted during its data keeps
its ``.part`` file (for ``reget``), as :meth:`FileTransferClient.get` does.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ftpclient.datatypes import LocalError, Monitor, TransferResult
from ftpclient.partfiles import PART_SUFFIX, local_error, open_part
from ftpfiles.files import GuardedWriter
from ftpproto.errors import ErrorCode, ProtocolError, RemoteError
from ftpproto.messages import Message
from ftpproto.pipeline import REQUEST_BYTES, ClientFetch, ClientOffer, Window, parse_window

if TYPE_CHECKING:
    from ftpclient.client import FileTransferClient

__all__ = [
    "SMALL_FILE",
    "WINDOW",
    "FileOutcome",
    "MonitorFor",
    "get_many",
    "one_by_one",
    "put_many",
]

WINDOW = Window(256, 256 * 1024 * 1024)  # the client's own cap; the server's is usually smaller
SMALL_FILE = 256 * 1024  # up to this size an upload goes out in one write with its messages
MonitorFor = Callable[[str], Monitor | None]


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file of a batch: ``result`` if verified, else ``error``."""

    remote: str
    local: str
    result: TransferResult | None = None
    error: ProtocolError | LocalError | None = None


class _Discard:
    """A sink for file data nobody wants (the local file could not be opened)."""

    def write(self, data: bytes | memoryview, /) -> None:
        """Drop ``data``."""


def server_window(client: FileTransferClient) -> Window | None:
    """The window to use with this server, or None if it does not pipeline."""
    try:
        window = parse_window(client._call("window"))
    except RemoteError as exc:
        if exc.code == ErrorCode.UNKNOWN_COMMAND:
            return None
        raise
    return WINDOW.narrowed(window.files, window.size)


def one_by_one(
    pairs: Iterable[tuple[str, str]],
    copy: Callable[[str, str, Monitor | None], TransferResult],
    monitor_for: MonitorFor | None,
    name: Callable[[str, str], str],
) -> Iterator[FileOutcome]:
    """The same outcomes from the one-file exchange (a server without pipelining, a resume).

    ``copy(remote, local, monitor)`` moves one ``(remote, local)`` pair;
    ``name(remote, local)`` is the name ``monitor_for`` is given.
    """
    for remote, local in pairs:
        monitor = monitor_for(name(remote, local)) if monitor_for else None
        try:
            outcome = FileOutcome(remote, local, copy(remote, local, monitor))
        except (RemoteError, LocalError) as exc:
            outcome = FileOutcome(remote, local, None, exc)
        yield outcome


# -- downloads --------------------------------------------------------------


def get_many(
    client: FileTransferClient,
    pairs: Iterable[tuple[str, str]],
    monitor_for: MonitorFor | None = None,
) -> Iterator[FileOutcome]:
    """Download each ``(remote, local)`` pair; one outcome per file, in order.

    ``local`` is the file name to write (through ``local.part``, renamed once
    verified); ``monitor_for(remote)`` gives a progress monitor per file.
    """
    window = server_window(client)
    if window is None:
        yield from one_by_one(pairs, client.get, monitor_for, lambda r, _: r)
        return
    channel = client.channel
    todo = iter(pairs)
    flight: deque[tuple[ClientFetch, str, int]] = deque()
    request_bytes = 0
    done = False
    try:
        while True:
            batch = []
            while not done and window.admits(0) and request_bytes < REQUEST_BYTES:
                pair = next(todo, None)
                if pair is None:
                    done = True
                    break
                handshake = ClientFetch(pair[0])
                message = handshake.request()
                cost = len(message.encode()) + 4
                flight.append((handshake, pair[1], cost))
                window.take(0)
                request_bytes += cost
                batch.append(message)
            if batch:
                channel.send(*batch)
            if not flight:
                return
            handshake, local, cost = flight.popleft()
            window.give(0)
            request_bytes -= cost
            monitor = monitor_for(handshake.path) if monitor_for else None
            yield _receive(client, handshake, local, monitor)
    except GeneratorExit:  # the caller stopped, between two files
        if flight and channel.in_step:
            _drain_fetches(client, flight)
        raise
    except BaseException:
        if flight:  # the stream may stop mid-file: nothing after this can be read
            client.close()
        raise


def _receive(
    client: FileTransferClient, handshake: ClientFetch, local: str, monitor: Monitor | None
) -> FileOutcome:
    """Take one fetched file off the connection into ``local``; its outcome."""
    channel = client.channel
    remote = handshake.path
    started = time.monotonic()
    try:
        handshake.ready(channel.recv())
    except RemoteError as exc:
        return FileOutcome(remote, local, None, exc)
    except ProtocolError:
        client.close()  # a reply that fits nothing: the data that follows cannot be placed
        raise
    count = handshake.count
    part = local + PART_SUFFIX
    try:
        fd = open_part(part, 0)
    except OSError as exc:
        channel.recv_file(_Discard(), count, handshake.hasher)
        with contextlib.suppress(RemoteError):
            handshake.check(channel.recv())
        return FileOutcome(remote, local, None, local_error(exc, part))
    keep_part = True  # until every byte arrived: an interrupted file is kept for reget
    try:
        writer = GuardedWriter(fd)
        if monitor:
            monitor.start(count, 0)
        channel.recv_file(writer, count, handshake.hasher, monitor.update if monitor else None)
        keep_part = False
        try:
            claimed = handshake.check(channel.recv())
        except RemoteError as exc:
            return FileOutcome(remote, local, None, exc)
        if writer.error is not None:
            return FileOutcome(remote, local, None, local_error(writer.error, part))
        try:
            os.replace(part, local)  # still locked: no other download can open it meanwhile
        except OSError as exc:
            return FileOutcome(remote, local, None, local_error(exc, local))
        part = ""
    finally:
        os.close(fd)
        if part and not keep_part:
            with contextlib.suppress(OSError):
                os.unlink(part)
        if monitor:
            monitor.close()
    seconds = time.monotonic() - started
    return FileOutcome(remote, local, TransferResult(remote, local, count, claimed, seconds))


def _drain_fetches(client: FileTransferClient, flight: deque[tuple[ClientFetch, str, int]]) -> None:
    """Receive and throw away the files still on the way (the caller stopped early)."""
    channel = client.channel
    while flight:
        handshake = flight.popleft()[0]
        try:
            handshake.ready(channel.recv())
        except RemoteError:
            continue
        channel.recv_file(_Discard(), handshake.count, handshake.hasher)
        with contextlib.suppress(RemoteError):
            handshake.check(channel.recv())


# -- uploads ----------------------------------------------------------------


@dataclass
class _Upload:
    """One file of a pipelined upload, from its offer to the server's answer."""

    handshake: ClientOffer
    local: str
    source: BinaryIO
    cost: int
    started: float
    short: bool = False  # the file shrank while sent: the data was padded and aborted
    outcome: FileOutcome | None = None  # once the server answered
    index: int = 0  # its place in the batch, from 1


def _open_local(local: str) -> tuple[BinaryIO, int]:
    try:
        source = open(local, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise local_error(exc, local) from exc
    st = os.fstat(source.fileno())
    if not stat.S_ISREG(st.st_mode):
        source.close()
        raise LocalError(f"not a regular file: {local}")
    return source, st.st_size


def put_many(
    client: FileTransferClient,
    pairs: Iterable[tuple[str, str]],
    monitor_for: MonitorFor | None = None,
    stop_at_failure: bool = False,
) -> Iterator[FileOutcome]:
    """Upload each ``(remote, local)`` pair; one outcome per file, in order.

    Each file is offered (the server reserves its space or refuses it)
    ahead of its data; ``monitor_for(local)`` gives a progress monitor per file.
    With ``stop_at_failure`` nothing after the first failed file is stored:
    later offers are withdrawn (their outcome: ``461``) and no more are made.
    """
    window = server_window(client)
    if window is None:
        yield from one_by_one(
            pairs, lambda r, loc, m: client.put(loc, r, m), monitor_for, lambda _, loc: loc
        )
        return
    channel = client.channel
    todo = iter(pairs)
    order: deque[_Upload | FileOutcome] = deque()  # every file, in the order given
    expected: deque[tuple[str, _Upload]] = deque()  # the server's answers still to come
    next_up: tuple[str, str, BinaryIO, int] | None = None
    request_bytes = 0
    done = False
    failed_at: int | None = None  # the first failed file's place, with stop_at_failure
    try:
        while True:
            while order and _settled(order[0]):
                yield _outcome(order.popleft())
            batch = []
            while not done and request_bytes < REQUEST_BYTES:
                if next_up is None:
                    pair = next(todo, None)
                    if pair is None:
                        done = True
                        break
                    try:
                        source, size = _open_local(pair[1])
                    except LocalError as exc:  # its turn comes after the files before it
                        order.append(FileOutcome(pair[0], pair[1], None, exc))
                        if stop_at_failure:
                            failed_at, done = len(order), True
                        continue
                    next_up = (pair[0], pair[1], source, size)
                remote, local, source, size = next_up
                if not window.admits(size):
                    break
                next_up = None
                handshake = ClientOffer(remote, size)
                message = handshake.request()
                upload = _Upload(handshake, local, source, len(message.encode()) + 4, 0.0)
                upload.index = len(order) + 1
                window.take(size)
                request_bytes += upload.cost
                expected.append(("offer", upload))
                order.append(upload)
                batch.append(message)
            if batch:
                channel.send(*batch)
            if not expected:
                if not order:
                    return
                continue
            kind, upload = expected.popleft()
            if kind == "offer":
                request_bytes -= upload.cost
                try:
                    upload.handshake.ready(channel.recv())
                except RemoteError as exc:
                    window.give(upload.handshake.size)
                    upload.source.close()
                    upload.outcome = FileOutcome(upload.handshake.path, upload.local, None, exc)
                    if stop_at_failure:
                        done = True
                        failed_at = min(failed_at or upload.index, upload.index)
                    continue
                if failed_at is not None and upload.index > failed_at:
                    channel.send(upload.handshake.withdraw())
                    expected.append(("withdrawn", upload))
                    continue
                monitor = monitor_for(upload.local) if monitor_for else None
                _send_data(client, upload, monitor)
                expected.append(("send", upload))
                continue
            window.give(upload.handshake.size)
            upload.source.close()
            upload.outcome = _answered(upload, channel.recv(), kind == "withdrawn")
            if stop_at_failure and upload.outcome.error is not None and failed_at is None:
                done, failed_at = True, upload.index
    except GeneratorExit:  # the caller stopped, between two files
        if channel.in_step:
            _drain_offers(client, expected)
        raise
    except BaseException:
        if expected:  # the stream may stop mid-file: nothing after this can be read
            client.close()
        raise
    finally:
        if next_up is not None:
            next_up[2].close()
        for _, item in expected:
            item.source.close()


def _settled(item: _Upload | FileOutcome) -> bool:
    return isinstance(item, FileOutcome) or item.outcome is not None


def _outcome(item: _Upload | FileOutcome) -> FileOutcome:
    if isinstance(item, FileOutcome):
        return item
    assert item.outcome is not None
    return item.outcome


def _send_data(client: FileTransferClient, upload: _Upload, monitor: Monitor | None) -> None:
    """``send``, the file's data and its digest (``send|abort`` if the file fell short)."""
    channel = client.channel
    handshake = upload.handshake
    size = handshake.size
    upload.started = time.monotonic()
    if monitor:
        monitor.start(size, 0)
    try:
        if size <= SMALL_FILE:
            data = upload.source.read(size) or b""
            if len(data) == size:
                handshake.hasher.update(data)
                channel.send_parts(handshake.send(), data, handshake.digest())
                if monitor:
                    monitor.update(size)
                return
            upload.source.seek(0)
        channel.send(handshake.send())
        sent = client._send(upload.source, 0, size, handshake.hasher, monitor)
        if sent < size:
            upload.short = True
            channel.send(handshake.abort())
        else:
            channel.send(handshake.digest())
    except (ConnectionError, TimeoutError) as exc:
        client._raise_farewell(exc)  # a server that gave up says why before it closes
        raise
    finally:
        if monitor:
            monitor.close()


def _answered(upload: _Upload, reply: Message, withdrawn: bool = False) -> FileOutcome:
    """The outcome of an upload from the server's answer to its data (or its withdrawal)."""
    handshake = upload.handshake
    remote, local = handshake.path, upload.local
    if withdrawn:
        handshake.aborted(reply)
        text = f"upload aborted after an earlier failure: {remote}"
        return FileOutcome(remote, local, None, RemoteError(ErrorCode.TRANSFER_ABORTED, text))
    if upload.short:
        handshake.aborted(reply)
        return FileOutcome(
            remote, local, None, LocalError(f"file shrank while it was sent: {local}")
        )
    try:
        claimed = handshake.check(reply)
    except RemoteError as exc:
        return FileOutcome(remote, local, None, exc)
    seconds = time.monotonic() - upload.started
    return FileOutcome(
        remote, local, TransferResult(remote, local, handshake.size, claimed, seconds)
    )


def _drain_offers(client: FileTransferClient, expected: deque[tuple[str, _Upload]]) -> None:
    """Finish what is in flight without sending more data: withdraw ready offers."""
    channel = client.channel
    while expected:
        kind, upload = expected.popleft()
        reply = channel.recv()
        if kind != "offer":
            upload.source.close()
            continue
        try:
            upload.handshake.ready(reply)
        except RemoteError:
            continue
        channel.send(upload.handshake.withdraw())
        expected.append(("withdrawn", upload))
