"""docs/PROTOCOL.md's exact answers, checked against a real server on raw sockets.

The points a client writer would otherwise have to guess: ``..`` at ``/``,
what the 4096-byte limit applies to, the reply to an unexpected message
inside a handshake and to an abort, ``ls``/``cd``/``rm``/``put`` on
symlinks, leading zeros in sizes; and section 8's example session, read
from the document and replayed as written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Account, MakeServer, RawSession, RunningServer, digest_of, error_of

from ftpproto.errors import ErrorCode
from ftpproto.framing import encode_frame
from ftpproto.messages import Message, abort, digest, recv_ready

pytestmark = pytest.mark.timeout(60)

RawFactory = Callable[[], RawSession]
PROTOCOL_MD = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"


def session_of(raw: RawFactory) -> RawSession:
    session = raw()
    session.login()
    return session


def listing(session: RawSession, *args: str) -> list[tuple[str, ...]]:
    """The entries of ``ls`` (name, type, size), sorted; fails on an error."""
    session.request("ls", *args)
    entries = []
    while (reply := session.recv()).status == "entry":
        entries.append(reply.fields[1:4])
    assert reply.status == "ok", reply
    return sorted(entries)


# -- section 8, as written ------------------------------------------------------------


def example_lines() -> list[tuple[str, str]]:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    section = text[text.index("## 8. Example session") :]
    block = section[section.index("```\n") + 4 :]
    block = block[: block.index("```")]
    return [(line[0], line[3:]) for line in block.splitlines() if line.strip()]


def test_the_example_session_runs_as_written(make_server: MakeServer) -> None:
    lines = example_lines()
    assert lines[0] == ("C", "FileTransfer|login|alice|s3cret"), "the example changed its login"
    running = make_server(Account("alice", "s3cret"))
    session = RawSession(running.port)
    try:
        for side, line in lines:
            if side == "C":
                data = line.encode()
                session.send_raw(encode_frame(data) if line.startswith("FileTransfer|") else data)
                continue
            got = session.recv().encode().decode()
            if "|ls|entry|" in line:  # the time is the file's
                line, got = (re.sub(r"\|[0-9]+$", "|MTIME", t) for t in (line, got))
            assert got == line, f"the server answered {got!r} where the example says {line!r}"
        assert session.is_closed_by_server(), "quit did not close the connection"
    finally:
        session.close()


# -- paths ------------------------------------------------------------------------------


def test_dotdot_at_the_top_stays_there(server: RunningServer, raw: RawFactory) -> None:
    (server.alice_home / "a.txt").write_bytes(b"a")
    session = session_of(raw)
    assert session.call("cd", "..") == Message("cd", ("ok", "/"))
    assert session.call("cd", "../../..") == Message("cd", ("ok", "/"))
    assert session.call("stat", "../a.txt").fields[:2] == ("ok", "file")
    assert listing(session, "..") == listing(session, "/") == [("a.txt", "file", "1")]


def test_the_path_limit_applies_as_sent_and_as_resolved(
    server: RunningServer, raw: RawFactory
) -> None:
    (server.alice_home / "d").mkdir()
    deep = "/".join(["n" * 250] * 15)  # 3764 bytes
    (server.alice_home / deep).mkdir(parents=True)
    session = session_of(raw)
    # 4097 bytes as sent, "/d" once resolved
    _, code, text = error_of(session.call("ls", "./" * 2048 + "d"))
    assert (code, text) == (ErrorCode.PATH_TOO_LONG, "path longer than 4096 bytes")
    assert listing(session, "./" * 2047 + "d") == [], "4095 bytes as sent"
    # 401 bytes as sent, 4166 once joined to the working folder
    assert session.call("cd", deep) == Message("cd", ("ok", "/" + deep))
    _, code, text = error_of(session.call("ls", "x" * 200 + "/" + "y" * 200))
    assert (code, text) == (ErrorCode.PATH_TOO_LONG, "path longer than 4096 bytes")
    # a name over 255 bytes that ".." takes away again is no name of the path
    assert session.call("cd", "z" * 300 + "/..") == Message("cd", ("ok", "/" + deep))


# -- unexpected messages inside the handshakes, abort ---------------------------------------


@pytest.mark.parametrize(
    ("answer", "got"),
    [
        (Message("pwd"), "pwd|"),
        (Message("get", ("abort", "now")), "get|abort"),
        (Message("get", ("error", "404", "gone")), "get|error"),
        (Message("put", ("recv_ready",)), "put|recv_ready"),
    ],
    ids=["another-command", "abort-with-a-field", "an-error", "the-other-command"],
)
def test_an_unexpected_answer_to_ready(
    server: RunningServer, raw: RawFactory, answer: Message, got: str
) -> None:
    (server.alice_home / "g.bin").write_bytes(b"abc")
    session = session_of(raw)
    assert session.call("get", "g.bin") == Message("get", ("ready", "3"))
    session.send(answer)
    expected = f"expected get|recv_ready, got {got}"
    assert session.recv() == Message("get", ("error", "400", expected))
    assert session.call("pwd") == Message("pwd", ("ok", "/")), "no data came, the session goes on"


def test_get_abort_gets_no_reply(server: RunningServer, raw: RawFactory) -> None:
    (server.alice_home / "g.bin").write_bytes(b"abc")
    session = session_of(raw)
    assert session.call("get", "g.bin") == Message("get", ("ready", "3"))
    session.send(abort("get"), Message("pwd"))
    assert session.recv() == Message("pwd", ("ok", "/")), "the abort was answered"


@pytest.mark.parametrize(
    ("final", "reply"),
    [
        (abort("put"), ("461", "upload aborted: /sub/u.txt")),
        (Message("pwd"), ("400", "expected put|digest, got pwd|")),
        (Message("put", ("abort", "x")), ("400", "expected put|digest, got put|abort")),
        (Message("put", ("digest", digest_of(b"ab").upper())), ("400", "not a BLAKE3 digest")),
    ],
    ids=["abort", "another-command", "abort-with-a-field", "upper-case-digest"],
)
def test_the_reply_after_the_data_of_a_put(
    server: RunningServer, raw: RawFactory, final: Message, reply: tuple[str, str]
) -> None:
    (server.alice_home / "sub").mkdir()
    session = session_of(raw)
    assert session.call("put", "sub/u.txt", "2") == Message("put", ("ready", "2"))
    session.send_raw(b"ab")
    session.send(final)
    assert session.recv() == Message("put", ("error", *reply))
    assert os.listdir(server.alice_home / "sub") == [], "something was stored"
    assert session.call("partial", "sub/u.txt") == Message("partial", ("ok", "0")), "kept"


# -- symlinks ------------------------------------------------------------------------------


@pytest.fixture
def links(server: RunningServer, tmp_path: Path) -> Path:
    home = server.alice_home
    (home / "d").mkdir()
    (home / "d" / "f.txt").write_bytes(b"12345")
    (home / "to_dir").symlink_to("d")
    (home / "to_file").symlink_to("d/f.txt")
    (home / "dangling").symlink_to("new.txt")
    (home / "out").symlink_to(tmp_path)
    return home


def test_ls_follows_the_path_given_but_not_the_entries(links: Path, raw: RawFactory) -> None:
    session = session_of(raw)
    assert listing(session, "to_dir") == [("f.txt", "file", "5")]
    assert listing(session, "to_file") == [("to_file", "file", "5")]
    assert ("to_dir", "link", "0") in listing(session, "/")
    assert error_of(session.call("ls", "dangling"))[1] == ErrorCode.NOT_FOUND
    assert error_of(session.call("ls", "out"))[1] == ErrorCode.PERMISSION_DENIED


def test_cd_through_a_link_keeps_the_links_path(links: Path, raw: RawFactory) -> None:
    session = session_of(raw)
    assert session.call("cd", "to_dir") == Message("cd", ("ok", "/to_dir"))
    assert session.call("pwd") == Message("pwd", ("ok", "/to_dir"))
    assert listing(session) == [("f.txt", "file", "5")]
    assert session.call("cd", "..") == Message("cd", ("ok", "/"))
    assert error_of(session.call("cd", "to_file"))[1] == ErrorCode.NOT_DIRECTORY


def test_rm_counts_a_link_as_a_file_of_no_bytes(links: Path, raw: RawFactory) -> None:
    session = session_of(raw)
    assert session.call("rm", "to_file") == Message("rm", ("ok", "1", "0"))
    assert session.call("rm", "to_dir") == Message("rm", ("ok", "1", "0"))
    tree = links / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "real.txt").write_bytes(b"abc")
    (tree / "sub" / "to_file").symlink_to("../real.txt")
    (tree / "sub" / "to_dir").symlink_to("../../d")
    (tree / "dangling").symlink_to("nothing")
    assert session.call("rm", "tree", "recursive") == Message("rm", ("ok", "4", "3"))
    assert (links / "d" / "f.txt").read_bytes() == b"12345", "rm followed a link"


def put(session: RawSession, path: str, data: bytes) -> Message:
    reply = session.call("put", path, str(len(data)))
    if reply.status != "ready":
        return reply
    session.send_raw(data)
    session.send(digest("put", digest_of(data)))
    return session.recv()


def test_put_onto_a_link_writes_its_target(links: Path, raw: RawFactory) -> None:
    session = session_of(raw)
    assert put(session, "to_file", b"new").status == "ok"
    assert (links / "to_file").is_symlink(), "the link was replaced"
    assert (links / "d" / "f.txt").read_bytes() == b"new"
    assert put(session, "dangling", b"hi").status == "ok"
    assert (links / "dangling").is_symlink() and (links / "new.txt").read_bytes() == b"hi"
    assert error_of(put(session, "to_dir", b"x"))[1] == ErrorCode.IS_DIRECTORY
    assert error_of(put(session, "out", b"x"))[1] == ErrorCode.PERMISSION_DENIED


# -- sizes ----------------------------------------------------------------------------------


def test_leading_zeros_in_sizes_are_accepted(server: RunningServer, raw: RawFactory) -> None:
    session = session_of(raw)
    assert session.call("put", "z.txt", "007") == Message("put", ("ready", "7"))
    session.send_raw(b"1234567")
    session.send(digest("put", digest_of(b"1234567")))
    assert session.recv() == Message("put", ("ok", "7", digest_of(b"1234567")))
    reply = session.call("get", "z.txt", "0003", digest_of(b"123"))
    assert reply == Message("get", ("ready", "4", "3"))
    session.send(recv_ready("get"))
    assert session.recv_raw(4) == b"4567"
    assert session.recv() == Message("get", ("digest", digest_of(b"1234567")))
