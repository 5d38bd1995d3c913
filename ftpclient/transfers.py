"""File transfers on one connection: the ``get``/``put`` half of the client.

:class:`Transfers` is a mixin of :class:`~ftpclient.client.FileTransferClient`
that works on the client's ``channel``: one file at a time with
:meth:`~Transfers.get` and :meth:`~Transfers.put` (resumable, verified by
BLAKE3 digest), plus the request/reply basics (``_call``, ``close``) both
halves use.  Many files pipelined: :mod:`ftpclient.pipelined`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
from typing import BinaryIO

from ftpclient.datatypes import LocalError, Monitor, TransferResult
from ftpclient.partfiles import PART_SUFFIX, local_error, local_target, open_part
from ftpproto.channel import SENDFILE_MIN, Channel
from ftpproto.digest import Hasher
from ftpproto.errors import ConnectionClosed, MessageError, ProtocolError, ServerClosed
from ftpproto.handshake import ClientGet, ClientPut
from ftpproto.messages import Message, parse_size, request

__all__ = ["FAREWELL_WAIT", "Transfers"]

FAREWELL_WAIT = 2.0  # seconds to read why the server closed a connection mid-transfer


class Transfers:
    """Downloads and uploads over ``self.channel`` (mixed into the client)."""

    channel: Channel

    def close(self) -> None:
        """Close the connection without saying goodbye.

        Shut down first: a thread still reading from it (``mirror``'s reader
        of a ``tree`` answer, after Ctrl-C) wakes then, where a close alone
        leaves it waiting until its timeout, and the server's session with it.
        """
        with contextlib.suppress(OSError):
            self.channel.sock.shutdown(socket.SHUT_RDWR)
        self.channel.close()

    def _call(self, command: str, *args: str) -> Message:
        """Send a request and return its reply; raise RemoteError for an error reply."""
        self.channel.send(request(command, *args))
        return self._reply(command)

    def _reply(self, command: str) -> Message:
        return self.channel.recv().check_reply(command)

    def get(
        self,
        remote: str,
        local: str | None = None,
        monitor: Monitor | None = None,
        resume: bool = False,
    ) -> TransferResult:
        """Download ``remote`` to ``local`` (default: its name in the current folder).

        Data goes to ``<local>.part``, renamed into place once the digest of
        the whole file matched.  An interrupted download (connection lost,
        Ctrl-C) keeps the ``.part`` file; with ``resume=True`` it is continued
        if the server's file starts with the same bytes, else started over.
        """
        from ftpfiles import files  # here, not at the top: only a transfer needs it (blake3, mmap)

        target = local_target(local, remote)
        part = target + PART_SUFFIX
        started = time.monotonic()
        offer: tuple[int, Hasher] | None = None
        if resume and os.path.isfile(part):
            with open(part, "rb") as existing:
                prefix, have = files.file_digest(existing, 0, os.fstat(existing.fileno()).st_size)
            offer = (have, prefix)
        handshake = ClientGet(remote, offer)
        self.channel.send(handshake.request())
        try:
            handshake.ready(self.channel.recv())
        except MessageError:
            if handshake.state == "ready":  # a ready that does not fit: call it off
                self.channel.send(handshake.abort())
            raise
        count, offset = handshake.count, handshake.offset
        try:
            fd = open_part(part, offset)
        except OSError as exc:
            self.channel.send(handshake.abort())
            raise local_error(exc, part) from exc
        keep_part = True
        try:
            writer = files.GuardedWriter(fd)
            self.channel.send(handshake.recv_ready())
            if monitor:
                monitor.start(offset + count, offset)
            update = monitor.update if monitor else None
            self.channel.recv_file(writer, count, handshake.hasher, update)
            keep_part = False  # every byte arrived: only a verified file is kept now
            claimed = handshake.check(self.channel.recv())
            if writer.error is not None:
                raise local_error(writer.error, part)
            os.replace(part, target)  # still locked: no other download can open it meanwhile
            os.close(fd)
            fd = -1
        except BaseException:
            if fd >= 0:
                os.close(fd)
            if not keep_part:
                with contextlib.suppress(OSError):
                    os.unlink(part)
            raise
        finally:
            if monitor:
                monitor.close()
        return TransferResult(remote, target, count, claimed, time.monotonic() - started, offset)

    def put(
        self,
        local: str,
        remote: str | None = None,
        monitor: Monitor | None = None,
        resume: bool = False,
    ) -> TransferResult:
        """Upload ``local`` to ``remote`` (default: its name in the remote folder).

        With ``resume=True`` an interrupted upload the server kept is
        continued if it matches the start of the local file, else started over.
        """
        target = remote if remote else os.path.basename(local.rstrip(os.sep))
        from ftpfiles import files  # here, not at the top: only a transfer needs it (blake3, mmap)

        started = time.monotonic()
        try:
            source = open(local, "rb", buffering=0)  # noqa: SIM115 - closed below
        except OSError as exc:
            raise local_error(exc, local) from exc
        with source:
            st = os.fstat(source.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise LocalError(f"not a regular file: {local}")
            offer: tuple[int, Hasher] | None = None
            if resume:
                have = self.partial(target)
                if 0 < have <= st.st_size:
                    offer = (have, files.file_digest(source, 0, have)[0])
            handshake = ClientPut(target, st.st_size, offer)
            self.channel.send(handshake.request())
            reply = self.channel.recv()
            try:
                handshake.ready(reply)
            except MessageError as exc:
                if reply.status != "ready":
                    raise
                self.close()  # the server waits for data this client cannot make sense of
                raise ConnectionAbortedError(f"bad reply from the server: {exc}") from exc
            count, offset = handshake.count, handshake.offset
            source.seek(offset)
            if monitor:
                monitor.start(offset + count, offset)
            try:
                sent = self._send(source, offset, count, handshake.hasher, monitor)
            finally:
                if monitor:
                    monitor.close()
            if sent < count:
                self.channel.send(handshake.abort())
                handshake.aborted(self.channel.recv())
                raise LocalError(f"file shrank while it was sent: {local}")
            try:
                self.channel.send(handshake.digest())
            except (ConnectionError, TimeoutError) as exc:  # the data fitted in the buffers
                self._raise_farewell(exc)
                raise
            claimed = handshake.check(self.channel.recv())
        return TransferResult(target, local, count, claimed, time.monotonic() - started, offset)

    def partial(self, remote: str) -> int:
        """Bytes of an interrupted upload to ``remote`` the server keeps (0 if none)."""
        (size,) = self._call("partial", remote).expect("partial", "ok", 1)
        return parse_size(size)

    def _send(
        self, source: BinaryIO, offset: int, count: int, hasher: Hasher, monitor: Monitor | None
    ) -> int:
        """Send an upload's data, hashing it; the bytes read (fewer: the file shrank)."""
        from ftpfiles import files  # see get

        update = monitor.update if monitor else None
        try:
            if count < SENDFILE_MIN:
                return self.channel.send_stream(source, count, hasher, update)
            # sendfile in this thread, the digest of the same bytes in a helper
            background = files.BackgroundDigest(source, offset, count, hasher)
            sent = 0
            try:
                sent = self.channel.send_file(source, offset, count, update, 1 << 20)
            finally:
                hashed = background.result()[1]
            return min(sent, hashed)
        except (ConnectionError, TimeoutError) as exc:
            self._raise_farewell(exc)
            raise

    def _raise_farewell(self, lost: BaseException) -> None:
        """After ``lost`` mid-upload: raise why the server closed, if it said so."""
        message = self.channel.last_message(FAREWELL_WAIT)
        if message is None or (message.command, message.status) != ("error", "error"):
            return
        try:
            message.raise_if_error()
        except ConnectionClosed as exc:
            raise exc from lost
        except ProtocolError as exc:
            raise ServerClosed(exc.text) from lost
