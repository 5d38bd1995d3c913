"""Tests for ftpproto.handshake: the transfer handshakes of both ends, on messages, no sockets.

Messages go in as the bytes of a frame's payload and come out as bytes, so
each case reads as "the peer sent this, we answer that".  Every message a
side does not expect at a step is refused with the error the peer sees.
"""

from __future__ import annotations

import os

import pytest

from ftpproto.digest import Hasher, new_hasher
from ftpproto.errors import ErrorCode, MessageError, ProtocolError, RemoteError, ServerClosed
from ftpproto.handshake import (
    ClientGet,
    ClientPut,
    HandshakeStateError,
    Resume,
    ServerGet,
    ServerPut,
    download_start,
    parse_resume,
    upload_start,
)
from ftpproto.messages import Message

DATA = b"0123456789"
EMPTY = new_hasher().hexdigest()


def hexdigest(data: bytes) -> str:
    hasher = new_hasher()
    hasher.update(data)
    return hasher.hexdigest()


def hashed(data: bytes) -> Hasher:
    hasher = new_hasher()
    hasher.update(data)
    return hasher


def wire(text: str) -> Message:
    """A message as the peer sends it (the frame's payload, without ``FileTransfer|``)."""
    return Message.parse(f"FileTransfer|{text}".encode())


def text(message: Message) -> str:
    """What goes on the wire for ``message`` (without ``FileTransfer|``)."""
    return message.encode().decode().removeprefix("FileTransfer|")


class Prefix:
    """A prefix-digest callback over ``data`` that records the lengths asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.asked: list[int] = []

    def __call__(self, count: int) -> Hasher:
        self.asked.append(count)
        return hashed(self.data[:count])


def error_code(exc: BaseException) -> int:
    assert isinstance(exc, ProtocolError), exc
    return int(exc.code)


# -- where a resumed transfer starts ------------------------------------------------------


@pytest.mark.parametrize(
    ("resume", "start", "asked"),
    [
        (None, 0, []),
        ((4, hexdigest(DATA[:4])), 4, [4]),
        ((10, hexdigest(DATA)), 10, [10]),
        ((0, EMPTY), 0, [0]),
        ((4, hexdigest(b"abcd")), 0, [4]),
        ((11, hexdigest(DATA + b"!")), 0, []),
    ],
    ids=["none", "prefix", "whole", "empty", "other-bytes", "longer-than-file"],
)
def test_download_start(resume: Resume | None, start: int, asked: list[int]) -> None:
    prefix = Prefix(DATA)
    offset, hasher = download_start(resume, len(DATA), prefix)
    assert (offset, prefix.asked) == (start, asked)
    hasher.update(DATA[offset:])
    assert hasher.hexdigest() == hexdigest(DATA), "the hasher does not continue the prefix"


@pytest.mark.parametrize(
    ("resume", "kept", "start", "asked"),
    [
        (None, 4, 0, []),
        ((4, hexdigest(DATA[:4])), 4, 4, [4]),
        ((4, hexdigest(DATA[:4])), 5, 0, []),
        ((4, hexdigest(DATA[:4])), 0, 0, []),
        ((4, hexdigest(b"abcd")), 4, 0, [4]),
        ((11, hexdigest(DATA + b"!")), 11, 0, []),
    ],
    ids=["none", "kept-exactly", "kept-more", "nothing-kept", "other-bytes", "over-size"],
)
def test_upload_start(resume: Resume | None, kept: int, start: int, asked: list[int]) -> None:
    prefix = Prefix(DATA + b"!")
    offset, hasher = upload_start(resume, len(DATA), kept, prefix)
    assert (offset, prefix.asked) == (start, asked)
    hasher.update(DATA[offset:])
    assert hasher.hexdigest() == hexdigest(DATA)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [((), None), (("4", EMPTY), (4, EMPTY)), (("004", EMPTY), (4, EMPTY))],
)
def test_parse_resume(fields: tuple[str, ...], expected: Resume | None) -> None:
    assert parse_resume("get", fields) == expected


@pytest.mark.parametrize(
    "fields", [("4",), ("4", EMPTY, "x"), ("-4", EMPTY), ("4", "nothex"), ("4", EMPTY.upper())]
)
def test_parse_resume_refuses(fields: tuple[str, ...]) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_resume("put", fields)
    assert caught.value.code == ErrorCode.BAD_REQUEST


# -- the server's side of get ---------------------------------------------------------------


def test_server_get_sends_the_file() -> None:
    get = ServerGet("/d/f", len(DATA), None, Prefix(DATA))
    assert text(get.ready()) == "get|ready|10"
    assert get.answer(wire("get|recv_ready")) is True
    assert (get.offset, get.count) == (0, 10)
    get.hasher.update(DATA)
    assert text(get.digest(get.hasher.hexdigest())) == f"get|digest|{hexdigest(DATA)}"
    assert get.finished


def test_server_get_resumes() -> None:
    get = ServerGet("/f", len(DATA), (4, hexdigest(DATA[:4])), Prefix(DATA))
    assert text(get.ready()) == "get|ready|6|4"
    assert get.answer(wire("get|recv_ready"))
    get.hasher.update(DATA[get.offset : get.offset + get.count])
    assert get.hasher.hexdigest() == hexdigest(DATA), "the final digest covers the whole file"


def test_server_get_starts_over_when_the_prefix_differs() -> None:
    get = ServerGet("/f", len(DATA), (4, hexdigest(b"abcd")), Prefix(DATA))
    assert text(get.ready()) == "get|ready|10|0"


def test_server_get_abort() -> None:
    get = ServerGet("/f", len(DATA), None, Prefix(DATA))
    get.ready()
    assert get.answer(wire("get|abort")) is False
    assert get.finished
    with pytest.raises(HandshakeStateError):
        get.digest(EMPTY)


def test_server_get_file_changed() -> None:
    get = ServerGet("/d/f", len(DATA), None, Prefix(DATA))
    get.ready()
    get.answer(wire("get|recv_ready"))
    exc = get.file_changed()
    assert (exc.code, exc.text) == (ErrorCode.FILE_CHANGED, "file changed while sent: /d/f")
    assert get.finished


@pytest.mark.parametrize(
    ("answer", "got"),
    [
        ("get|recv_ready|now", "get|recv_ready"),
        ("get|abort|please", "get|abort"),
        ("get", "get|"),
        ("put|recv_ready", "put|recv_ready"),
        ("get|digest|" + EMPTY, "get|digest"),
        ("get|error|404|no such file", "get|error"),
        ("get|error|500|x", "get|error"),
        ("error|error|408|idle", "error|error"),
        ("pwd", "pwd|"),
        ("ls|/", "ls|/"),
        ("get|RECV_READY", "get|RECV_READY"),
    ],
)
def test_server_get_refuses_any_other_answer(answer: str, got: str) -> None:
    get = ServerGet("/f", len(DATA), None, Prefix(DATA))
    get.ready()
    with pytest.raises(MessageError) as caught:
        get.answer(wire(answer))
    assert error_code(caught.value) == ErrorCode.BAD_REQUEST
    assert caught.value.text == f"expected get|recv_ready, got {got}"
    assert get.finished


def test_server_get_steps_out_of_turn() -> None:
    get = ServerGet("/f", len(DATA), None, Prefix(DATA))
    with pytest.raises(HandshakeStateError):
        get.answer(wire("get|recv_ready"))
    get.ready()
    with pytest.raises(HandshakeStateError):
        get.ready()
    with pytest.raises(HandshakeStateError):
        get.digest(EMPTY)
    with pytest.raises(HandshakeStateError):
        get.file_changed()


# -- the server's side of put ---------------------------------------------------------------


def server_put(resume: Resume | None = None, offset: int = 0) -> ServerPut:
    put = ServerPut("/d/f", len(DATA), resume, offset, hashed(DATA[:offset]))
    put.ready()
    put.hasher.update(DATA[offset:])
    return put


def test_server_put_ready() -> None:
    assert text(ServerPut("/f", 10, None, 0, new_hasher()).ready()) == "put|ready|10"
    resumed = ServerPut("/f", 10, (4, hexdigest(DATA[:4])), 4, hashed(DATA[:4]))
    assert text(resumed.ready()) == "put|ready|6|4"
    assert resumed.count == 6
    refused = ServerPut("/f", 10, (4, hexdigest(b"abcd")), 0, new_hasher())
    assert text(refused.ready()) == "put|ready|10|0"


@pytest.mark.parametrize("offset", [0, 4])
def test_server_put_checks_the_digest(offset: int) -> None:
    put = server_put((offset, hexdigest(DATA[:offset])), offset)
    assert put.check(wire(f"put|digest|{hexdigest(DATA)}")) == hexdigest(DATA)
    assert put.finished


@pytest.mark.parametrize(
    ("final", "code", "message"),
    [
        ("put|abort", ErrorCode.TRANSFER_ABORTED, "upload aborted: /d/f"),
        (f"put|digest|{hexdigest(DATA[:9])}", ErrorCode.DIGEST_MISMATCH, "digest mismatch: /d/f"),
        ("put|digest|nothex", ErrorCode.BAD_REQUEST, "not a BLAKE3 digest"),
        (f"put|digest|{hexdigest(DATA).upper()}", ErrorCode.BAD_REQUEST, "not a BLAKE3 digest"),
        ("put|digest", ErrorCode.BAD_REQUEST, "expected put|digest, got put|digest"),
        (f"put|digest|{EMPTY}|x", ErrorCode.BAD_REQUEST, "expected put|digest, got put|digest"),
        ("put|abort|x", ErrorCode.BAD_REQUEST, "expected put|digest, got put|abort"),
        ("put|other", ErrorCode.BAD_REQUEST, "expected put|digest, got put|other"),
        (f"get|digest|{EMPTY}", ErrorCode.BAD_REQUEST, "expected put|digest, got get|digest"),
        ("put|error|404|x", ErrorCode.BAD_REQUEST, "expected put|digest, got put|error"),
        ("pwd", ErrorCode.BAD_REQUEST, "expected put|digest, got pwd|"),
    ],
)
def test_server_put_refuses_anything_else(final: str, code: ErrorCode, message: str) -> None:
    put = server_put()
    with pytest.raises(ProtocolError) as caught:
        put.check(wire(final))
    assert (caught.value.code, caught.value.text) == (code, message)
    assert put.finished
    with pytest.raises(HandshakeStateError):
        put.check(wire(f"put|digest|{hexdigest(DATA)}"))


def test_server_put_check_before_ready() -> None:
    put = ServerPut("/f", 10, None, 0, new_hasher())
    with pytest.raises(HandshakeStateError):
        put.check(wire("put|abort"))


# -- the client's side of get ---------------------------------------------------------------


def test_client_get() -> None:
    get = ClientGet("a|b.txt")
    assert get.request().encode() == b"FileTransfer|get|a%7Cb.txt"
    get.ready(wire("get|ready|10"))
    assert (get.count, get.offset) == (10, 0)
    assert text(get.recv_ready()) == "get|recv_ready"
    get.hasher.update(DATA)
    assert get.check(wire(f"get|digest|{hexdigest(DATA)}")) == hexdigest(DATA)
    assert get.finished


@pytest.mark.parametrize(("start", "count"), [(4, 6), (0, 10)], ids=["resumed", "refused"])
def test_client_get_resume(start: int, count: int) -> None:
    get = ClientGet("f", (4, hashed(DATA[:4])))
    assert text(get.request()) == f"get|f|4|{hexdigest(DATA[:4])}"
    get.ready(wire(f"get|ready|{count}|{start}"))
    assert (get.count, get.offset) == (count, start)
    get.recv_ready()
    get.hasher.update(DATA[start:])
    assert get.check(wire(f"get|digest|{hexdigest(DATA)}")) == hexdigest(DATA)


def test_client_get_abort() -> None:
    get = ClientGet("f")
    get.request()
    get.ready(wire("get|ready|10"))
    assert text(get.abort()) == "get|abort"
    assert get.finished
    with pytest.raises(HandshakeStateError):
        get.recv_ready()


READY_REPLIES = [
    ("get|error|404|no such file or folder: f", RemoteError, ErrorCode.NOT_FOUND),
    ("error|error|400|bad", RemoteError, ErrorCode.BAD_REQUEST),
    ("get|error|4x4|x", RemoteError, ErrorCode.BAD_REQUEST),
    ("put|ready|10", MessageError, ErrorCode.BAD_REQUEST),
    ("get|ok", MessageError, ErrorCode.BAD_REQUEST),
    ("get|ready", MessageError, ErrorCode.BAD_REQUEST),
    ("get|ready|ten", MessageError, ErrorCode.BAD_REQUEST),
    ("get|ready|-1", MessageError, ErrorCode.BAD_REQUEST),
    ("get|ready|10|0", MessageError, ErrorCode.BAD_REQUEST),
]


@pytest.mark.parametrize(("reply", "kind", "code"), READY_REPLIES)
def test_client_get_refuses_a_bad_ready(
    reply: str, kind: type[ProtocolError], code: ErrorCode
) -> None:
    get = ClientGet("f")
    get.request()
    with pytest.raises(kind) as caught:
        get.ready(wire(reply))
    assert caught.value.code == code
    assert get.finished != reply.startswith("get|ready"), "after a ready, abort() is due"


@pytest.mark.parametrize("reply", ["get|ready|6|3", "get|ready|10", "get|ready|6|4|x"])
def test_client_get_refuses_a_start_it_did_not_offer(reply: str) -> None:
    get = ClientGet("f", (4, hashed(DATA[:4])))
    get.request()
    with pytest.raises(MessageError):
        get.ready(wire(reply))


@pytest.mark.parametrize("reply", ["get|ready|ten", "get|ready|6|3"])
def test_client_get_calls_off_a_ready_that_does_not_fit(reply: str) -> None:
    get = ClientGet("f", (4, hashed(DATA[:4])) if reply.count("|") == 3 else None)
    get.request()
    with pytest.raises(MessageError):
        get.ready(wire(reply))
    assert text(get.abort()) == "get|abort", "the server waits for an answer"
    assert get.finished


def test_a_timed_out_server_is_a_closed_connection() -> None:
    get = ClientGet("f")
    get.request()
    with pytest.raises(ServerClosed) as caught:
        get.ready(wire("error|error|408|idle for 300 s"))
    assert str(caught.value) == "closed by the server: idle for 300 s"
    assert isinstance(caught.value, ConnectionError)


@pytest.mark.parametrize(
    ("reply", "kind", "code"),
    [
        (f"get|digest|{hexdigest(DATA[:9])}", RemoteError, ErrorCode.DIGEST_MISMATCH),
        ("get|error|462|file changed while sent: f", RemoteError, ErrorCode.FILE_CHANGED),
        ("get|digest|nothex", MessageError, ErrorCode.BAD_REQUEST),
        ("get|digest", MessageError, ErrorCode.BAD_REQUEST),
        (f"put|digest|{hexdigest(DATA)}", MessageError, ErrorCode.BAD_REQUEST),
        ("get|ok", MessageError, ErrorCode.BAD_REQUEST),
    ],
)
def test_client_get_refuses_a_bad_digest(
    reply: str, kind: type[ProtocolError], code: ErrorCode
) -> None:
    get = ClientGet("f")
    get.request()
    get.ready(wire("get|ready|10"))
    get.recv_ready()
    get.hasher.update(DATA)
    with pytest.raises(kind) as caught:
        get.check(wire(reply))
    assert caught.value.code == code
    assert get.finished


def test_client_get_steps_out_of_turn() -> None:
    get = ClientGet("f")
    with pytest.raises(HandshakeStateError):
        get.ready(wire("get|ready|1"))
    get.request()
    with pytest.raises(HandshakeStateError):
        get.recv_ready()
    with pytest.raises(HandshakeStateError):
        get.check(wire(f"get|digest|{EMPTY}"))


# -- the client's side of put ---------------------------------------------------------------


def test_client_put() -> None:
    put = ClientPut("d/f", len(DATA))
    assert text(put.request()) == "put|d/f|10"
    put.ready(wire("put|ready|10"))
    assert (put.count, put.offset) == (10, 0)
    put.hasher.update(DATA)
    assert text(put.digest()) == f"put|digest|{hexdigest(DATA)}"
    assert put.check(wire(f"put|ok|10|{hexdigest(DATA)}")) == hexdigest(DATA)
    assert put.finished


@pytest.mark.parametrize(("start", "count"), [(4, 6), (0, 10)], ids=["resumed", "refused"])
def test_client_put_resume(start: int, count: int) -> None:
    put = ClientPut("f", len(DATA), (4, hashed(DATA[:4])))
    assert text(put.request()) == f"put|f|10|4|{hexdigest(DATA[:4])}"
    put.ready(wire(f"put|ready|{count}|{start}"))
    assert (put.count, put.offset) == (count, start)
    put.hasher.update(DATA[start:])
    assert text(put.digest()) == f"put|digest|{hexdigest(DATA)}"


@pytest.mark.parametrize(
    ("reply", "kind", "code"),
    [
        ("put|error|508|quota exceeded", RemoteError, ErrorCode.QUOTA_EXCEEDED),
        ("put|ready|9", MessageError, ErrorCode.BAD_REQUEST),
        ("put|ready|11", MessageError, ErrorCode.BAD_REQUEST),
        ("put|ready|10|0", MessageError, ErrorCode.BAD_REQUEST),
        ("get|ready|10", MessageError, ErrorCode.BAD_REQUEST),
        ("put|ok|10|" + EMPTY, MessageError, ErrorCode.BAD_REQUEST),
    ],
)
def test_client_put_refuses_a_bad_ready(
    reply: str, kind: type[ProtocolError], code: ErrorCode
) -> None:
    put = ClientPut("f", len(DATA))
    put.request()
    with pytest.raises(kind) as caught:
        put.ready(wire(reply))
    assert caught.value.code == code


@pytest.mark.parametrize("reply", ["put|ready|6|3", "put|ready|5|4", "put|ready|10"])
def test_client_put_refuses_a_start_it_did_not_offer(reply: str) -> None:
    put = ClientPut("f", len(DATA), (4, hashed(DATA[:4])))
    put.request()
    with pytest.raises(MessageError):
        put.ready(wire(reply))


@pytest.mark.parametrize(
    ("reply", "kind", "code"),
    [
        (f"put|ok|9|{hexdigest(DATA)}", RemoteError, ErrorCode.DIGEST_MISMATCH),
        (f"put|ok|10|{hexdigest(DATA[:9])}", RemoteError, ErrorCode.DIGEST_MISMATCH),
        ("put|error|460|digest mismatch: f", RemoteError, ErrorCode.DIGEST_MISMATCH),
        ("put|error|507|no space left on the server: f", RemoteError, ErrorCode.NO_SPACE),
        ("put|ok|10", MessageError, ErrorCode.BAD_REQUEST),
        (f"put|ok|ten|{hexdigest(DATA)}", MessageError, ErrorCode.BAD_REQUEST),
        (f"get|ok|10|{hexdigest(DATA)}", MessageError, ErrorCode.BAD_REQUEST),
    ],
)
def test_client_put_refuses_a_bad_result(
    reply: str, kind: type[ProtocolError], code: ErrorCode
) -> None:
    put = ClientPut("f", len(DATA))
    put.request()
    put.ready(wire("put|ready|10"))
    put.hasher.update(DATA)
    put.digest()
    with pytest.raises(kind) as caught:
        put.check(wire(reply))
    assert caught.value.code == code
    assert put.finished


@pytest.mark.parametrize("reply", ["put|error|461|upload aborted: f", "put|ok|10|x"])
def test_client_put_abort(reply: str) -> None:
    put = ClientPut("f", len(DATA))
    put.request()
    put.ready(wire("put|ready|10"))
    assert text(put.abort()) == "put|abort"
    with pytest.raises(HandshakeStateError):
        put.digest()
    put.aborted(wire(reply))
    assert put.finished


def test_client_put_abort_answered_for_another_command() -> None:
    put = ClientPut("f", len(DATA))
    put.request()
    put.ready(wire("put|ready|10"))
    put.abort()
    with pytest.raises(MessageError):
        put.aborted(wire("ls|ok|0"))


def test_client_put_steps_out_of_turn() -> None:
    put = ClientPut("f", len(DATA))
    with pytest.raises(HandshakeStateError):
        put.digest()
    put.request()
    with pytest.raises(HandshakeStateError):
        put.abort()
    put.ready(wire("put|ready|10"))
    with pytest.raises(HandshakeStateError):
        put.check(wire(f"put|ok|10|{EMPTY}"))
    with pytest.raises(HandshakeStateError):
        put.aborted(wire("put|error|461|x"))


# -- both ends together, messages through bytes ------------------------------------------------


def through_the_wire(message: Message) -> Message:
    return Message.parse(message.encode())


@pytest.mark.parametrize("held", [0, 1, 4096, 9000, 10_000], ids=lambda n: f"held-{n}")
def test_get_end_to_end(held: int) -> None:
    data = os.urandom(10_000)
    client = ClientGet("f", (held, hashed(data[:held])) if held else None)
    request = through_the_wire(client.request())
    resume = parse_resume("get", request.fields[1:])
    server = ServerGet(request.fields[0], len(data), resume, Prefix(data))
    client.ready(through_the_wire(server.ready()))
    assert server.answer(through_the_wire(client.recv_ready()))
    sent = data[server.offset : server.offset + server.count]
    server.hasher.update(sent)
    client.hasher.update(sent)
    final = server.digest(server.hasher.hexdigest())
    assert client.check(through_the_wire(final)) == hexdigest(data)
    assert client.offset == held and server.finished and client.finished


@pytest.mark.parametrize("kept", [0, 1, 4096, 10_000], ids=lambda n: f"kept-{n}")
def test_put_end_to_end(kept: int) -> None:
    data = os.urandom(10_000)
    client = ClientPut("f", len(data), (kept, hashed(data[:kept])) if kept else None)
    request = through_the_wire(client.request())
    resume = parse_resume("put", request.fields[2:])
    size = int(request.fields[1])
    offset, hasher = upload_start(resume, size, kept, Prefix(data))
    server = ServerPut(request.fields[0], size, resume, offset, hasher)
    client.ready(through_the_wire(server.ready()))
    sent = data[client.offset : client.offset + client.count]
    client.hasher.update(sent)
    server.hasher.update(sent)
    stored = server.check(through_the_wire(client.digest()))
    assert client.check(through_the_wire(Message("put", ("ok", str(size), stored)))) == stored
    assert client.offset == kept and stored == hexdigest(data)
