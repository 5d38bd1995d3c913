"""One client session: login state, the dispatch loop and the ``cmd_<name>`` methods.

The loop reads one framed message at a time and :meth:`SessionHandler.dispatch`
checks it against the command table (known? logged in? right arguments?)
before it calls ``getattr(self, "cmd_" + name)``; nothing else on the
handler is reachable by a client.  Every file operation goes to the
session's :class:`~ftpserver.storage.base.Storage` (virtual paths only; this
module never calls ``os``).  Command methods raise :class:`ProtocolError` or
``OSError``; the dispatcher turns both into one error reply and the session
goes on.  A framing violation is answered and
the connection closed; an unexpected exception is logged with its traceback
and closes only this session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ftpproto.channel import Channel, Deadlines, Progress
from ftpproto.commands import COMMANDS, lookup
from ftpproto.errors import DeadlineExceeded, ErrorCode, FramingError, MessageError, ProtocolError
from ftpproto.messages import Message, error, ok, parse_size
from ftpserver.activity import Activity
from ftpserver.batch import Pipeline
from ftpserver.cluster.proxied import Networks, client_address
from ftpserver.fsops import os_error
from ftpserver.guards import pacer
from ftpserver.login import Login, TooManyFailures, TooManySessions
from ftpserver.storage.base import Storage
from ftpserver.transfers import handle_digest, parse_resume, receive_upload, send_download
from ftpserver.treeinfo import send_tree
from ftpserver.users import User

if TYPE_CHECKING:
    from ftpserver.server import FileTransferServer

__all__ = ["SessionHandler"]

log = logging.getLogger("ftpserver.session")
LISTING_BATCH = 256
MAX_MTIME = 9_000_000_000  # seconds (year 2255): fits every filesystem's nanosecond times


class _CloseSession(Exception):
    """Raised by a command to end the session after its reply."""


class SessionHandler(socketserver.BaseRequestHandler):
    """Serves one connection; session state lives on ``self``, shared state on ``self.server``."""

    server: FileTransferServer
    request: socket.socket

    def setup(self) -> None:
        self.settings = self.server.settings
        self.user: User | None = None
        self._storage: Storage | None = None
        self.logins = Login(self.server, str(self.client_address[0]))
        self.busy = False
        self._has_slot = False
        self._user_slot: str | None = None  # the user whose max_sessions slot this holds
        self._cancelled = threading.Event()
        self.ip = str(self.client_address[0])
        self.peer = f"{self.ip}:{self.client_address[1]}"
        self.activity = Activity(self.server.admin)
        self.pipeline = Pipeline(self, self.settings.pipeline_files, self.settings.pipeline_bytes)
        self.connected_at = time.monotonic()
        self._fileno = self.request.fileno()
        self._closed = False  # set, under _fd_lock, once the descriptor is closed
        self._fd_lock = threading.Lock()
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
        if settings.proxy_protocol:  # the client's address, from the balancer's header
            peer = (self.ip, int(self.client_address[1]))
            source = client_address(sock, peer, Networks(settings.proxy_trusted))
            if source is None:
                return False
            self.ip, self.peer = source[0], f"{source[0]}:{source[1]}"
            self.logins.ip = self.ip
        refused = self.server.limiter.acquire(self.ip)
        self._has_slot = refused is None
        if self.server.tls is not None:
            sock.settimeout(min(settings.request_timeout, settings.login_timeout))
            try:
                sock = self.server.tls.wrap_socket(sock, server_side=True)
            except (OSError, ValueError) as exc:
                with self._fd_lock:
                    self._closed = True  # the failed handshake closed the descriptor
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
        self.pipeline.close()
        if self._has_slot:
            self.server.limiter.release(self.ip)
            self._has_slot = False
        if self._user_slot is not None:
            self.server.shared.user_sessions.release(self._user_slot)
            self._user_slot = None
        if self.request is not None:
            with self._fd_lock:  # no shutdown by number once the number may be reused
                self._closed = True
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
        with self._fd_lock, contextlib.suppress(OSError):
            if self._closed:
                return
            view = socket.socket(fileno=self._fileno)
            try:
                view.shutdown(how)
            finally:
                view.detach()  # the session's thread still owns the descriptor

    def _wait(self, seconds: float) -> None:
        if self._cancelled.wait(seconds):
            raise ConnectionAbortedError("session closed by the server")

    def _meter(self, direction: str, rate: int | None, virtual: str) -> _Meter:
        """The per-piece callback of a transfer of ``virtual`` (counts, rate limit, shutdown)."""
        pace = pacer(self.server.bandwidth, self.user_account.name, direction, rate, self._wait)
        meter = _Meter(self._cancelled, pace)
        self.activity.metered(direction, meter, virtual)
        return meter

    @property
    def storage(self) -> Storage:
        """The logged-in user's files (the dispatcher guarantees a login first)."""
        assert self._storage is not None
        return self._storage

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
                self.activity.begin(message.command)
                try:
                    if not self.dispatch(message):
                        return
                finally:
                    self.busy = False
                    self.activity.end(self.user is not None)
        except FramingError as exc:
            log.warning("framing violation from %s: %s", self.peer, exc)
            self._try_send(error("error", exc))
        except (ConnectionError, TimeoutError) as exc:
            log.debug("session %s ended: %s", self.peer, exc)
            why = self._why_closed(exc)
            if why is not None:  # say why, if the client can still read it
                self._try_send(error("error", why))
        except Exception:
            log.exception("internal error in session %s; closing it", self.peer)
            self._try_send(error("error", ProtocolError(ErrorCode.INTERNAL, "internal error")))
        finally:
            self.server.sessions.discard(self)

    def _why_closed(self, exc: ConnectionError | TimeoutError) -> ProtocolError | None:
        """What to tell the client about the end of its session, if anything.

        An evicted connection gets ``421``; one that is out of its
        ``login_timeout`` (however its last read ended) and any broken
        deadline get ``408`` with the reason.
        """
        if self.user is None and self.evicted:
            return ProtocolError(ErrorCode.TOO_MANY_SESSIONS, "server full: log in sooner")
        if self.user is None and time.monotonic() >= self._login_by - 0.05:
            late = f"no login within {self.settings.login_timeout:g} s"
            return ProtocolError(ErrorCode.TIMED_OUT, late)
        if isinstance(exc, DeadlineExceeded):
            return ProtocolError(ErrorCode.TIMED_OUT, str(exc))
        return None

    def _next_message(self) -> Message:
        """The next message; before a login, within what is left of ``login_timeout``."""
        if self.user is None:
            left = self._login_by - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"no login within {self.settings.login_timeout:g} s")
            idle, request = self._deadlines.idle, self._deadlines.request
            self.channel.deadlines = dataclasses.replace(
                self._deadlines, idle=min(idle, left), request=min(request, left)
            )
        elif self.channel.deadlines is not self._deadlines:
            self.channel.deadlines = self._deadlines
        return self.channel.recv()

    def _try_send(self, message: Message) -> None:
        """Send a last message before closing, if the client can still read it as one."""
        self.channel.send_last(message)

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
            self.activity.failed()
            raise
        except ProtocolError as exc:
            self.activity.failed(exc.code)
            self.channel.send(error(name, exc))
        except OSError as exc:
            path_arg = spec is not None and (spec.required + spec.optional)[:1] == ("PATH",)
            subject = message.fields[0] if path_arg and message.fields else None
            failure = os_error(exc, subject)
            self.activity.failed(failure.code)
            self.channel.send(error(name, failure))
        return True

    # -- commands that work before login ------------------------------------

    def cmd_login(self, name: str, password: str) -> None:
        self._log_in("login", lambda: self.logins.password(name, password))

    def cmd_challenge(self) -> None:
        self.channel.send(ok("challenge", self.logins.challenge()))

    def cmd_login_key(self, name: str, algorithm: str, key: str, signature: str) -> None:
        self._log_in("login_key", lambda: self.logins.key(name, algorithm, key, signature))

    def _log_in(self, command: str, attempt: Callable[[], User]) -> None:
        """Run a login attempt (:mod:`ftpserver.login`); on success open the user's home."""
        if self.user is not None:
            raise ProtocolError(ErrorCode.BAD_STATE, f"already logged in as {self.user.name}")
        try:
            user = attempt()
        except (TooManyFailures, TooManySessions) as failure:
            self.channel.send(error(command, failure))
            raise _CloseSession from None
        self._user_slot = user.name  # the login took one of the user's max_sessions slots
        storage = self.server.open_storage(user)
        storage.prepare()
        self.user = user
        self._storage = storage
        self.channel.send(ok(command, user.name))

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
        self.channel.send(ok("pwd", self.storage.cwd))

    def cmd_cd(self, path: str) -> None:
        self.channel.send(ok("cd", self.storage.chdir(path)))

    def cmd_ls(self, path: str = ".") -> None:
        storage = self.storage
        entries = storage.listdir(storage.virtual(path))
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
        storage = self.storage
        virtual = storage.virtual(path)
        _, kind, size, mtime = storage.stat(virtual)
        fields = [kind, str(size), str(mtime)]
        if option and kind == "file":
            with storage.open_read(virtual) as source:
                fields.append(handle_digest(source))
        self.channel.send(ok("stat", *fields))

    def cmd_tree(self, path: str, option: str | None = None) -> None:
        _flag(option, "blake3", "tree PATH [blake3]")
        send_tree(self.channel, self.storage, path, bool(option), lambda: self._wait(0))

    def cmd_quota(self) -> None:
        usage = self.storage.usage()
        limit = "-" if usage.quota is None else str(usage.quota)
        self.channel.send(ok("quota", str(usage.used), limit, str(usage.available)))

    # -- managing files ------------------------------------------------------

    def cmd_mkdir(self, path: str, option: str | None = None) -> None:
        _flag(option, "parents", "mkdir PATH [parents]")
        virtual = self.storage.virtual(path)
        self.storage.mkdir(virtual, parents=bool(option))
        self._audit("mkdir", path=virtual)
        self.channel.send(ok("mkdir", virtual))

    def cmd_rmdir(self, path: str) -> None:
        virtual = self.storage.virtual(path)
        self.storage.rmdir(virtual)
        self._audit("rmdir", path=virtual)
        self.channel.send(ok("rmdir", virtual))

    def cmd_rm(self, path: str, option: str | None = None, count: str | None = None) -> None:
        _flag(option, "recursive", "rm PATH [recursive [folders]]")
        _flag(count, "folders", "rm PATH [recursive [folders]]")
        storage = self.storage
        virtual = storage.virtual(path)
        if storage.kind(virtual) == "dir":
            if not option:
                raise ProtocolError(ErrorCode.IS_DIRECTORY, f"is a folder (use rm -r): {virtual}")
            files, freed, folders = storage.remove_tree(virtual)
        else:
            files, freed, folders = 1, storage.remove(virtual), 0
        self._audit("rm", path=virtual, files=files, bytes=freed)
        self.channel.send(ok("rm", str(files), str(freed), *([str(folders)] if count else [])))

    def cmd_mv(self, old: str, new: str, option: str | None = None) -> None:
        _flag(option, "replace", "mv OLD NEW [replace]")
        storage = self.storage
        old_virtual = storage.virtual(old)
        storage.kind(old_virtual)  # a missing OLD is reported before anything wrong with NEW
        new_virtual = storage.rename(
            old_virtual, storage.virtual(new), new.endswith("/"), replace=option is not None
        )
        self._audit("mv", path=old_virtual, to=new_virtual)
        self.channel.send(ok("mv", new_virtual))

    def cmd_touch(self, path: str, mtime: str) -> None:
        seconds = parse_size(mtime)
        if seconds > MAX_MTIME:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"mtime out of range: {mtime}")
        virtual = self.storage.virtual(path)
        self.storage.set_mtime(virtual, seconds)
        self.channel.send(ok("touch", virtual, mtime))

    # -- transfers -----------------------------------------------------------

    def cmd_get(self, path: str, *resume_fields: str) -> None:
        resume = parse_resume("get", resume_fields)
        virtual = self.storage.virtual(path)
        started = time.monotonic()
        with self.storage.open_read(virtual) as source:
            rate = self.user_account.download_rate
            step = 64 * 1024 if rate else 8 * 1024 * 1024
            meter = self._meter("download", rate, virtual)
            try:
                result = send_download(self.channel, source, virtual, resume, meter, step)
            except (ProtocolError, OSError) as exc:
                self._log_failed("get", virtual, meter.moved, started, exc)
                raise
        if result is not None:
            self._log_transfer("get", virtual, result[0], started, result[1], "ok")

    def cmd_put(self, path: str, size_text: str, *resume_fields: str) -> None:
        size = parse_size(size_text)
        resume = parse_resume("put", resume_fields)
        virtual = self.storage.virtual(path)
        upload = self.storage.open_upload(virtual)
        started = time.monotonic()
        meter = self._meter("upload", self.user_account.upload_rate, virtual)
        try:
            with upload:
                received, hexdigest = receive_upload(
                    self.channel, upload, virtual, size, resume, meter
                )
        except (ProtocolError, OSError, ConnectionError, TimeoutError) as exc:
            self._log_failed("put", virtual, meter.moved, started, exc)
            raise
        self._log_transfer("put", virtual, received, started, hexdigest, "ok")
        self.channel.send(ok("put", str(size), hexdigest))

    def cmd_partial(self, path: str) -> None:
        size = self.storage.partial_size(self.storage.virtual(path))
        self.channel.send(ok("partial", str(size)))

    # -- pipelined transfers (ftpserver/batch.py) ----------------------------

    def cmd_window(self) -> None:
        self.pipeline.window_command()

    def cmd_fetch(self, path: str) -> None:
        self.pipeline.fetch(path)

    def cmd_offer(self, path: str, size_text: str) -> None:
        self.pipeline.offer(path, size_text)

    def cmd_send(self, flag: str | None = None) -> None:
        self.pipeline.send(flag)

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
