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
import dataclasses
import logging
import os
import posixpath
import socket
import socketserver
import stat
import threading
import time
from typing import TYPE_CHECKING

from ftpproto.channel import Channel, Deadlines, Progress
from ftpproto.commands import COMMANDS, lookup
from ftpproto.errors import ErrorCode, FramingError, MessageError, ProtocolError
from ftpproto.messages import Message, error, ok, parse_size
from ftpserver.fsops import (
    Upload,
    list_entries,
    os_error,
    partial_path,
    remove_folder,
    remove_tree,
    rename_noreplace,
    stat_entry,
)
from ftpserver.guards import pacer
from ftpserver.jail import Jail
from ftpserver.transfers import open_regular, parse_resume, receive_upload, send_download
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
        self.user: User | None = None
        self._jail: Jail | None = None
        self.failed_logins = 0
        self.busy = False
        self._has_slot = False
        self._cancelled = threading.Event()
        self.ip = str(self.client_address[0])
        self.peer = f"{self.ip}:{self.client_address[1]}"
        self.connected_at = time.monotonic()
        self._fileno = self.request.fileno()
        self._login_by = self.connected_at + self.settings.login_timeout
        self.evicted = False

    def _open(self) -> bool:
        """A session slot and the TLS handshake (if configured); False if the session must end.

        The slot comes first, so a connection still in its handshake counts
        against the session limits; a refused one still gets its ``421``
        over TLS, and holds no slot meanwhile.
        """
        settings = self.settings
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        refused = self.server.limiter.acquire(self.ip)
        self._has_slot = refused is None
        if self.server.tls is not None:
            sock.settimeout(min(settings.request_timeout, settings.login_timeout))
            try:
                sock = self.server.tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                log.info("TLS handshake with %s failed: %s", self.peer, exc)
                return False
            self.request = sock
        self._deadlines = deadlines = Deadlines(
            settings.idle_timeout,
            settings.request_timeout,
            settings.stall_timeout,
            settings.min_transfer_rate,
        )
        self.channel = Channel(sock, deadlines=deadlines)
        if refused is not None:
            log.warning("refused %s: %s", self.peer, refused)
            self._try_send(error("error", ProtocolError(ErrorCode.TOO_MANY_SESSIONS, refused)))
            return False
        return True

    def finish(self) -> None:
        if self._has_slot:
            self.server.limiter.release(self.ip)
            self._has_slot = False
        if self.request is not None:
            self.request.close()

    def interrupt(self) -> None:
        """End this session from another thread (server shutdown).

        Its next read fails, and a transfer stops at its next chunk (also
        out of a bandwidth-limit pause); an upload cleans up after itself.
        """
        self._cancelled.set()
        self._shutdown(socket.SHUT_RDWR)

    def evict(self) -> None:
        """Close this session, not logged in yet, to make room (from another thread).

        Its thread wakes from its read, tells the client why (error 421) and ends.
        """
        if self.user is not None or self.evicted:
            return
        self.evicted = True
        # Over plain TCP the reply can still be sent; over TLS nothing more is.
        self._shutdown(socket.SHUT_RD if self.server.tls is None else socket.SHUT_RDWR)

    def _shutdown(self, how: int) -> None:
        """``shutdown(how)`` on the connection, from another thread.

        By its descriptor number: during a TLS handshake ``self.request`` is
        the plain socket the handshake detached, and shutting the TLS socket
        down would also drop its TLS state under the reading thread.
        """
        with contextlib.suppress(OSError):
            view = socket.socket(fileno=self._fileno)
            try:
                view.shutdown(how)
            finally:
                view.detach()  # the session's thread still owns the descriptor

    def _wait(self, seconds: float) -> None:
        if self._cancelled.wait(seconds):
            raise ConnectionAbortedError("session closed by the server")

    def _meter(self, direction: str, rate: int | None) -> _Meter:
        """The per-piece callback of a transfer (counts, the user's rate limit, shutdown)."""
        pace = pacer(self.server.bandwidth, self.user_account.name, direction, rate, self._wait)
        return _Meter(self._cancelled, pace)

    @property
    def jail(self) -> Jail:
        """The logged-in user's jail (the dispatcher guarantees a login first)."""
        assert self._jail is not None
        return self._jail

    @property
    def user_account(self) -> User:
        """The logged-in user (the dispatcher guarantees a login first)."""
        assert self.user is not None
        return self.user

    def handle(self) -> None:
        self.server.sessions.add(self)  # from the start: a TLS handshake can be evicted too
        try:
            if not self._open():
                return
            while not self.server.stopping:
                try:
                    message = self._next_message()
                except MessageError as exc:
                    self.channel.send(error("error", exc))
                    continue
                self.busy = True
                try:
                    if not self.dispatch(message):
                        return
                finally:
                    self.busy = False
        except FramingError as exc:
            log.warning("framing violation from %s: %s", self.peer, exc)
            self._try_send(error("error", exc))
        except (ConnectionError, TimeoutError) as exc:
            log.debug("session %s ended: %s", self.peer, exc)
            if self.user is None and self.evicted:
                full = ProtocolError(ErrorCode.TOO_MANY_SESSIONS, "server full: log in sooner")
                self._try_send(error("error", full))
            elif self.user is None and time.monotonic() >= self._login_by - 0.05:
                late = f"no login within {self.settings.login_timeout:g} s"
                self._try_send(error("error", ProtocolError(ErrorCode.LOGIN_TIMEOUT, late)))
        except Exception:
            log.exception("internal error in session %s; closing it", self.peer)
            self._try_send(error("error", ProtocolError(ErrorCode.INTERNAL, "internal error")))
        finally:
            self.server.sessions.discard(self)

    def _next_message(self) -> Message:
        """The next message; before a login, within what is left of ``login_timeout``."""
        if self.user is None:
            left = self._login_by - time.monotonic()
            if left <= 0:
                raise TimeoutError("no login in time")
            idle, request = self._deadlines.idle, self._deadlines.request
            self.channel.deadlines = dataclasses.replace(
                self._deadlines, idle=min(idle, left), request=min(request, left)
            )
        elif self.channel.deadlines is not self._deadlines:
            self.channel.deadlines = self._deadlines
        return self.channel.recv()

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
            if spec.permission and not self.user_account.may(spec.permission):
                target = f" {message.fields[0]}" if message.fields else ""
                raise ProtocolError(
                    ErrorCode.PERMISSION_DENIED, f"permission denied: {name}{target}"
                )
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
        server = self.server
        banned = server.bans.is_banned(self.ip)
        user = None if banned else server.users.authenticate(name, password, server.passwords)
        if user is None:
            self.failed_logins += 1
            outcome = "refused (address banned)" if banned else "failed"
            server.audit("login", user=name, ip=self.ip, outcome=outcome)
            if not banned and server.bans.failure(self.ip):
                log.warning("banned %s after repeated failed logins", self.ip)
            time.sleep(self.settings.login_failure_delay)
            if self.failed_logins >= self.settings.max_login_attempts:
                failure = ProtocolError(ErrorCode.TOO_MANY_FAILURES, "too many failed logins")
                self.channel.send(error("login", failure))
                raise _CloseSession
            raise ProtocolError(ErrorCode.LOGIN_FAILED, "login incorrect")
        os.makedirs(user.home, exist_ok=True)
        self.user = user
        self._jail = Jail(user.home)
        server.audit("login", user=user.name, ip=self.ip, outcome="ok")
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

    # -- navigation and information ------------------------------------------

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
            entries = list_entries(real)
        else:
            entries = iter([stat_entry(posixpath.basename(virtual), real)])
        batch: list[Message] = []
        count = 0
        for name, kind, size, mtime in entries:
            batch.append(Message("ls", ("entry", name, kind, str(size), str(mtime))))
            count += 1
            if len(batch) == LISTING_BATCH:
                self.channel.send(*batch)
                batch.clear()
        self.channel.send(*batch, ok("ls", str(count)))

    def cmd_stat(self, path: str, option: str | None = None) -> None:
        _flag(option, "blake3", "stat PATH [blake3]")
        virtual, real = self.jail.resolve(path)
        _, kind, size, mtime = stat_entry(posixpath.basename(virtual), real)
        fields = [kind, str(size), str(mtime)]
        if option and kind == "file":
            with open_regular(real, virtual) as source:
                fields.append(self.server.digests.of_file(source))
        self.channel.send(ok("stat", *fields))

    def cmd_quota(self) -> None:
        usage = self.server.quotas.usage(self.user_account)
        limit = "-" if usage.quota is None else str(usage.quota)
        self.channel.send(ok("quota", str(usage.used), limit, str(usage.available)))

    # -- managing files ------------------------------------------------------

    def cmd_mkdir(self, path: str, option: str | None = None) -> None:
        _flag(option, "parents", "mkdir PATH [parents]")
        virtual, real = self.jail.resolve(path)
        if option:
            os.makedirs(real, exist_ok=True)
        else:
            os.mkdir(real)
        self._audit("mkdir", path=virtual)
        self.channel.send(ok("mkdir", virtual))

    def cmd_rmdir(self, path: str) -> None:
        virtual, real = self.jail.resolve(path, follow=False)
        remove_folder(real, virtual)
        self._audit("rmdir", path=virtual)
        self.channel.send(ok("rmdir", virtual))

    def cmd_rm(self, path: str, option: str | None = None) -> None:
        _flag(option, "recursive", "rm PATH [recursive]")
        virtual, real = self.jail.resolve(path, follow=False)
        mode = os.lstat(real).st_mode
        if stat.S_ISDIR(mode):
            if not option:
                raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder (use rm -r): {virtual}")
            files, freed = remove_tree(self.server.quotas, self.user_account, real)
        else:
            files, freed = 1, self.server.quotas.remove(self.user_account, real)
        self._audit("rm", path=virtual, files=files, bytes=freed)
        self.channel.send(ok("rm", str(files), str(freed)))

    def cmd_mv(self, old: str, new: str) -> None:
        old_virtual, old_real = self.jail.resolve(old, follow=False)
        os.lstat(old_real)
        new_virtual, new_real = self.jail.resolve(new)
        if new.endswith("/") and not os.path.isdir(new_real):
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no such folder: {new_virtual}")
        if os.path.isdir(new_real) and not os.path.islink(new_real):
            name = posixpath.basename(old_virtual)
            new_virtual, new_real = self.jail.resolve(posixpath.join(new_virtual, name))
        try:
            rename_noreplace(old_real, new_real)
        except FileExistsError:
            raise ProtocolError(ErrorCode.EXISTS, f"already exists: {new_virtual}") from None
        self._audit("mv", path=old_virtual, to=new_virtual)
        self.channel.send(ok("mv", new_virtual))

    # -- transfers -----------------------------------------------------------

    def cmd_get(self, path: str, *resume_fields: str) -> None:
        resume = parse_resume("get", resume_fields)
        virtual, real = self.jail.resolve(path)
        started = time.monotonic()
        with open_regular(real, virtual) as source:
            rate = self.user_account.download_rate
            step = 64 * 1024 if rate else 8 * 1024 * 1024
            meter = self._meter("download", rate)
            try:
                result = send_download(
                    self.channel, source, virtual, resume, meter, step, self.server.digests
                )
            except (ProtocolError, OSError) as exc:
                self._log_failed("get", virtual, meter.moved, started, exc)
                raise
        if result is not None:
            self._log_transfer("get", virtual, result[0], started, result[1], "ok")

    def cmd_put(self, path: str, size_text: str, *resume_fields: str) -> None:
        size = parse_size(size_text)
        resume = parse_resume("put", resume_fields)
        virtual, real = self.jail.resolve(path)
        if os.path.isdir(real):
            raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder: {virtual}")
        if not os.path.isdir(os.path.dirname(real)):
            parent = posixpath.dirname(virtual)
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no such folder: {parent}")
        started = time.monotonic()
        upload = Upload(
            self.server.quotas,
            self.user_account,
            real,
            partial_path(self.jail, virtual),
            self.server.file_mode,
            self.settings.fsync_uploads,
        )
        meter = self._meter("upload", self.user_account.upload_rate)
        try:
            with upload:
                received, hexdigest = receive_upload(
                    self.channel, upload, virtual, size, resume, meter, self.server.digests
                )
        except (ProtocolError, OSError, ConnectionError, TimeoutError) as exc:
            self._log_failed("put", virtual, meter.moved, started, exc)
            raise
        self._log_transfer("put", virtual, received, started, hexdigest, "ok")
        self.channel.send(ok("put", str(size), hexdigest))

    def cmd_partial(self, path: str) -> None:
        virtual, _ = self.jail.resolve(path)
        try:
            size = os.lstat(partial_path(self.jail, virtual)).st_size
        except FileNotFoundError:
            size = 0
        self.channel.send(ok("partial", str(size)))

    # -- logging -------------------------------------------------------------

    def _audit(self, action: str, **fields: object) -> None:
        self.server.audit(action, user=self.user_account.name, ip=self.ip, **fields)

    def _log_failed(
        self, kind: str, virtual: str, moved: int, started: float, exc: BaseException
    ) -> None:
        """Audit a failed transfer with the bytes that moved before it failed."""
        self._log_transfer(kind, virtual, moved, started, "", str(exc) or type(exc).__name__)

    def _log_transfer(
        self, kind: str, virtual: str, size: int, started: float, hexdigest: str, outcome: str
    ) -> None:
        self._audit(
            kind,
            path=virtual,
            bytes=size,
            seconds=round(time.monotonic() - started, 3),
            blake3=hexdigest or None,
            outcome=outcome,
        )


class _Meter:
    """The per-piece callback of one transfer.

    It counts the bytes moved, applies the user's rate limit, and stops the
    transfer when the session is cancelled.
    """

    def __init__(self, cancelled: threading.Event, pace: Progress | None) -> None:
        self.moved = 0
        self._cancelled = cancelled
        self._pace = pace

    def __call__(self, count: int) -> None:
        self.moved += count
        if self._cancelled.is_set():
            raise ConnectionAbortedError("session closed by the server")
        if self._pace is not None:
            self._pace(count)


def _flag(option: str | None, word: str, usage: str) -> None:
    """Check an optional flag argument: absent or exactly ``word``."""
    if option is not None and option != word:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"usage: {usage}")
