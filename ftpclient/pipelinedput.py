"""Pipelined uploads: many files offered and sent on one connection (PROTOCOL.md 5.4).

:func:`put_many` offers each file ahead of its data (the server reserves its
space or refuses it), keeps up to the window in flight and yields one
:class:`~ftpclient.pipelined.FileOutcome` per file, in order; the shared
pieces (window, outcomes, the one-by-one fallback) are :mod:`ftpclient.pipelined`'s.
"""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ftpclient.datatypes import LocalError, Monitor, TransferResult
from ftpclient.partfiles import local_error
from ftpclient.pipelined import FileOutcome, MonitorFor, one_by_one, server_window
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.messages import Message
from ftpproto.pipeline import REQUEST_BYTES, ClientOffer

if TYPE_CHECKING:
    from ftpclient.client import FileTransferClient

__all__ = ["SMALL_FILE", "put_many"]

SMALL_FILE = 256 * 1024  # up to this size an upload goes out in one write with its messages


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
            # Offers go out in batches: once the window is half free (fewer writes and
            # wake-ups on both sides than one offer per file sent).
            refill = window.held_files <= window.files // 2
            while refill and not done and request_bytes < REQUEST_BYTES:
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
                withdrawn = failed_at is not None and upload.index > failed_at
                if withdrawn:
                    channel.send(upload.handshake.withdraw())
                else:
                    monitor = monitor_for(upload.local) if monitor_for else None
                    _send_data(client, upload, monitor)
                # The server frees the offer's place in its window when it reads this send,
                # before any later offer (one ordered stream): the next offers need not wait
                # a round trip for its answer.
                window.give(upload.handshake.size)
                upload.source.close()
                expected.append(("withdrawn" if withdrawn else "send", upload))
                continue
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
