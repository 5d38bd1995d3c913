"""The server's side of the two transfer handshakes (see docs/PROTOCOL.md, section 5).

:func:`send_download` answers ``get`` from an open file with ``sendfile``;
:func:`receive_upload` answers ``put`` into an :class:`~ftpserver.fsops.Upload`.
Both resume from an offset when the client's digest of the part it already
has matches, and both end with the digest (BLAKE3) of the whole file.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from ftpproto.channel import BackgroundDigest, Channel, Progress, file_digest
from ftpproto.commands import COMMANDS
from ftpproto.digest import new_hasher
from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.messages import digest, parse_digest, parse_size, ready
from ftpserver.digests import DigestCache
from ftpserver.fsops import Upload

__all__ = ["Resume", "open_regular", "parse_resume", "receive_upload", "send_download"]

Resume = tuple[int, str]  # offset, digest of the bytes before it


def parse_resume(command: str, fields: tuple[str, ...]) -> Resume | None:
    """``(offset, prefix_digest)`` from a request's optional fields, or ``None``."""
    if not fields:
        return None
    if len(fields) != 2:
        spec = COMMANDS[command]
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"usage: {spec.usage} (both or neither)")
    return parse_size(fields[0]), parse_digest(fields[1])


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
    size = before.st_size
    known = digests.get(before, source.fileno()) if digests else None
    offset = 0
    hasher = new_hasher()
    if resume is not None and resume[0] <= size:
        prefix, _ = file_digest(source, 0, resume[0])
        if prefix.hexdigest() == resume[1]:
            offset, hasher = resume[0], prefix
    channel.send(ready("get", size - offset, None if resume is None else offset))
    answer = channel.recv()
    if answer.command == "get" and answer.status == "abort":
        return None
    answer.expect("get", "recv_ready", 0)
    count = size - offset
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
        raise ProtocolError(ErrorCode.FILE_CHANGED, f"file changed while sent: {virtual}")
    hexdigest = known or hasher.hexdigest()
    if digests and not known:
        digests.put(before, hexdigest, source.fileno())
    channel.send(digest("get", hexdigest))
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
    channel.send(ready("put", size - offset, None if resume is None else offset))
    assert upload.writer is not None
    channel.recv_file(upload.writer, size - offset, hasher, pace)
    final = channel.recv()  # a connection lost here still keeps every byte for resuming
    upload.keep_partial = False  # from here on the outcome is decided: commit or discard
    if final.command == "put" and final.status == "abort":
        raise ProtocolError(ErrorCode.TRANSFER_ABORTED, f"upload aborted: {virtual}")
    (claimed,) = final.expect("put", "digest", 1)
    hexdigest = hasher.hexdigest()
    if parse_digest(claimed) != hexdigest:
        raise ProtocolError(ErrorCode.DIGEST_MISMATCH, f"digest mismatch: {virtual}")
    upload.commit(digests, hexdigest)
    return size - offset, hexdigest
