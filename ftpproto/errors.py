"""Protocol errors with stable numeric codes.

Every error reply on the wire carries one of the :class:`ErrorCode` values and
a readable text.  Server code raises :class:`ProtocolError` (or a subclass
via :func:`error`); the dispatcher turns it into a reply in one place.  The
client raises :class:`RemoteError` when a reply says ``error``.
"""

from __future__ import annotations

import enum

__all__ = [
    "ConnectionClosed",
    "DeadlineExceeded",
    "ErrorCode",
    "FramingError",
    "MessageError",
    "ProtocolError",
    "RemoteError",
    "ServerClosed",
]


class ErrorCode(enum.IntEnum):
    """Stable error codes; the numbers never change meaning."""

    BAD_REQUEST = 400  # malformed message or wrong arguments
    NOT_LOGGED_IN = 401  # the command needs a login first
    PERMISSION_DENIED = 403  # not allowed (outside the home, a symlink out of it)
    NOT_FOUND = 404  # no such file or folder
    UNKNOWN_COMMAND = 405  # not in the command table
    # no login in time, idle too long, a message too slow, a stalled transfer; closed
    TIMED_OUT = 408
    BAD_STATE = 409  # a message that does not fit the session state (a second login)
    EXISTS = 410  # the target exists and may not be replaced
    IS_DIRECTORY = 411  # a file was expected, a folder was found
    NOT_DIRECTORY = 412  # a folder was expected, a file was found
    FRAMING = 413  # an empty or oversized frame; the connection is closed
    PATH_TOO_LONG = 414  # a path or name over the limits
    BAD_PATH = 415  # a path with a NUL byte or another forbidden character
    TOO_MANY_SESSIONS = 421  # over the server's session limits; the connection is closed
    LOGIN_FAILED = 430  # wrong user name or password
    TOO_MANY_FAILURES = 431  # too many failed logins; the connection is closed
    DIGEST_MISMATCH = 460  # the BLAKE3 digest of the bytes did not match
    TRANSFER_ABORTED = 461  # the sender gave up mid-transfer
    FILE_CHANGED = 462  # the file shrank while it was sent
    INTERNAL = 500  # a server bug; the session is closed
    IO_ERROR = 501  # the server's disk said no
    NO_SPACE = 507  # not enough space on the server's disk
    QUOTA_EXCEEDED = 508  # the upload would exceed the user's quota


class ProtocolError(Exception):
    """An error that becomes an error reply with a stable code."""

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled between server processes (see ftpserver.workers).
        return (_restore, (type(self), self.code, self.text))


def _restore(cls: type[ProtocolError], code: ErrorCode, text: str) -> ProtocolError:
    exc = cls.__new__(cls)
    ProtocolError.__init__(exc, code, text)
    return exc


class FramingError(ProtocolError):
    """The byte stream broke the framing rules; the connection cannot continue."""

    def __init__(self, text: str) -> None:
        super().__init__(ErrorCode.FRAMING, text)


class MessageError(ProtocolError):
    """A frame that does not hold a well-formed message."""

    def __init__(self, text: str) -> None:
        super().__init__(ErrorCode.BAD_REQUEST, text)


class RemoteError(ProtocolError):
    """An error reply received from the peer."""


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (possibly in the middle of a message)."""


class DeadlineExceeded(TimeoutError):
    """The peer broke one of the channel's deadlines; the text says which, for the peer."""


class ServerClosed(ConnectionClosed):
    """The server said why it closes the connection (it timed out) and closed it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"closed by the server: {reason}")
        self.reason = reason
