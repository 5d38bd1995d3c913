"""End to end on the wire: framing, the command table, login rules and the put handshake.

These tests talk to a real server through a raw socket and
:class:`~ftpproto.channel.Channel`, to send what the client library never
would: several messages in one write, a message one byte at a time, bad
frames, unknown commands, wrong digests, NUL bytes.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
from collections.abc import Callable

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    RawSession,
    RunningServer,
    digest_of,
    error_of,
    temp_files,
)

from ftpproto.commands import COMMANDS
from ftpproto.digest import new_hasher
from ftpproto.errors import ErrorCode
from ftpproto.framing import MAX_FRAME_SIZE, encode_frame
from ftpproto.messages import Message, abort, digest, recv_ready, request

pytestmark = pytest.mark.timeout(60)

RawFactory = Callable[[], RawSession]


def test_two_commands_in_one_sendall(server: RunningServer, raw: RawFactory) -> None:
    session = raw()
    session.send_raw(
        session.frame("login", ALICE, ALICE_PASSWORD) + session.frame("pwd") + session.frame("ls")
    )
    assert session.recv() == Message("login", ("ok", ALICE)), "first of three messages"
    assert session.recv() == Message("pwd", ("ok", "/")), "second of three messages"
    assert session.recv() == Message("ls", ("ok", "0")), "third of three messages"
    session.send(request("cd", "/"), request("pwd"))  # Channel.send: one write
    assert session.recv() == Message("cd", ("ok", "/"))
    assert session.recv() == Message("pwd", ("ok", "/"))
    server.assert_serving()


def test_a_command_dribbled_one_byte_at_a_time(server: RunningServer, raw: RawFactory) -> None:
    (server.alice_home / "a file|x.txt").write_bytes(b"hello")
    session = raw()
    for frame in (session.frame("login", ALICE, ALICE_PASSWORD), session.frame("ls", "/")):
        for i in range(len(frame)):
            session.send_raw(frame[i : i + 1])
            time.sleep(0.001)
    assert session.recv() == Message("login", ("ok", ALICE)), "dribbled login"
    entry = session.recv()
    assert entry.fields[:4] == ("entry", "a file|x.txt", "file", "5"), f"dribbled ls: {entry}"
    assert session.recv() == Message("ls", ("ok", "1"))
    server.assert_serving()


def test_a_put_dribbled_one_byte_at_a_time(server: RunningServer, raw: RawFactory) -> None:
    data = b"\x00\x00\x00\x05FileTransfer|pwd"
    session = raw()
    session.login()
    for byte in session.frame("put", "dribble.bin", str(len(data))):
        session.send_raw(bytes([byte]))
    assert session.recv() == Message("put", ("ready", str(len(data))))
    for byte in data + encode_frame(digest("put", digest_of(data)).encode()):
        session.send_raw(bytes([byte]))
    assert session.recv() == Message("put", ("ok", str(len(data)), digest_of(data)))
    assert (server.alice_home / "dribble.bin").read_bytes() == data, "stored bytes differ"


@pytest.mark.parametrize("size", [0, 5, 3000, 200_000], ids=lambda n: f"{n}-bytes")
def test_put_sent_in_one_write_with_its_data(
    server: RunningServer, raw: RawFactory, size: int
) -> None:
    """Request, data and digest in one sendall: framing, not the handshake, keeps them apart."""
    data = (b"\x00\x00\x00\x11FileTransfer|pwd" * (size // 20 + 1))[:size]
    session = raw()
    session.login()
    session.send_raw(
        session.frame("put", "piped.bin", str(size))
        + data
        + encode_frame(digest("put", digest_of(data)).encode())
        + session.frame("pwd")
    )
    assert session.recv() == Message("put", ("ready", str(size)))
    assert session.recv() == Message("put", ("ok", str(size), digest_of(data))), "pipelined put"
    assert session.recv() == Message("pwd", ("ok", "/")), "the message after the data"
    assert (server.alice_home / "piped.bin").read_bytes() == data, "stored bytes differ"


def test_get_handshake_and_digest(server: RunningServer, raw: RawFactory) -> None:
    data = os.urandom(100_000)
    (server.alice_home / "g.bin").write_bytes(data)
    session = raw()
    session.login()
    assert session.call("get", "g.bin") == Message("get", ("ready", str(len(data))))
    session.send(recv_ready("get"))
    received = io.BytesIO()
    hasher = new_hasher()
    session.channel.recv_file(received, len(data), hasher)
    assert received.getvalue() == data, "get sent other bytes"
    assert session.recv() == Message("get", ("digest", digest_of(data))), "digest after the data"
    assert session.call("pwd") == Message("pwd", ("ok", "/")), "session goes on after get"


def test_get_abort_instead_of_recv_ready(server: RunningServer, raw: RawFactory) -> None:
    (server.alice_home / "g.bin").write_bytes(b"abc")
    session = raw()
    session.login()
    assert session.call("get", "g.bin") == Message("get", ("ready", "3"))
    session.send(abort("get"))
    assert session.call("pwd") == Message("pwd", ("ok", "/")), "session after an aborted get"


# -- framing violations ---------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [b"\xff\xff\xff\xff", struct.pack(">I", MAX_FRAME_SIZE + 1), b"\x00\x00\x00\x00"],
    ids=["0xFFFFFFFF", "max+1", "zero-length"],
)
@pytest.mark.parametrize("logged_in", [False, True], ids=["before-login", "after-login"])
def test_framing_violation_is_answered_and_closes(
    server: RunningServer, raw: RawFactory, header: bytes, logged_in: bool
) -> None:
    session = raw()
    if logged_in:
        session.login()
    session.send_raw(header)
    _, code, text = error_of(session.recv())
    assert code == ErrorCode.FRAMING, f"framing violation answered with {code} {text!r}"
    assert session.is_closed_by_server(), "the server kept the connection open"
    server.assert_serving()


@pytest.mark.parametrize(
    "head, expected",
    [
        (b"FileTransfer|ls|", ("ls", ErrorCode.PATH_TOO_LONG)),
        (b"FileTransfer|nosuch|", ("nosuch", ErrorCode.UNKNOWN_COMMAND)),
        # help echoes the name it does not know: the reply must still fit in a frame
        (b"FileTransfer|help|", ("help", ErrorCode.UNKNOWN_COMMAND)),
    ],
    ids=["ls", "unknown", "help"],
)
def test_a_frame_of_exactly_the_maximum_size_is_accepted(
    server: RunningServer, raw: RawFactory, head: bytes, expected: tuple[str, int]
) -> None:
    session = raw()
    session.login()
    session.send_raw(encode_frame(head + b"x" * (MAX_FRAME_SIZE - len(head))))
    cmd, code, _ = error_of(session.recv())
    assert (cmd, code) == expected, f"max-size frame {head!r}: answered {cmd} {code}"
    assert session.call("pwd") == Message("pwd", ("ok", "/")), "the session did not go on"


def test_a_frame_that_is_no_message_is_answered_and_the_session_goes_on(
    server: RunningServer, raw: RawFactory
) -> None:
    session = raw()
    for payload in (b"NotFileTransfer|pwd", b"FileTransfer", b"\xff\xfe", b"FileTransfer|get|%zz"):
        session.send_raw(encode_frame(payload))
        _, code, _ = error_of(session.recv())
        assert code == ErrorCode.BAD_REQUEST, f"{payload!r} answered with {code}"
    session.login()
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


# -- the command table ------------------------------------------------------------


# Names outside the message grammar ([a-z][a-z0-9_]*) fail to parse (400, "malformed
# command name"); names that parse but are not in the command table get 405.  Either
# way nothing is dispatched and the session goes on.
UNKNOWN_COMMANDS = [
    ("__init__", ErrorCode.BAD_REQUEST),
    ("_private", ErrorCode.BAD_REQUEST),
    ("handle", ErrorCode.UNKNOWN_COMMAND),
    ("setup", ErrorCode.UNKNOWN_COMMAND),
    ("server", ErrorCode.UNKNOWN_COMMAND),
    ("nosuch", ErrorCode.UNKNOWN_COMMAND),
]


@pytest.mark.parametrize("name, expected", UNKNOWN_COMMANDS)
@pytest.mark.parametrize("logged_in", [False, True], ids=["before-login", "after-login"])
def test_unknown_commands_are_refused(
    server: RunningServer, raw: RawFactory, name: str, expected: ErrorCode, logged_in: bool
) -> None:
    session = raw()
    if logged_in:
        session.login()
    for args in (("x",), ()):
        session.send(Message(name, args))
        _, code, text = error_of(session.recv())
        assert code == expected, f"{name}{args}: code {code} ({text!r}), expected {expected}"
    if not logged_in:
        session.login()
    assert session.call("pwd") == Message("pwd", ("ok", "/")), "the session did not go on"
    server.assert_serving()


@pytest.mark.parametrize("name", ["finish", "dispatch", "jail", "channel", "cmd_pwd", "user"])
def test_handler_attributes_are_not_commands(
    server: RunningServer, raw: RawFactory, name: str
) -> None:
    session = raw()
    session.login()
    _, code, _ = error_of(session.call(name))
    assert code == ErrorCode.UNKNOWN_COMMAND, f"{name}: code {code}"
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


@pytest.mark.parametrize(
    "command, args",
    [
        ("get", ()),
        ("get", ("a", "b")),
        ("put", ("x",)),
        ("put", ("x", "1", "extra")),
        ("cd", ()),
        ("cd", ("a", "b")),
        ("ls", ("a", "b")),
        ("pwd", ("extra",)),
        ("help", ("a", "b")),
    ],
)
def test_wrong_argument_count_is_400(
    server: RunningServer, raw: RawFactory, command: str, args: tuple[str, ...]
) -> None:
    session = raw()
    session.login()
    cmd, code, text = error_of(session.call(command, *args))
    assert (cmd, code) == (command, ErrorCode.BAD_REQUEST), f"{command}{args}: {code} {text!r}"
    assert command in text, f"the usage text {text!r} does not name the command"
    assert session.call("pwd") == Message("pwd", ("ok", "/")), "the session did not go on"


@pytest.mark.parametrize("args", [(), ("alice",), ("alice", "pw", "extra")])
def test_login_with_wrong_argument_count_is_400(raw: RawFactory, args: tuple[str, ...]) -> None:
    session = raw()
    _, code, _ = error_of(session.call("login", *args))
    assert code == ErrorCode.BAD_REQUEST
    session.login()  # not counted as a failed login; the session goes on


@pytest.mark.parametrize("size", ["-1", "1.5", "abc", "", "1" * 21])
def test_put_with_a_bad_size_is_400(server: RunningServer, raw: RawFactory, size: str) -> None:
    session = raw()
    session.login()
    _, code, _ = error_of(session.call("put", "x.bin", size))
    assert code == ErrorCode.BAD_REQUEST, f"size {size!r}: code {code}"
    assert not (server.alice_home / "x.bin").exists()
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


@pytest.mark.parametrize(
    "command, args",
    [("pwd", ()), ("cd", ("/",)), ("ls", ()), ("get", ("f.txt",)), ("put", ("p.txt", "1"))],
)
def test_commands_before_login_are_401(
    server: RunningServer, raw: RawFactory, command: str, args: tuple[str, ...]
) -> None:
    (server.alice_home / "f.txt").write_bytes(b"secret")
    session = raw()
    cmd, code, _ = error_of(session.call(command, *args))
    assert (cmd, code) == (command, ErrorCode.NOT_LOGGED_IN), f"{command} before login: {code}"
    assert not (server.alice_home / "p.txt").exists()
    session.login()
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


def test_help_and_quit_work_before_login(server: RunningServer, raw: RawFactory) -> None:
    session = raw()
    reply = session.call("help")
    assert reply.status == "ok", reply
    assert set(reply.fields[1:]) == set(COMMANDS), f"help lists {reply.fields[1:]}"
    reply = session.call("help", "get")
    assert reply.status == "ok" and reply.fields[1].startswith("get"), reply
    _, code, _ = error_of(session.call("help", "handle"))
    assert code == ErrorCode.UNKNOWN_COMMAND
    assert session.call("quit") == Message("quit", ("ok",))
    assert session.is_closed_by_server(), "quit did not close the connection"
    server.assert_serving()


# -- login ------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_look_the_same(
    server: RunningServer, raw: RawFactory
) -> None:
    results = {}
    attempts = [
        (ALICE, "wrong"),
        ("nobody", "wrong"),
        (ALICE, BOB_PASSWORD),
        (ALICE, ALICE_PASSWORD + "x" * 80),  # longer than bcrypt reads
        ("nobody", ALICE_PASSWORD),
        ("ali|ce", ALICE_PASSWORD),
        ("", ""),
    ]
    for user, password in attempts:
        session = raw()
        started = time.monotonic()
        reply = session.call("login", user, password)
        elapsed = time.monotonic() - started
        cmd, code, text = error_of(reply)
        results[(user, password)] = (cmd, code, text)
        assert elapsed >= 0.05, f"failed login for {user!r} was not delayed ({elapsed:.3f} s)"
        session.login()  # the session goes on after one failure
    assert len(set(results.values())) == 1, f"failed logins differ: {results}"
    ((cmd, code, _),) = set(results.values())
    assert (cmd, code) == ("login", ErrorCode.LOGIN_FAILED), results


def test_three_failed_logins_close_the_connection(server: RunningServer, raw: RawFactory) -> None:
    session = raw()
    for attempt in (1, 2):
        _, code, _ = error_of(session.call("login", ALICE, f"wrong{attempt}"))
        assert code == ErrorCode.LOGIN_FAILED, f"attempt {attempt}: {code}"
    _, code, _ = error_of(session.call("login", "nobody", "wrong3"))
    assert code == ErrorCode.TOO_MANY_FAILURES, f"third failure answered with {code}"
    assert session.is_closed_by_server(), "connection still open after three failures"
    server.assert_serving()


def test_second_login_is_refused(raw: RawFactory) -> None:
    session = raw()
    session.login()
    _, code, _ = error_of(session.call("login", BOB, BOB_PASSWORD))
    assert code == ErrorCode.BAD_STATE
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


def test_login_with_separators_in_the_password(server: RunningServer, raw: RawFactory) -> None:
    """bob's password holds ``|``, ``%`` and a space: escaped on the wire, checked as is."""
    session = raw()
    session.login(BOB, BOB_PASSWORD)
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


# -- the put handshake ------------------------------------------------------------


@pytest.mark.parametrize("old", [None, b"the older version"], ids=["new", "existing"])
def test_digest_mismatch_stores_nothing(
    server: RunningServer, raw: RawFactory, old: bytes | None
) -> None:
    target = server.alice_home / "d.bin"
    if old is not None:
        target.write_bytes(old)
    data = os.urandom(300_000)
    session = raw()
    session.login()
    assert session.call("put", "d.bin", str(len(data))) == Message("put", ("ready", str(len(data))))
    session.send_raw(data)
    session.send(digest("put", digest_of(data + b"!")))
    cmd, code, _ = error_of(session.recv())
    assert (cmd, code) == ("put", ErrorCode.DIGEST_MISMATCH), f"wrong digest answered {code}"
    if old is None:
        assert not target.exists(), "a file was stored despite the wrong digest"
    else:
        assert target.read_bytes() == old, "the older file was changed"
    assert temp_files(server.homes) == [], "temporary file left after a digest mismatch"
    assert session.call("pwd") == Message("pwd", ("ok", "/")), "the session did not go on"
    server.assert_serving()


def test_put_abort_after_the_data_stores_nothing(server: RunningServer, raw: RawFactory) -> None:
    target = server.alice_home / "a.bin"
    target.write_bytes(b"keep me")
    session = raw()
    session.login()
    assert session.call("put", "a.bin", "5") == Message("put", ("ready", "5"))
    session.send_raw(b"12345")
    session.send(abort("put"))
    cmd, code, _ = error_of(session.recv())
    assert (cmd, code) == ("put", ErrorCode.TRANSFER_ABORTED)
    assert target.read_bytes() == b"keep me"
    assert temp_files(server.homes) == []
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


@pytest.mark.parametrize("final", ["digest|nothex", "other", "digest"], ids=str)
def test_put_with_a_bad_final_message_stores_nothing(
    server: RunningServer, raw: RawFactory, final: str
) -> None:
    session = raw()
    session.login()
    assert session.call("put", "b.bin", "3") == Message("put", ("ready", "3"))
    session.send_raw(b"abc")
    session.send(Message("put", tuple(final.split("|"))))
    cmd, code, _ = error_of(session.recv())
    assert code == ErrorCode.BAD_REQUEST, f"final {final!r}: {cmd} {code}"
    assert not (server.alice_home / "b.bin").exists()
    assert temp_files(server.homes) == []
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


# -- NUL and over-long paths (the client library would not send them) ------------


@pytest.mark.parametrize("path", ["a\0b", "\0", "sub/\0/x", "ok.txt\0../../etc/passwd"])
@pytest.mark.parametrize("command", ["get", "put", "ls", "cd"])
def test_nul_in_a_path_is_refused(
    server: RunningServer, raw: RawFactory, command: str, path: str
) -> None:
    (server.alice_home / "ok.txt").write_bytes(b"ok")
    (server.alice_home / "a").write_bytes(b"a")
    session = raw()
    session.login()
    args = (path, "1") if command == "put" else (path,)
    cmd, code, _ = error_of(session.call(command, *args))
    assert (cmd, code) == (command, ErrorCode.BAD_PATH), f"{command} {path!r}: {code}"
    assert sorted(os.listdir(server.alice_home)) == ["a", "ok.txt"], "a file was created"
    # %00 on the wire decodes to the same NUL
    escaped = f"FileTransfer|{command}|x%00y" + ("|1" if command == "put" else "")
    session.send_raw(encode_frame(escaped.encode()))
    _, code, _ = error_of(session.recv())
    assert code == ErrorCode.BAD_PATH, f"{command} with %00: {code}"
    assert session.call("pwd") == Message("pwd", ("ok", "/"))
    server.assert_serving()


@pytest.mark.parametrize("command", ["get", "put", "ls", "cd"])
def test_an_empty_path_is_refused(server: RunningServer, raw: RawFactory, command: str) -> None:
    session = raw()
    session.login()
    args = ("", "1") if command == "put" else ("",)
    cmd, code, _ = error_of(session.call(command, *args))
    assert (cmd, code) == (command, ErrorCode.BAD_PATH), f"{command} '': {code}"
    assert os.listdir(server.alice_home) == []
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


@pytest.mark.parametrize(
    "path",
    ["n" * 256, "d/" * 2048 + "x", "/".join(["abcdefgh"] * 600)],
    ids=["name-256-bytes", "path-4097-bytes", "path-5399-bytes"],
)
@pytest.mark.parametrize("command", ["get", "put", "ls", "cd"])
def test_over_long_paths_are_refused(
    server: RunningServer, raw: RawFactory, command: str, path: str
) -> None:
    session = raw()
    session.login()
    args = (path, "1") if command == "put" else (path,)
    cmd, code, _ = error_of(session.call(command, *args))
    assert (cmd, code) == (command, ErrorCode.PATH_TOO_LONG), f"{command}: {code}"
    assert os.listdir(server.alice_home) == []
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


def test_a_name_of_255_bytes_is_fine(server: RunningServer, raw: RawFactory) -> None:
    name = "é" * 127 + "x"  # 255 bytes in UTF-8
    session = raw()
    session.login()
    assert session.call("put", name, "2") == Message("put", ("ready", "2"))
    session.send_raw(b"hi")
    session.send(digest("put", digest_of(b"hi")))
    assert session.recv().status == "ok"
    assert (server.alice_home / name).read_bytes() == b"hi"


# -- many connections -------------------------------------------------------------


def test_two_hundred_connections_at_once(server: RunningServer) -> None:
    count = 200
    barrier = threading.Barrier(count, timeout=20)
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            session = RawSession(server.port)
            try:
                reply = session.call("help")
                if reply.status != "ok":
                    errors.append(f"{i}: {reply}")
            finally:
                session.close()
        except Exception as exc:
            errors.append(f"{i}: {exc!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)
    assert errors == [], f"{len(errors)} connections failed: {errors[:5]}"
    server.assert_serving()
