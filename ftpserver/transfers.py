"""The server's side of the two transfer handshakes (see docs/PROTOCOL.md, section 5).

:func:`send_download` answers ``get`` from an open file with ``sendfile``;
:func:`receive_upload` answers ``put`` into an :class:`~ftpserver.fsops.Upload`.
Both resume from an offset when the client's digest of the part it already
has matches, and both end with the digest (BLAKE3) of the whole file.  The
messages and their order are :mod:`ftpproto.handshake`'s (``ServerGet``,
``ServerPut``, shared with the client's side); here is the file's side.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from ftpfiles.files import BackgroundDigest, file_digest
from ftpproto.channel import Channel, Progress
from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.handshake import Resume, ServerGet, ServerPut, parse_resume
from ftpserver.digests import DigestCache
from ftpserver.fsops import Upload

__all__ = ["Resume", "open_regular", "parse_resume", "receive_upload", "send_download"]


def open_regular(real: str, virtual: str) -> BinaryIO:
    """Open a regular file for reading; refuse folders, FIFOs and devices."""
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder: {virtual}")
        raise ProtocolError(ErrorCode.BAD_PATH, f"not a regular file: {virtual}")
    return open(fd, "rb", buffering=0)


def send_download(
    channel: Channel,
    source: BinaryIO,
    virtual: str,
    resume: Resume | None,
    pace: Progress | None = None,
    step: int = 4 * 1024 * 1024,
    digests: DigestCache | None = None,
) -> tuple[int, str] | None:
    """Run the ``get`` handshake for an open file; ``(bytes sent, digest)``, or None if aborted.

    The size is the open file's (``fstat``), so a file replaced meanwhile is
    sent in the version that was opened.
    """
    before = os.fstat(source.fileno())
    known = digests.get(before, source.fileno()) if digests else None
    handshake = ServerGet(
        virtual, before.st_size, resume, lambda count: file_digest(source, 0, count)[0]
    )
    channel.send(handshake.ready())
    if not handshake.answer(channel.recv()):
        return None
    offset, count, hasher = handshake.offset, handshake.count, handshake.hasher
    background = None if known else BackgroundDigest(source, offset, count, hasher)
    try:
        sent = channel.send_file(source, offset, count, pace, step)
    except (ConnectionError, TimeoutError):
        raise
    except OSError as exc:
        # The data stream cannot be put back in step after a read error.
        raise ConnectionAbortedError(f"reading {virtual} failed: {exc.strerror}") from exc
    finally:
        hashed = background.result()[1] if background else count
    after = os.fstat(source.fileno())
    # Writes change the size or st_mtime; st_ctime also moves when the file is
    # merely unlinked or replaced by a rename, which leaves this version intact.
    unchanged = (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if sent < count or hashed < count or not unchanged:
        raise handshake.file_changed()
    hexdigest = known or hasher.hexdigest()
    if digests and not known:
        digests.put(before, hexdigest, source.fileno())
    channel.send(handshake.digest(hexdigest))
    return count, hexdigest


def receive_upload(
    channel: Channel,
    upload: Upload,
    virtual: str,
    size: int,
    resume: Resume | None,
    pace: Progress | None = None,
    digests: DigestCache | None = None,
) -> tuple[int, str]:
    """Run the ``put`` handshake into ``upload`` and commit it; ``(bytes received, digest)``."""
    offset, hasher = upload.start(size, resume)
    handshake = ServerPut(virtual, size, resume, offset, hasher)
    channel.send(handshake.ready())
    assert upload.writer is not None
    channel.recv_file(upload.writer, handshake.count, hasher, pace)
    final = channel.recv()  # a connection lost here still keeps every byte for resuming
    upload.keep_partial = False  # from here on the outcome is decided: commit or discard
    hexdigest = handshake.check(final)
    upload.commit(digests, hexdigest)
    return handshake.count, hexdigest
