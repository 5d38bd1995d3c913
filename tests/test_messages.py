"""Tests for ftpproto.messages: encoding, parsing, field escapes and reply helpers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ftpproto import messages
from ftpproto.errors import ErrorCode, MessageError, ProtocolError, RemoteError, ServerClosed
from ftpproto.messages import Message, parse_digest, parse_size

# Any Unicode text that can be encoded as UTF-8 (no lone surrogates).
fields_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
command_names = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
DIGEST = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (Message("pwd"), b"FileTransfer|pwd"),
        (Message("get", ("a.txt",)), b"FileTransfer|get|a.txt"),
        (Message("get", ("my file.txt",)), b"FileTransfer|get|my file.txt"),
        (Message("get", ("a|b",)), b"FileTransfer|get|a%7Cb"),
        (Message("get", ("100%",)), b"FileTransfer|get|100%25"),
        (Message("get", ("%7C",)), b"FileTransfer|get|%257C"),
        (Message("get", ("",)), b"FileTransfer|get|"),
        (Message("put", ("", "")), b"FileTransfer|put||"),
        (Message("get", ("caf\u00e9",)), "FileTransfer|get|caf\u00e9".encode()),
        (Message("get", ("\U0001f600",)), "FileTransfer|get|\U0001f600".encode()),
        (Message("login", ("alice", "p|w%d")), b"FileTransfer|login|alice|p%7Cw%25d"),
    ],
)
def test_encode_and_parse(message: Message, wire: bytes) -> None:
    assert message.encode() == wire
    assert Message.parse(wire) == message


@given(command_names, st.lists(fields_text, max_size=6).map(tuple))
@example("get", ("",))
@example("put", ("a|b|%|%25", "%7c"))
def test_round_trip_property(command: str, fields: tuple[str, ...]) -> None:
    message = Message(command, fields)
    assert Message.parse(message.encode()) == message


@pytest.mark.parametrize(
    ("wire", "fields"),
    [
        (b"FileTransfer|get|%7c", ("|",)),
        (b"FileTransfer|get|%7C", ("|",)),
        (b"FileTransfer|get|%41%42", ("AB",)),
        (b"FileTransfer|get|%c3%a9", ("\u00e9",)),
        (b"FileTransfer|get|%C3%A9", ("\u00e9",)),
        (b"FileTransfer|get|%2525", ("%25",)),
        (b"FileTransfer|get|a%20b", ("a b",)),
        (b"FileTransfer|get|%00", ("\0",)),
        (b"FileTransfer|get||", ("", "")),
    ],
)
def test_parse_escapes(wire: bytes, fields: tuple[str, ...]) -> None:
    assert Message.parse(wire).fields == fields


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\xff\xfe", id="invalid-utf8"),
        pytest.param(b"FileTransfer|get|\xc3", id="truncated-utf8"),
        pytest.param(b"FileTransfer|get|\xed\xa0\x80", id="utf8-surrogate"),
        pytest.param(b"Filetransfer|get", id="wrong-prefix-case"),
        pytest.param(b"FTP|get", id="wrong-prefix"),
        pytest.param(b" FileTransfer|get", id="leading-space"),
        pytest.param(b"FileTransfer", id="missing-command"),
        pytest.param(b"FileTransfer|", id="empty-command"),
        pytest.param(b"FileTransfer||a", id="empty-command-with-field"),
        pytest.param(b"FileTransfer|__init__", id="dunder"),
        pytest.param(b"FileTransfer|_private", id="underscore"),
        pytest.param(b"FileTransfer|Get", id="capital"),
        pytest.param(b"FileTransfer|GET", id="upper"),
        pytest.param(b"FileTransfer|1get", id="digit-first"),
        pytest.param(b"FileTransfer|get ", id="trailing-space"),
        pytest.param(b"FileTransfer|get\n", id="trailing-newline"),
        pytest.param(b"FileTransfer|g-et", id="dash"),
        pytest.param(b"FileTransfer|" + b"a" * 33, id="command-too-long"),
        pytest.param("FileTransfer|g\u00e9t".encode(), id="non-ascii-command"),
        pytest.param(b"FileTransfer|get|%", id="lone-percent"),
        pytest.param(b"FileTransfer|get|abc%", id="trailing-percent"),
        pytest.param(b"FileTransfer|get|%4", id="short-escape"),
        pytest.param(b"FileTransfer|get|%zz", id="non-hex-escape"),
        pytest.param(b"FileTransfer|get|%g0", id="half-hex-escape"),
        pytest.param(b"FileTransfer|get|%ff", id="escape-not-utf8"),
        pytest.param(b"FileTransfer|get|%c3", id="escape-truncated-utf8"),
        pytest.param(b"FileTransfer|get|%ed%a0%80", id="escape-surrogate"),
        pytest.param("FileTransfer|get|%\uff11\uff12".encode(), id="fullwidth-digit-escape"),
    ],
)
def test_parse_rejects(wire: bytes) -> None:
    with pytest.raises(MessageError) as info:
        Message.parse(wire)
    assert info.value.code == ErrorCode.BAD_REQUEST


@given(st.binary(max_size=200))
def test_parse_random_bytes_raises_only_message_error(data: bytes) -> None:
    try:
        message = Message.parse(data)
    except MessageError:
        return
    assert message.encode() == data or Message.parse(message.encode()) == message


@given(command_names, st.binary(max_size=100))
def test_parse_random_fields_raises_only_message_error(command: str, data: bytes) -> None:
    try:
        message = Message.parse(b"FileTransfer|" + command.encode() + b"|" + data)
    except MessageError:
        return
    assert message.command == command
    assert Message.parse(message.encode()) == message


@given(command_names, st.text(alphabet="%|a0fFgz\u00e9", max_size=20))
def test_parse_percent_soup_raises_only_message_error(command: str, text: str) -> None:
    with contextlib.suppress(MessageError):
        Message.parse(f"FileTransfer|{command}|{text}".encode())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("7", 7),
        ("007", 7),
        ("1048576", 1048576),
        ("9" * 20, int("9" * 20)),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "-1", "+1", " 1", "1 ", "1\n", "1.0", "1e3", "0x10", "1_000", "9" * 21, "\u0661\u0662"],
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(MessageError):
        parse_size(text)


def test_parse_digest_accepts() -> None:
    assert parse_digest(DIGEST) == DIGEST


@pytest.mark.parametrize(
    "text",
    ["", DIGEST[:-1], DIGEST + "0", DIGEST.upper(), DIGEST[:-1] + "g", DIGEST + "\n", " " + DIGEST],
)
def test_parse_digest_rejects(text: str) -> None:
    with pytest.raises(MessageError):
        parse_digest(text)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (messages.request("get", "a"), Message("get", ("a",))),
        (messages.request("pwd"), Message("pwd", ())),
        (messages.ready("get", 12), Message("get", ("ready", "12"))),
        (messages.recv_ready("put"), Message("put", ("recv_ready",))),
        (messages.abort("put"), Message("put", ("abort",))),
        (messages.digest("get", DIGEST), Message("get", ("digest", DIGEST))),
        (messages.ok("cd", "/a"), Message("cd", ("ok", "/a"))),
        (messages.ok("quit"), Message("quit", ("ok",))),
        (
            messages.error("get", ProtocolError(ErrorCode.NOT_FOUND, "no such file: a")),
            Message("get", ("error", "404", "no such file: a")),
        ),
    ],
)
def test_builders(message: Message, expected: Message) -> None:
    assert message == expected


@pytest.mark.parametrize(
    ("message", "status"),
    [(Message("pwd"), ""), (Message("get", ("ok", "x")), "ok"), (Message("get", ("",)), "")],
)
def test_status(message: Message, status: str) -> None:
    assert message.status == status


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [
        (
            Message("get", ("error", "404", "no such file: a")),
            ErrorCode.NOT_FOUND,
            "no such file: a",
        ),
        (Message("login", ("error", "430", "login incorrect")), ErrorCode.LOGIN_FAILED, None),
        (
            Message("get", ("error", "999", "from the future")),
            ErrorCode.INTERNAL,
            "from the future",
        ),
        (Message("get", ("error", "0", "zero")), ErrorCode.INTERNAL, "zero"),
        (Message("get", ("error", "9" * 20, "huge")), ErrorCode.INTERNAL, "huge"),
        (Message("get", ("error", "404")), ErrorCode.BAD_REQUEST, "malformed error reply to get"),
        (Message("get", ("error",)), ErrorCode.BAD_REQUEST, "malformed error reply to get"),
        (Message("get", ("error", "abc", "x")), ErrorCode.BAD_REQUEST, None),
        (Message("get", ("error", "-1", "x")), ErrorCode.BAD_REQUEST, None),
        (Message("get", ("error", "9" * 21, "x")), ErrorCode.BAD_REQUEST, None),
        (Message("get", ("error", "404", "a", "b")), ErrorCode.BAD_REQUEST, None),
    ],
)
def test_to_error_and_raise_if_error(message: Message, code: ErrorCode, text: str | None) -> None:
    err = message.to_error()
    assert isinstance(err, RemoteError)
    assert err.code == code
    if text is not None:
        assert err.text == text
    with pytest.raises(RemoteError) as info:
        message.raise_if_error()
    assert info.value.code == code


@pytest.mark.parametrize(
    "message", [Message("pwd"), Message("get", ("ok",)), Message("get", ("ready", "5"))]
)
def test_raise_if_error_passes_other_replies(message: Message) -> None:
    assert message.raise_if_error() is message


def test_a_timeout_before_the_close_is_raised_as_server_closed() -> None:
    with pytest.raises(ServerClosed) as info:
        Message("error", ("error", "408", "idle for 300 s")).raise_if_error()
    assert (str(info.value), info.value.reason) == (
        "closed by the server: idle for 300 s",
        "idle for 300 s",
    )
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(RemoteError):  # 408 as the reply to a command is just an error
        Message("get", ("error", "408", "x")).raise_if_error()


@pytest.mark.parametrize(
    ("message", "raised"),
    [
        (Message("ls", ("ok", "0")), None),
        (Message("pwd", ("ok", "/")), MessageError),
        (Message("ls", ("error", "404", "x")), RemoteError),
        (Message("error", ("error", "400", "x")), RemoteError),
        (Message("error", ("error", "408", "x")), ServerClosed),
    ],
)
def test_check_reply(message: Message, raised: type[Exception] | None) -> None:
    if raised is None:
        assert message.check_reply("ls") is message
        return
    with pytest.raises(raised):
        message.check_reply("ls")


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        (Message("cd", ("ok", "/a")), ("cd", "ok", 1), ("/a",)),
        (Message("quit", ("ok",)), ("quit", "ok", 0), ()),
        (Message("get", ("ready", "12")), ("get", "ready", 1), ("12",)),
        (
            Message("ls", ("entry", "a", "file", "1", "2")),
            ("ls", "entry", 4),
            ("a", "file", "1", "2"),
        ),
    ],
)
def test_expect_returns_fields(
    message: Message, args: tuple[str, str, int], expected: tuple[str, ...]
) -> None:
    assert message.expect(*args) == expected


@pytest.mark.parametrize(
    ("message", "args"),
    [
        pytest.param(Message("cd", ("ok", "/a")), ("pwd", "ok", 1), id="wrong-command"),
        pytest.param(Message("get", ("ok", "x")), ("get", "ready", 1), id="wrong-status"),
        pytest.param(Message("cd", ("ok",)), ("cd", "ok", 1), id="too-few-fields"),
        pytest.param(Message("cd", ("ok", "/a", "x")), ("cd", "ok", 1), id="too-many-fields"),
        pytest.param(Message("cd"), ("cd", "ok", 0), id="no-status"),
    ],
)
def test_expect_rejects(message: Message, args: tuple[str, str, int]) -> None:
    with pytest.raises(MessageError):
        message.expect(*args)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (Message("get", ("error", "404", "gone")), ErrorCode.NOT_FOUND),
        (Message("pwd", ("error", "401", "log in first: pwd")), ErrorCode.NOT_LOGGED_IN),
        (Message("get", ("error", "oops")), ErrorCode.BAD_REQUEST),
    ],
)
def test_expect_raises_remote_error_for_error_reply(message: Message, code: ErrorCode) -> None:
    # Even when the caller expected another command, an error reply is a RemoteError.
    with pytest.raises(RemoteError) as info:
        message.expect("get", "ok", 1)
    assert info.value.code == code


@given(st.sampled_from(list(ErrorCode)), fields_text)
def test_error_reply_round_trip(code: ErrorCode, text: str) -> None:
    wire = messages.error("get", ProtocolError(code, text)).encode()
    err = Message.parse(wire).to_error()
    assert (err.code, err.text) == (code, text)
