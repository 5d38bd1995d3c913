"""Many files on one connection, pipelined (docs/PROTOCOL.md, section 5.4).

This module holds the downloads and what both directions share; the
uploads are :mod:`ftpclient.pipelinedput`'s.

:func:`get_many` and :func:`~ftpclient.pipelinedput.put_many` take ``(remote, local)`` pairs and
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
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ftpclient.datatypes import LocalError, Monitor, TransferResult
from ftpclient.partfiles import PART_SUFFIX, local_error, open_part
from ftpfiles.files import GuardedWriter
from ftpproto.errors import ErrorCode, ProtocolError, RemoteError
from ftpproto.pipeline import REQUEST_BYTES, ClientFetch, Window, parse_window

if TYPE_CHECKING:
    from ftpclient.client import FileTransferClient

__all__ = [
    "WINDOW",
    "FileOutcome",
    "MonitorFor",
    "get_many",
    "one_by_one",
]

WINDOW = Window(256, 256 * 1024 * 1024)  # the client's own cap; the server's is usually smaller
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
