"""The server's side of the two transfer handshakes (see docs/PROTOCOL.md, section 5).

:func:`send_download` answers ``get`` from a storage
:class:`~ftpserver.storage.base.ReadHandle` (with ``sendfile`` when it has a
file descriptor, else reading it piece by piece); :func:`receive_upload`
answers ``put`` into an :class:`~ftpserver.storage.base.UploadHandle`.
:func:`handle_digest` is the digest of an open file (remembered or computed).
Both handshakes resume from an offset when the client's digest of the part it already
has matches, and both end with the digest (BLAKE3) of the whole file.  The
messages and their order are :mod:`ftpproto.handshake`'s (``ServerGet``,
``ServerPut``, shared with the client's side); here is the file's side.
"""

from __future__ import annotations

from typing import BinaryIO, cast

from ftpfiles.files import BackgroundDigest, file_digest
from ftpproto.channel import Channel, Progress
from ftpproto.digest import Hasher, new_hasher
from ftpproto.handshake import Resume, ServerGet, ServerPut, parse_resume
from ftpserver.storage.base import ReadHandle, UploadHandle

__all__ = [
    "Resume",
    "handle_digest",
    "parse_resume",
    "receive_upload",
    "send_download",
    "stream_file",
]

_PIECE = 1024 * 1024


def _read_digest(source: ReadHandle, count: int) -> tuple[Hasher, int]:
    """The digest of the first ``count`` bytes of a handle; the position is left after them."""
    fd = source.fileno()
    if fd is not None:
        with open(fd, "rb", buffering=0, closefd=False) as fileobj:
            return file_digest(fileobj, 0, count)
    hasher, done = new_hasher(), 0
    source.seek(0)
    view = memoryview(bytearray(min(count, _PIECE)))
    while done < count:
        n = source.readinto(view[: min(count - done, _PIECE)])
        if not n:
            break
        hasher.update(view[:n])
        done += n
    return hasher, done


def handle_digest(source: ReadHandle) -> str:
    """The digest of an open file: remembered, or computed now and remembered."""
    known = source.stored_digest()
    if known is not None:
        return known
    hasher, count = _read_digest(source, source.size)
    hexdigest = hasher.hexdigest()
    if count == source.size and not source.changed():
        source.store_digest(hexdigest)
    return hexdigest


def send_download(
    channel: Channel,
    source: ReadHandle,
    virtual: str,
    resume: Resume | None,
    pace: Progress | None = None,
    step: int = 4 * 1024 * 1024,
) -> tuple[int, str] | None:
    """Run the ``get`` handshake for an open file; ``(bytes sent, digest)``, or None if aborted.

    The size is the opened version's, so a file replaced meanwhile is sent
    in the version that was opened.
    """
    handshake = ServerGet(
        virtual, source.size, resume, lambda count: _read_digest(source, count)[0]
    )
    channel.send(handshake.ready())
    if not handshake.answer(channel.recv()):
        return None
    offset, count, hasher = handshake.offset, handshake.count, handshake.hasher
    hexdigest = stream_file(channel, source, virtual, offset, count, hasher, pace, step)
    if hexdigest is None:
        raise handshake.file_changed()
    channel.send(handshake.digest(hexdigest))
    return count, hexdigest


def stream_file(
    channel: Channel,
    source: ReadHandle,
    virtual: str,
    offset: int,
    count: int,
    hasher: Hasher,
    pace: Progress | None,
    step: int,
) -> str | None:
    """Send ``count`` bytes of a download's data from ``offset``; the file's digest.

    None if the file changed while it was sent (the data was padded to
    ``count``: the caller sends the error instead of the digest).
    """
    known = source.stored_digest()
    try:
        sent, hashed = _send(channel, source, offset, count, hasher, known, pace, step)
    except (ConnectionError, TimeoutError):
        raise
    except OSError as exc:
        # The data stream cannot be put back in step after a read error.
        raise ConnectionAbortedError(f"reading {virtual} failed: {exc.strerror}") from exc
    if sent < count or hashed < count or source.changed():
        return None
    hexdigest = known or hasher.hexdigest()
    if not known:
        source.store_digest(hexdigest)
    return hexdigest


def _send(
    channel: Channel,
    source: ReadHandle,
    offset: int,
    count: int,
    hasher: Hasher,
    known: str | None,
    pace: Progress | None,
    step: int,
) -> tuple[int, int]:
    """Send ``count`` bytes from ``offset``, hashing them unless the digest is ``known``.

    ``sendfile`` (and the digest in a helper thread) where the handle has a
    file descriptor, else read, hash and send piece by piece.  Returns the
    bytes sent and the bytes hashed.
    """
    fd = source.fileno()
    if fd is None:
        source.seek(offset)
        sent = channel.send_stream(cast("BinaryIO", source), count, hasher, pace)
        return sent, sent
    with open(fd, "rb", buffering=0, closefd=False) as fileobj:
        background = None if known else BackgroundDigest(fileobj, offset, count, hasher)
        try:
            sent = channel.send_file(fileobj, offset, count, pace, step)
        finally:
            hashed = background.result()[1] if background else count
    return sent, hashed


def receive_upload(
    channel: Channel,
    upload: UploadHandle,
    virtual: str,
    size: int,
    resume: Resume | None,
    pace: Progress | None = None,
) -> tuple[int, str]:
    """Run the ``put`` handshake into ``upload`` and commit it; ``(bytes received, digest)``."""
    offset, hasher = upload.start(size, resume)
    handshake = ServerPut(virtual, size, resume, offset, hasher)
    channel.send(handshake.ready())
    channel.recv_file(upload.sink, handshake.count, hasher, pace)
    final = channel.recv()  # a connection lost here still keeps every byte for resuming
    upload.keep_partial = False  # from here on the outcome is decided: commit or discard
    hexdigest = handshake.check(final)
    upload.commit(hexdigest)
    return handshake.count, hexdigest
