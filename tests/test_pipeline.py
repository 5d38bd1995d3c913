"""Tests for ftpproto.pipeline: the pipelined transfer messages of both ends, no sockets.

Each case reads as "the peer sent this, we answer that"; a method called
out of turn is a bug of the caller (HandshakeStateError).
"""

from __future__ import annotations

import pytest

from ftpproto.digest import new_hasher
from ftpproto.errors import ErrorCode, MessageError, ProtocolError, RemoteError
from ftpproto.handshake import HandshakeStateError
from ftpproto.messages import Message
from ftpproto.pipeline import (
    ClientFetch,
    ClientOffer,
    ServerFetch,
    ServerOffer,
    Window,
    parse_window,
    window_reply,
)

DATA = b"0123456789"


def hexdigest(data: bytes) -> str:
    hasher = new_hasher()
    hasher.update(data)
    return hasher.hexdigest()


def wire(text: str) -> Message:
    return Message.parse(f"FileTransfer|{text}".encode())


def text(message: Message) -> str:
    return message.encode().decode().removeprefix("FileTransfer|")


@pytest.mark.parametrize(
    ("held", "size", "admitted"),
    [
        ((0, 0), 10**9, True),  # a file bigger than the window goes alone
        ((1, 10), 80, True),
        ((1, 10), 91, False),  # over the bytes
        ((3, 0), 0, False),  # over the files
        ((2, 50), 50, True),
    ],
)
def test_window_admits(held: tuple[int, int], size: int, admitted: bool) -> None:
    window = Window(3, 100, *held)
    assert window.admits(size) is admitted


def test_window_take_give_and_reply() -> None:
    window = Window(2, 100)
    window.take(60)
    assert not window.admits(41) and window.admits(40)
    window.give(60)
    assert (window.held_files, window.held_bytes) == (0, 0)
    assert text(window_reply(window)) == "window|ok|2|100"
    assert parse_window(wire("window|ok|2|100")) == Window(2, 100)
    assert window.narrowed(8, 50) == Window(2, 50)
    assert window.full().code == ErrorCode.BAD_STATE
    with pytest.raises(RemoteError) as raised:
        parse_window(wire("window|error|405|unknown command: window"))
    assert raised.value.code == ErrorCode.UNKNOWN_COMMAND


def test_fetch_both_ends() -> None:
    client = ClientFetch("a|b.txt")
    assert text(client.request()) == "fetch|a%7Cb.txt"
    server = ServerFetch("/a|b.txt", len(DATA))
    client.ready(wire(text(server.ready())))
    assert client.count == len(DATA)
    client.hasher.update(DATA)
    reply = server.digest(hexdigest(DATA))
    assert client.check(reply) == hexdigest(DATA)
    assert client.finished and server.finished


def test_fetch_refused_and_changed() -> None:
    client = ClientFetch("nope")
    client.request()
    with pytest.raises(RemoteError) as raised:
        client.ready(wire("fetch|error|404|no such file or folder: nope"))
    assert raised.value.code == ErrorCode.NOT_FOUND
    assert client.finished
    server = ServerFetch("/f", 3)
    assert text(server.ready()) == "fetch|ready|3"
    assert server.file_changed().code == ErrorCode.FILE_CHANGED
    with pytest.raises(HandshakeStateError):
        server.digest(hexdigest(b"abc"))


def test_fetch_digest_mismatch_and_bad_ready() -> None:
    client = ClientFetch("f")
    client.request()
    client.ready(wire("fetch|ready|3"))
    client.hasher.update(b"abc")
    with pytest.raises(RemoteError) as raised:
        client.check(wire(f"fetch|digest|{hexdigest(b'abd')}"))
    assert raised.value.code == ErrorCode.DIGEST_MISMATCH
    other = ClientFetch("f")
    other.request()
    with pytest.raises(MessageError):
        other.ready(wire("fetch|ready|x"))
    with pytest.raises(HandshakeStateError):
        ClientFetch("f").ready(wire("fetch|ready|3"))


def test_offer_both_ends() -> None:
    client = ClientOffer("up.bin", len(DATA))
    assert text(client.request()) == "offer|up.bin|10"
    server = ServerOffer("/up.bin", len(DATA), new_hasher())
    client.ready(wire(text(server.ready())))
    assert text(client.send()) == "send"
    assert server.begin(withdraw=False)
    client.hasher.update(DATA)
    server.hasher.update(DATA)
    digest = server.check(client.digest())
    assert client.check(wire(f"send|ok|10|{digest}")) == hexdigest(DATA)


def test_offer_withdrawn_and_aborted() -> None:
    client = ClientOffer("w", 5)
    client.request()
    client.ready(wire("offer|ready|5"))
    assert text(client.withdraw()) == "send|abort"
    server = ServerOffer("/w", 5, new_hasher())
    server.ready()
    assert not server.begin(withdraw=True)
    assert server.withdrawn().code == ErrorCode.TRANSFER_ABORTED
    client.aborted(wire("send|error|461|upload aborted: /w"))
    assert client.finished
    sender = ServerOffer("/x", 1, new_hasher())
    sender.ready()
    sender.begin(withdraw=False)
    with pytest.raises(ProtocolError) as raised:
        sender.check(wire("send|abort"))
    assert raised.value.code == ErrorCode.TRANSFER_ABORTED


@pytest.mark.parametrize(
    ("after", "code"),
    [
        (f"send|digest|{hexdigest(b'other')}", ErrorCode.DIGEST_MISMATCH),
        ("send|digest|XYZ", ErrorCode.BAD_REQUEST),
        ("offer|x|1", ErrorCode.BAD_REQUEST),
        (f"send|digest|{hexdigest(DATA)}|extra", ErrorCode.BAD_REQUEST),
    ],
)
def test_offer_check_refuses(after: str, code: ErrorCode) -> None:
    server = ServerOffer("/f", len(DATA), new_hasher())
    server.ready()
    server.begin(withdraw=False)
    server.hasher.update(DATA)
    with pytest.raises(ProtocolError) as raised:
        server.check(wire(after))
    assert raised.value.code == code


def test_offer_refused_and_out_of_turn() -> None:
    client = ClientOffer("big", 10)
    client.request()
    with pytest.raises(RemoteError) as raised:
        client.ready(wire("offer|error|508|quota exceeded"))
    assert raised.value.code == ErrorCode.QUOTA_EXCEEDED
    with pytest.raises(HandshakeStateError):
        client.send()
    other = ClientOffer("f", 10)
    other.request()
    with pytest.raises(MessageError):
        other.ready(wire("offer|ready|11"))  # not the size offered
    with pytest.raises(HandshakeStateError):
        ServerOffer("/f", 1, new_hasher()).begin(withdraw=False)
