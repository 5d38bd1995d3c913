"""Logging in, for one session: by password, or by public key with a signed challenge.

:class:`Login` holds what a session knows before it has a user: its failed
attempts and the challenge it handed out.  Both ways fail alike: the reply
is ``430 login incorrect`` after ``login_failure_delay``, whatever went
wrong (unknown user, wrong password, unknown key, bad signature, a banned
address); each failure counts towards ``max_login_attempts`` on the
connection (then :class:`TooManyFailures`, and the session ends) and towards
the address's ban, and is audited, with the key's fingerprint for a key,
never a password or key material.  A locked or expired account
(:meth:`~ftpserver.users.User.refusal`) fails the same way, whichever the
credentials; the audit line gives the reason.  A user already at their
``max_sessions`` gets :class:`TooManySessions` (421, the session ends); a
successful login of a user with a limit holds one of the user's session
slots (:class:`~ftpserver.state.protocols.UserSessionSlots`), which the
session gives back when it ends.  Each attempt first reads the users file again if
it changed (:meth:`~ftpserver.server.FileTransferServer.current_users`).

A key login (``docs/PROTOCOL.md`` section 4.1.1) signs a challenge of 32
random bytes that only this connection was given, and each challenge serves
one attempt, so a signature is worth nothing on any other connection, or a
second time on this one.  Over TLS the signed bytes also name the server's
certificate (:func:`ftpproto.keylogin.certificate_binding`).
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ftpproto.errors import ErrorCode, ProtocolError
from ftpproto.keylogin import (
    NO_BINDING,
    NONCE_BYTES,
    Binding,
    certificate_binding,
    decode_field,
    encode_field,
    fingerprint,
    signed_data,
)
from ftpserver.keys import find_key, parse_wire_key, verify
from ftpserver.users import User

if TYPE_CHECKING:
    from ftpserver.server import FileTransferServer

__all__ = ["Login", "TooManyFailures", "TooManySessions", "server_binding"]

log = logging.getLogger("ftpserver.session")


class TooManyFailures(ProtocolError):
    """The failure that reached ``max_login_attempts``: answer it, then end the session."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.TOO_MANY_FAILURES, "too many failed logins")


class TooManySessions(ProtocolError):
    """The user already has ``max_sessions`` sessions: answer 421, then end the session."""

    def __init__(self, user: User) -> None:
        limit = f"at most {user.max_sessions} at once"
        super().__init__(
            ErrorCode.TOO_MANY_SESSIONS, f"too many sessions for user {user.name} ({limit})"
        )


def server_binding(cert_file: Path | None) -> Binding:
    """The channel binding of a server with this certificate file (none without TLS).

    The server reads it when it starts, with its TLS context: ``tls_cert``
    changes only with a restart.  The first certificate in the file is the
    server's own (the rest is its chain).
    """
    if cert_file is None:
        return NO_BINDING
    from cryptography import x509  # here, not at the top: only TLS needs it
    from cryptography.hazmat.primitives.serialization import Encoding

    leaf = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    return certificate_binding(leaf.public_bytes(Encoding.DER))


class Login:
    """The login attempts of one session from ``ip`` to ``server``."""

    def __init__(self, server: FileTransferServer, ip: str) -> None:
        self.server = server
        self.ip = ip
        self.failures = 0
        self._challenge: bytes | None = None

    def password(self, name: str, password: str) -> User:
        """The user if ``password`` opens the account, else a failure (raised)."""
        server = self.server
        banned = server.bans.is_banned(self.ip)
        users = server.current_users()
        user = None if banned else users.authenticate(name, password, server.passwords)
        if user is None:
            self._fail(name, banned)
        return self._admit(user)

    def challenge(self) -> str:
        """A fresh challenge for the next ``login_key``, replacing any earlier one."""
        self._challenge = secrets.token_bytes(NONCE_BYTES)
        return encode_field(self._challenge)

    def key(self, name: str, algorithm: str, key: str, signature: str) -> User:
        """The user if ``signature`` signs this session's challenge with one of their keys."""
        challenge, self._challenge = self._challenge, None  # one attempt per challenge
        if challenge is None:
            raise ProtocolError(ErrorCode.BAD_STATE, "ask for a challenge first")
        try:
            blob = parse_wire_key(algorithm, key)
            signed = decode_field(signature, "the signature")
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"login_key: {exc}") from None
        server = self.server
        banned = server.bans.is_banned(self.ip)
        user = server.current_users().users.get(name)
        binding = server.tls_binding
        # The signature is checked whether or not the user and key are known: the same work.
        good = verify(blob, signed, signed_data(challenge, name, blob, binding))
        known = user is not None and find_key(user.keys, blob) is not None
        if banned or user is None or not known or not good:
            reason = "unknown user" if user is None else "unknown key" if not known else None
            if reason is None and not good:
                reason = "bad signature"
            self._fail(name, banned, method="key", key=fingerprint(blob), reason=reason)
        return self._admit(user, method="key", key=fingerprint(blob))

    def _admit(self, user: User, **fields: object) -> User:
        """Let ``user`` in, whose credentials are right, unless locked, expired or at the limit."""
        refusal = user.refusal()
        if refusal is not None:
            self._fail(user.name, False, **fields, reason=refusal)
        # Counted only for a user with a limit: the slot costs a round trip to
        # the shared state at login and logout.
        limited = user.max_sessions > 0
        if limited and not self.server.shared.user_sessions.acquire(user.name, user.max_sessions):
            self._audit(user.name, "refused (user's max_sessions)", **fields)
            raise TooManySessions(user)
        self._audit(user.name, "ok", **fields)
        return user

    def _fail(self, name: str, banned: bool, **fields: object) -> NoReturn:
        """Count, audit and delay a failed login, then raise its reply."""
        server = self.server
        self.failures += 1
        self._audit(name, "refused (address banned)" if banned else "failed", **fields)
        if not banned and server.bans.failure(self.ip):
            log.warning("banned %s after repeated failed logins", self.ip)
        time.sleep(server.settings.login_failure_delay)
        if self.failures >= server.settings.max_login_attempts:
            raise TooManyFailures
        raise ProtocolError(ErrorCode.LOGIN_FAILED, "login incorrect")

    def _audit(self, name: str, outcome: str, **fields: object) -> None:
        extra = {key: value for key, value in fields.items() if value is not None}
        self.server.audit("login", user=name, ip=self.ip, outcome=outcome, **extra)
