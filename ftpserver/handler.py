"""One client session: login state, the dispatch loop and the ``cmd_<name>`` methods.

The loop reads one framed message at a time and :meth:`SessionHandler.dispatch`
checks it against the command table (known? logged in? right arguments?)
before it calls ``getattr(self, "cmd_" + name)``; nothing else on the
handler is reachable by a client.  Command methods raise
:class:`ProtocolError` or ``OSError``; the dispatcher turns both into one
error reply and the session goes on.  A framing violation is answered and
the connection closed; an unexpected exception is logged with its traceback
and closes only this session.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import socket
import socketserver
import stat
import time
from typing import TYPE_CHECKING

from ftpproto.channel import Channel, file_digest
from ftpproto.commands import COMMANDS, lookup
from ftpproto.errors import ErrorCode, FramingError, MessageError, ProtocolError
from ftpproto.messages import (
    Message,
    digest,
    error,
    ok,
    parse_digest,
    parse_size,
    ready,
)
from ftpserver.fsops import Upload, list_entries, os_error, stat_entry
from ftpserver.jail import Jail
from ftpserver.users import User

if TYPE_CHECKING:
    from ftpserver.server import FileTransferServer

__all__ = ["SessionHandler"]

log = logging.getLogger("ftpserver.session")
LISTING_BATCH = 256


class _CloseSession(Exception):
    """Raised by a command to end the session after its reply."""


class SessionHandler(socketserver.BaseRequestHandler):
    """Serves one connection; session state lives on ``self``, shared state on ``self.server``."""

    server: FileTransferServer
    request: socket.socket

    def setup(self) -> None:
        self.settings = self.server.settings
        self.request.settimeout(self.settings.idle_timeout)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.channel = Channel(self.request)
        self.user: User | None = None
        self._jail: Jail | None = None
        self.failed_logins = 0
        host, port = self.client_address[:2]
        self.peer = f"{host}:{port}"

    @property
    def jail(self) -> Jail:
        """The logged-in user's jail (the dispatcher guarantees a login first)."""
        assert self._jail is not None
        return self._jail

    def handle(self) -> None:
        try:
            while True:
                try:
                    message = self.channel.recv()
                except MessageError as exc:
                    self.channel.send(error("error", exc))
                    continue
                if not self.dispatch(message):
                    return
        except FramingError as exc:
            log.warning("framing violation from %s: %s", self.peer, exc)
            self._try_send(error("error", exc))
        except (ConnectionError, TimeoutError) as exc:
            log.debug("session %s ended: %s", self.peer, exc)
        except Exception:
            log.exception("internal error in session %s; closing it", self.peer)
            self._try_send(error("error", ProtocolError(ErrorCode.INTERNAL, "internal error")))

    def _try_send(self, message: Message) -> None:
        with contextlib.suppress(OSError):
            self.channel.send(message)

    def dispatch(self, message: Message) -> bool:
        """Check ``message`` against the command table and run it; False ends the session."""
        name = message.command
        spec = lookup(name)
        try:
            if spec is None:
                raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command: {name}")
            if spec.needs_login and self.user is None:
                raise ProtocolError(ErrorCode.NOT_LOGGED_IN, f"log in first: {name}")
            if not spec.accepts(len(message.fields)):
                raise ProtocolError(ErrorCode.BAD_REQUEST, f"usage: {spec.usage}")
            getattr(self, "cmd_" + spec.name)(*message.fields)
        except _CloseSession:
            return False
        except (ConnectionError, TimeoutError, FramingError):
            raise
        except ProtocolError as exc:
            self.channel.send(error(name, exc))
        except OSError as exc:
            path_arg = spec is not None and (spec.required + spec.optional)[:1] == ("PATH",)
            subject = message.fields[0] if path_arg and message.fields else None
            self.channel.send(error(name, os_error(exc, subject)))
        return True

    # -- commands that work before login ------------------------------------

    def cmd_login(self, name: str, password: str) -> None:
        if self.user is not None:
            raise ProtocolError(ErrorCode.BAD_STATE, f"already logged in as {self.user.name}")
        user = self.server.users.authenticate(name, password)
        if user is None:
            self.failed_logins += 1
            log.warning("login failed: user=%r peer=%s", name, self.peer)
            time.sleep(self.settings.login_failure_delay)
            if self.failed_logins >= self.settings.max_login_attempts:
                failure = ProtocolError(ErrorCode.TOO_MANY_FAILURES, "too many failed logins")
                self.channel.send(error("login", failure))
                raise _CloseSession
            raise ProtocolError(ErrorCode.LOGIN_FAILED, "login incorrect")
        os.makedirs(user.home, exist_ok=True)
        self.user = user
        self._jail = Jail(user.home)
        log.info("login: user=%s peer=%s", user.name, self.peer)
        self.channel.send(ok("login", user.name))

    def cmd_help(self, name: str | None = None) -> None:
        if name is None:
            self.channel.send(ok("help", *COMMANDS))
            return
        spec = lookup(name)
        if spec is None:
            raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command: {name}")
        self.channel.send(ok("help", spec.usage, spec.summary))

    def cmd_quit(self) -> None:
        self.channel.send(ok("quit"))
        raise _CloseSession

    # -- navigation ----------------------------------------------------------

    def cmd_pwd(self) -> None:
        self.channel.send(ok("pwd", self.jail.cwd))

    def cmd_cd(self, path: str) -> None:
        virtual, real = self.jail.resolve(path)
        if not stat.S_ISDIR(os.stat(real).st_mode):
            raise ProtocolError(ErrorCode.NOT_DIRECTORY, f"not a folder: {virtual}")
        self.jail.chdir(virtual)
        self.channel.send(ok("cd", virtual))

    def cmd_ls(self, path: str = ".") -> None:
        virtual, real = self.jail.resolve(path)
        if stat.S_ISDIR(os.stat(real).st_mode):
            entries = list_entries(self.jail, real)
        else:
            entries = iter([stat_entry(self.jail, posixpath.basename(virtual), real)])
        batch: list[Message] = []
        count = 0
        for name, kind, size, mtime in entries:
            batch.append(Message("ls", ("entry", name, kind, str(size), str(mtime))))
            count += 1
            if len(batch) == LISTING_BATCH:
                self.channel.send(*batch)
                batch.clear()
        self.channel.send(*batch, ok("ls", str(count)))

    # -- transfers -----------------------------------------------------------

    def cmd_get(self, path: str) -> None:
        virtual, real = self.jail.resolve(path)
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb", buffering=0) as source:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder: {virtual}")
            if not stat.S_ISREG(st.st_mode):
                raise ProtocolError(ErrorCode.BAD_PATH, f"not a regular file: {virtual}")
            size = st.st_size
            self.channel.send(ready("get", size))
            answer = self.channel.recv()
            if answer.command == "get" and answer.status == "abort":
                return
            answer.expect("get", "recv_ready", 0)
            started = time.monotonic()
            try:
                sent = self.channel.send_file(source, 0, size)
                hexdigest, hashed = file_digest(source, 0, size)
            except (ConnectionError, TimeoutError):
                raise
            except OSError as exc:
                # The data stream cannot be resynchronised after a read error.
                raise ConnectionAbortedError(f"reading {virtual} failed: {exc.strerror}") from exc
            if sent < size or hashed < size:
                self._log_transfer("get", virtual, size, started, "", "changed")
                raise ProtocolError(ErrorCode.FILE_CHANGED, f"file changed while sent: {virtual}")
            self.channel.send(digest("get", hexdigest))
            self._log_transfer("get", virtual, size, started, hexdigest, "ok")

    def cmd_put(self, path: str, size_text: str) -> None:
        size = parse_size(size_text)
        virtual, real = self.jail.resolve(path)
        if os.path.isdir(real):
            raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder: {virtual}")
        folder = os.path.dirname(real)
        if not os.path.isdir(folder):
            parent = posixpath.dirname(virtual)
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no such folder: {parent}")
        fs = os.statvfs(folder)
        if size > fs.f_bavail * fs.f_frsize:
            raise ProtocolError(
                ErrorCode.NO_SPACE, f"not enough space on the server for {size} bytes"
            )
        hasher = hashlib.sha256()
        started = time.monotonic()
        with Upload(real, self.server.file_mode, self.settings.fsync_uploads) as upload:
            self.channel.send(ready("put", size))
            self.channel.recv_file(upload.writer, size, hasher)
            final = self.channel.recv()
            if final.command == "put" and final.status == "abort":
                self._log_transfer("put", virtual, size, started, "", "aborted")
                raise ProtocolError(ErrorCode.TRANSFER_ABORTED, f"upload aborted: {virtual}")
            (claimed,) = final.expect("put", "digest", 1)
            if parse_digest(claimed) != hasher.hexdigest():
                self._log_transfer("put", virtual, size, started, claimed, "digest mismatch")
                raise ProtocolError(ErrorCode.DIGEST_MISMATCH, f"digest mismatch: {virtual}")
            upload.commit()
        self._log_transfer("put", virtual, size, started, hasher.hexdigest(), "ok")
        self.channel.send(ok("put", str(size), hasher.hexdigest()))

    def _log_transfer(
        self, kind: str, virtual: str, size: int, started: float, hexdigest: str, outcome: str
    ) -> None:
        log.info(
            "%s: user=%s path=%s bytes=%d seconds=%.3f sha256=%s outcome=%s",
            kind,
            self.user.name if self.user else "-",
            virtual,
            size,
            time.monotonic() - started,
            hexdigest or "-",
            outcome,
        )
