"""One client session: the dispatch loop, login and the transfer ``cmd_<name>`` methods.

The connection's life cycle is :mod:`ftpserver.session`'s, the file commands
(listing, mkdir, rm, ...) :mod:`ftpserver.filecmds`'; this class puts them together.

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

import logging
import time
from collections.abc import Callable

from ftpproto.commands import COMMANDS, lookup
from ftpproto.errors import DeadlineExceeded, ErrorCode, FramingError, MessageError, ProtocolError
from ftpproto.messages import Message, error, ok, parse_size
from ftpserver.filecmds import FileCommands
from ftpserver.fsops import os_error
from ftpserver.login import TooManyFailures, TooManySessions
from ftpserver.transfers import parse_resume, receive_upload, send_download
from ftpserver.users import User

__all__ = ["SessionHandler"]

log = logging.getLogger("ftpserver.session")
_PIPELINED_UPLOAD = ("offer", "send")  # commands that need not wait for the finisher (batch.py)


class _CloseSession(Exception):
    """Raised by a command to end the session after its reply."""


class SessionHandler(FileCommands):
    """Serves one connection; session state lives on ``self``, shared state on ``self.server``.

    The life cycle and shared plumbing are :class:`~ftpserver.session.SessionBase`'s,
    the file commands :class:`~ftpserver.filecmds.FileCommands`'.
    """

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

    def finish(self) -> None:
        """Release the session (slots, socket), then leave the server's session set.

        Leaving last matters: a stopping server waits for that set to empty,
        so the releases (calls to the shared state) are done before it exits.
        """
        try:
            super().finish()
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
            self.channel.deadlines = self._deadlines._replace(
                idle=min(idle, left), request=min(request, left)
            )
        elif self.channel.deadlines is not self._deadlines:
            self.channel.deadlines = self._deadlines
        return self.channel.recv()

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
            if spec.name not in _PIPELINED_UPLOAD:
                self.pipeline.drain()  # uploads being committed are in place before it runs
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
        if user.max_sessions > 0:
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

    # -- transfers -----------------------------------------------------------

    def cmd_get(self, path: str, *resume_fields: str) -> None:
        resume = parse_resume("get", resume_fields)
        virtual = self.storage.virtual(path)
        started = time.monotonic()
        with self.storage.open_read(virtual) as source:
            rate = self.user_account.download_rate
            step = 64 * 1024 if rate else 8 * 1024 * 1024
            meter = self.meter("download", rate, virtual)
            try:
                result = send_download(self.channel, source, virtual, resume, meter, step)
            except (ProtocolError, OSError) as exc:
                self.log_failed("get", virtual, meter.moved, started, exc)
                raise
        if result is not None:
            self.log_transfer("get", virtual, result[0], started, result[1], "ok")

    def cmd_put(self, path: str, size_text: str, *resume_fields: str) -> None:
        size = parse_size(size_text)
        resume = parse_resume("put", resume_fields)
        virtual = self.storage.virtual(path)
        upload = self.storage.open_upload(virtual)
        started = time.monotonic()
        meter = self.meter("upload", self.user_account.upload_rate, virtual)
        try:
            with upload:
                received, hexdigest = receive_upload(
                    self.channel, upload, virtual, size, resume, meter
                )
        except (ProtocolError, OSError, ConnectionError, TimeoutError) as exc:
            self.log_failed("put", virtual, meter.moved, started, exc)
            raise
        self.log_transfer("put", virtual, received, started, hexdigest, "ok")
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
