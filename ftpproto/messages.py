"""Control messages: ``FileTransfer|<command>|<field>|...`` as named tuples.

A message is the UTF-8 text ``FileTransfer`` followed by ``|``-separated
fields: the command name, then the command's fields.  Inside a field, ``%``
and ``|`` are written as ``%25`` and ``%7C`` (any other byte may also be
written as ``%XX``), so paths may hold ``|`` and any Unicode.

Replies repeat the command name and put a status word first: ``ready``,
``ok``, ``entry``, ``digest`` or ``error``; the client answers a ``ready``
with ``recv_ready`` (or ``abort``).  The helpers below build each of them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ftpproto.digest import is_hexdigest
from ftpproto.errors import ErrorCode, MessageError, ProtocolError, RemoteError, ServerClosed

__all__ = [
    "MAX_ERROR_TEXT",
    "PREFIX",
    "Message",
    "abort",
    "digest",
    "error",
    "ok",
    "parse_digest",
    "parse_size",
    "ready",
    "recv_ready",
    "request",
]

PREFIX = "FileTransfer"
_COMMAND = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
_ESCAPE_BYTES = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DIGITS = re.compile(r"[0-9]{1,20}\Z")


def _quote(field: str) -> str:
    if "%" in field or "|" in field:
        return field.replace("%", "%25").replace("|", "%7C")
    return field


def _unquote(field: str) -> str:
    if "%" not in field:
        return field
    if _BAD_ESCAPE.search(field):
        raise MessageError("bad %-escape in message field")
    raw = _ESCAPE_BYTES.sub(lambda m: bytes([int(m.group(1), 16)]), field.encode("utf-8"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageError("%-escapes that are not UTF-8 in message field") from exc


class Message(NamedTuple):
    """One control message: a command name and its (decoded) fields."""

    command: str
    fields: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """The UTF-8 payload of this message (framing is added by the channel)."""
        fields = self.fields
        if not fields:
            return f"{PREFIX}|{self.command}".encode()
        body = "|".join(fields)
        if "%" in body or body.count("|") >= len(fields):  # some field needs escaping
            body = "|".join([_quote(field) for field in fields])
        return f"{PREFIX}|{self.command}|{body}".encode()

    @classmethod
    def parse(cls, payload: bytes) -> Message:
        """Decode a frame payload; raise :class:`MessageError` if it is not a message."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError("message is not valid UTF-8") from exc
        parts = text.split("|")
        if parts[0] != PREFIX or len(parts) < 2:
            raise MessageError(f"message does not start with {PREFIX}|<command>")
        if not _COMMAND.match(parts[1]):
            raise MessageError("malformed command name")
        if "%" not in text:  # no escapes anywhere: the fields are the parts
            return cls(parts[1], tuple(parts[2:]))
        return cls(parts[1], tuple(map(_unquote, parts[2:])))

    @property
    def status(self) -> str:
        """The first field: a reply's status word, or a request's first argument."""
        return self.fields[0] if self.fields else ""

    def raise_if_error(self) -> Message:
        """Raise :class:`RemoteError` for an ``error`` reply; return ``self`` otherwise.

        The server's word before it closes a connection that timed out
        (``error|error|408|...``) is raised as :class:`ServerClosed`.
        """
        if self.status == "error":
            exc = self.to_error()
            if self.command == "error" and exc.code == ErrorCode.TIMED_OUT:
                raise ServerClosed(exc.text)
            raise exc
        return self

    def check_reply(self, command: str) -> Message:
        """Check that this is a reply to ``command``, raising an ``error`` reply; return it."""
        self.raise_if_error()
        if self.command != command:
            raise MessageError(f"expected a reply to {command}, got {self.command}")
        return self

    def to_error(self) -> RemoteError:
        """The :class:`RemoteError` an ``error`` reply stands for."""
        if len(self.fields) != 3 or not _DIGITS.match(self.fields[1]):
            return RemoteError(ErrorCode.BAD_REQUEST, f"malformed error reply to {self.command}")
        try:
            code = ErrorCode(int(self.fields[1]))
        except ValueError:
            code = ErrorCode.INTERNAL
        return RemoteError(code, self.fields[2])

    def expect(self, command: str, status: str, nfields: int) -> tuple[str, ...]:
        """Check that this is ``command|status`` with ``nfields`` more fields; return them.

        An ``error`` reply is raised as :class:`RemoteError`; anything else
        unexpected as :class:`MessageError`.
        """
        self.raise_if_error()
        if self.command != command or self.status != status or len(self.fields) != nfields + 1:
            raise MessageError(f"expected {command}|{status}, got {self.command}|{self.status}")
        return self.fields[1:]


def request(command: str, *args: str) -> Message:
    """A client request such as ``FileTransfer|get|<path>``."""
    return Message(command, args)


def ready(command: str, size: int, offset: int | None = None) -> Message:
    """``<command>|ready|<size>[|<offset>]``: ready to move ``size`` bytes (from ``offset``)."""
    return Message(command, ("ready", str(size), *(() if offset is None else (str(offset),))))


def recv_ready(command: str) -> Message:
    """``<command>|recv_ready``: the receiver is ready for the announced bytes."""
    return Message(command, ("recv_ready",))


def abort(command: str) -> Message:
    """``<command>|abort``: the transfer is called off (instead of recv_ready or digest)."""
    return Message(command, ("abort",))


def digest(command: str, hexdigest: str) -> Message:
    """``<command>|digest|<blake3>``: sent by the sender after the file bytes."""
    return Message(command, ("digest", hexdigest))


def ok(command: str, *fields: str) -> Message:
    """``<command>|ok|...``: success, with command-specific fields."""
    return Message(command, ("ok", *fields))


MAX_ERROR_TEXT = 8192  # characters; a text echoing client input is cut to this


def error(command: str, exc: ProtocolError) -> Message:
    """``<command>|error|<code>|<text>``; an over-long text is cut (it may echo client input)."""
    text = exc.text if len(exc.text) <= MAX_ERROR_TEXT else exc.text[: MAX_ERROR_TEXT - 3] + "..."
    return Message(command, ("error", str(int(exc.code)), text))


def parse_size(text: str) -> int:
    """A non-negative decimal integer of at most 20 digits, or :class:`MessageError`."""
    if not _DIGITS.match(text):
        raise MessageError(f"not a size: {text[:40]!r}")
    return int(text)


def parse_digest(text: str) -> str:
    """A lowercase hexadecimal file digest (BLAKE3), or :class:`MessageError`."""
    if not is_hexdigest(text):
        raise MessageError("not a BLAKE3 digest")
    return text
