"""End to end: files go up and come back byte-identical, whatever their size, content or name.

Every check looks at the disk: the file in alice's home on the server and the
downloaded file in the local folder, compared by BLAKE3 digest.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    HOST,
    ClientFactory,
    RawSession,
    RunningServer,
    digest_of,
    file_digest_of,
    temp_files,
)

from ftpclient.client import FileTransferClient, LocalError
from ftpproto.channel import CHUNK_SIZE, Channel
from ftpproto.digest import new_hasher
from ftpproto.errors import ErrorCode, MessageError, ProtocolError, RemoteError
from ftpproto.messages import Message, recv_ready

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


def round_trip(
    conn: FileTransferClient, server: RunningServer, local: Path, name: str, data: bytes
) -> None:
    """Put ``data`` as ``name``, get it back, and check both copies on disk."""
    source = local / "upload.bin"
    source.write_bytes(data)
    sent = conn.put(str(source), name)
    stored = server.alice_home / name
    assert stored.is_file(), f"{name!r} was not stored in the home"
    assert stored.stat().st_size == len(data), f"stored size {stored.stat().st_size} != {len(data)}"
    assert file_digest_of(stored) == digest_of(data), f"stored bytes of {name!r} differ"
    assert sent.size == len(data) and sent.blake3 == digest_of(data), f"put reported {sent}"
    target = local / "download.bin"
    got = conn.get(name, str(target))
    assert target.read_bytes() == data, f"downloaded bytes of {name!r} differ"
    assert got.size == len(data) and got.blake3 == digest_of(data), f"get reported {got}"
    assert not (local / "download.bin.part").exists(), "the .part file was left behind"
    assert temp_files(server.homes) == [], "a temporary upload file was left behind"


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * MIB + 7],
    ids=["empty", "one-byte", "chunk-1", "chunk", "chunk+1", "5MiB+7"],
)
def test_round_trip_sizes(
    server: RunningServer, client: ClientFactory, local: Path, size: int
) -> None:
    assert CHUNK_SIZE == 256 * 1024, "the sizes below are chosen around a 256 KiB chunk"
    round_trip(client(), server, local, "data.bin", os.urandom(size))
    server.assert_serving()


def test_content_that_looks_like_protocol_is_stored_as_is(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    data = (
        b"\x00\x00\x00\x1cFileTransfer|get|x" * 5000
        + b"\x00\x00\x00\x16FileTransfer|put|ready|5"
        + b"FileTransfer|quit\n\xff\xff\xff\xff"
        + b"\x00\x00\x00\x00"
    )
    round_trip(client(), server, local, "frames.bin", data)
    server.assert_serving()


def test_put_replaces_an_older_file(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    (server.alice_home / "report.txt").write_bytes(b"old version, longer than the new one")
    round_trip(client(), server, local, "report.txt", b"new")


def test_several_transfers_on_one_connection(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    conn = client()
    for i, size in enumerate([3, 0, 70000, 1, 300000]):
        round_trip(conn, server, local, f"file{i}.bin", os.urandom(size))
    names = sorted(e.name for e in conn.ls())
    assert names == [f"file{i}.bin" for i in range(5)], f"listing after transfers: {names}"


SPECIAL_NAMES = [
    "with space.txt",
    "résumé 2026|final%.txt",
    "日本語.txt",
    "pipe|and|more.txt",
    "100%25 literal %7C.txt",
    "emoji 🎉.bin",
    "  leading and trailing spaces  ",
    "new\nline\ttab.txt",
    "...",
    "..hidden",
    "%",
    "semi;colon 'quote\" back\\slash",
]


@pytest.mark.parametrize("name", SPECIAL_NAMES)
def test_special_names_put_ls_get(
    server: RunningServer, client: ClientFactory, local: Path, name: str
) -> None:
    conn = client()
    data = name.encode("utf-8") * 100
    round_trip(conn, server, local, name, data)
    assert os.listdir(server.alice_home) == [name], "the name on disk differs"
    entries = conn.ls()
    assert [(e.name, e.type, e.size) for e in entries] == [(name, "file", len(data))], entries
    (single,) = conn.ls(name)
    assert (single.name, single.type, single.size) == (name, "file", len(data)), single


FOLDER_NAMES = ["dir with space", "résumé|2026%", "日本語フォルダ", "a|b%7C"]


@pytest.mark.parametrize("folder", FOLDER_NAMES)
def test_special_names_cd(
    server: RunningServer, client: ClientFactory, local: Path, folder: str
) -> None:
    (server.alice_home / folder / "inner").mkdir(parents=True)
    (server.alice_home / folder / "inner" / "here.txt").write_bytes(b"inside")
    conn = client()
    assert conn.cd(folder) == f"/{folder}", "cd returned another path"
    assert conn.pwd() == f"/{folder}", "pwd after cd"
    assert [e.name for e in conn.ls()] == ["inner"], "ls in the folder"
    assert conn.cd("inner") == f"/{folder}/inner"
    target = local / "here.txt"
    conn.get("here.txt", str(target))
    assert target.read_bytes() == b"inside", "get relative to the new cwd"
    source = local / "up.txt"
    source.write_bytes(b"uploaded into " + folder.encode())
    conn.put(str(source), "up.txt")
    stored = server.alice_home / folder / "inner" / "up.txt"
    assert stored.read_bytes() == source.read_bytes(), "put relative to the new cwd"
    assert conn.cd("..") == f"/{folder}"
    assert conn.cd("/") == "/"
    (entry,) = conn.ls()
    assert (entry.name, entry.type) == (folder, "dir"), entry


def test_ls_shows_name_type_size_and_mtime(server: RunningServer, client: ClientFactory) -> None:
    home = server.alice_home
    (home / "sub").mkdir()
    (home / "f.txt").write_bytes(b"12345")
    os.utime(home / "f.txt", (1_700_000_000, 1_700_000_000))
    entries = {e.name: e for e in client().ls("/")}
    assert set(entries) == {"sub", "f.txt"}, entries
    assert entries["f.txt"].type == "file" and entries["f.txt"].size == 5, entries["f.txt"]
    assert entries["f.txt"].mtime == 1_700_000_000, entries["f.txt"]
    assert entries["sub"].type == "dir", entries["sub"]


def test_ls_of_a_large_folder(server: RunningServer, client: ClientFactory) -> None:
    folder = server.alice_home / "many"
    folder.mkdir()
    names = {f"n{i:04d}.txt" for i in range(700)}
    for name in names:
        (folder / name).write_bytes(b"x")
    entries = client().ls("many")
    assert {e.name for e in entries} == names, "the listing lost or invented entries"
    assert all(e.size == 1 and e.type == "file" for e in entries)


def test_twenty_clients_at_once(server: RunningServer, local: Path) -> None:
    count = 20
    payloads = [os.urandom(MIB) for _ in range(count)]
    barrier = threading.Barrier(count, timeout=20)
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            source = local / f"src{i}.bin"
            source.write_bytes(payloads[i])
            with FileTransferClient(HOST, server.port, timeout=20) as conn:
                conn.login(ALICE, ALICE_PASSWORD)
                barrier.wait()
                conn.put(str(source), f"client{i}.bin")
                conn.get(f"client{i}.bin", str(local / f"back{i}.bin"))
                conn.quit()
        except Exception as exc:  # reported below, with the client number
            errors.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=50)
    assert not any(t.is_alive() for t in threads), "some clients hung"
    assert errors == [], errors
    for i, data in enumerate(payloads):
        stored = server.alice_home / f"client{i}.bin"
        assert file_digest_of(stored) == digest_of(data), f"client {i}: stored bytes differ"
        back = local / f"back{i}.bin"
        assert file_digest_of(back) == digest_of(data), f"client {i}: downloaded bytes differ"
    assert temp_files(server.homes) == [], "temporary upload files were left behind"
    server.assert_serving()


def test_users_are_kept_apart(server: RunningServer, client: ClientFactory, local: Path) -> None:
    source = local / "same.txt"
    source.write_bytes(b"alice's")
    client().put(str(source))
    source.write_bytes(b"bob's")
    bob = client(BOB, BOB_PASSWORD)
    bob.put(str(source))
    assert (server.alice_home / "same.txt").read_bytes() == b"alice's"
    assert (server.bob_home / "same.txt").read_bytes() == b"bob's"
    assert bob.pwd() == "/"


def test_concurrent_puts_of_one_name_leave_one_whole_file(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    count = 8
    payloads = [bytes([i]) * (200_000 + i) for i in range(count)]
    conns = [client() for _ in range(count)]
    barrier = threading.Barrier(count, timeout=20)
    errors: list[str] = []

    def work(i: int) -> None:
        try:
            source = local / f"v{i}.bin"
            source.write_bytes(payloads[i])
            barrier.wait()
            conns[i].put(str(source), "shared.bin")
        except Exception as exc:
            errors.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [], errors
    final = (server.alice_home / "shared.bin").read_bytes()
    assert final in payloads, "the stored file is a mix of several uploads"
    assert temp_files(server.homes) == [], "temporary upload files were left behind"


def test_get_into_a_local_folder_keeps_the_remote_name(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    (server.alice_home / "sub").mkdir()
    (server.alice_home / "sub" / "name kept.txt").write_bytes(b"kept")
    result = client().get("sub/name kept.txt", str(local))
    assert (local / "name kept.txt").read_bytes() == b"kept", result
    assert result.local == str(local / "name kept.txt"), result


def test_get_into_a_missing_local_folder_aborts_cleanly(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    (server.alice_home / "f.txt").write_bytes(b"data")
    conn = client()
    with pytest.raises(LocalError):
        conn.get("f.txt", str(local / "no-such-folder" / "f.txt"))
    assert not (local / "no-such-folder").exists()
    assert conn.pwd() == "/", "the session did not survive the aborted get"
    target = local / "f.txt"
    conn.get("f.txt", str(target))
    assert target.read_bytes() == b"data", "the stream is out of step after the abort"


def test_put_of_a_missing_local_file_sends_nothing(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    conn = client()
    with pytest.raises(LocalError):
        conn.put(str(local / "not-here.txt"))
    with pytest.raises(LocalError):
        conn.put(str(local))  # a folder is not a regular file
    assert os.listdir(server.alice_home) == []
    assert conn.pwd() == "/"


def test_get_announces_the_size_of_the_open_file(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    """A file replaced between ready and recv_ready: the opened version is sent whole."""
    original = os.urandom(500_000)
    path = server.alice_home / "moving.bin"
    path.write_bytes(original)
    session = raw()
    session.login()
    assert session.call("get", "moving.bin") == Message("get", ("ready", str(len(original))))
    replacement = server.alice_home / "replacement.tmp"
    replacement.write_bytes(b"short")
    os.replace(replacement, path)
    session.send(recv_ready("get"))
    received = io.BytesIO()
    session.channel.recv_file(received, len(original), new_hasher())
    assert received.getvalue() == original, "the bytes sent are not the opened file"
    assert session.recv() == Message("get", ("digest", digest_of(original)))
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


def test_get_of_a_file_that_shrinks_is_reported(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    """A file truncated after ready: the stream stays in step and the get fails with 462."""
    path = server.alice_home / "shrinking.bin"
    path.write_bytes(os.urandom(400_000))
    session = raw()
    session.login()
    assert session.call("get", "shrinking.bin") == Message("get", ("ready", "400000"))
    with path.open("r+b") as handle:
        handle.truncate(1000)
    session.send(recv_ready("get"))
    session.channel.recv_file(io.BytesIO(), 400_000, new_hasher())
    reply = session.recv()
    assert reply.status == "error" and reply.fields[1] == str(int(ErrorCode.FILE_CHANGED)), reply
    assert session.call("pwd") == Message("pwd", ("ok", "/")), "the stream is out of step"


def test_put_larger_than_the_disk_is_refused_before_data(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    session = raw()
    session.login()
    reply = session.call("put", "huge.bin", "9" * 20)
    assert reply.status == "error" and reply.fields[1] == str(int(ErrorCode.NO_SPACE)), reply
    assert os.listdir(server.alice_home) == [], "something was created for a refused put"
    assert session.call("pwd") == Message("pwd", ("ok", "/"))


def test_a_fifo_is_not_sent(server: RunningServer, client: ClientFactory, local: Path) -> None:
    os.mkfifo(server.alice_home / "pipe")
    conn = client()
    with pytest.raises(RemoteError) as caught:
        conn.get("pipe", str(local / "pipe"))
    assert caught.value.code == ErrorCode.BAD_PATH, caught.value
    (entry,) = conn.ls()
    assert (entry.name, entry.type) == ("pipe", "other"), entry
    server.assert_serving()


def test_an_undecodable_name_on_disk_is_listed(
    server: RunningServer, client: ClientFactory
) -> None:
    with open(os.path.join(os.fsencode(server.alice_home), b"bad-\xff-name"), "wb") as handle:
        handle.write(b"x")
    (entry,) = client().ls()
    assert entry.name == "bad-\ufffd-name", entry
    server.assert_serving()


# -- a server whose ready does not fit: the client keeps the stream in step or closes ------


def scripted_server(reply: Message) -> tuple[int, list[Message], threading.Thread]:
    """A one-connection server on 127.0.0.1 that answers the first request with ``reply``.

    Returns its port, the list the messages it receives go into, and its thread
    (which ends when the client closes the connection).
    """
    listener = socket.create_server((HOST, 0))
    received: list[Message] = []

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            channel = Channel(conn)
            try:
                received.append(channel.recv())
                channel.send(reply)
                while True:
                    received.append(channel.recv())
            except (OSError, ProtocolError):
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], received, thread


@pytest.mark.parametrize("reply", ["ready|ten", "ready|10|0", "ready"])
def test_a_get_ready_that_does_not_fit_is_called_off(local: Path, reply: str) -> None:
    port, received, thread = scripted_server(Message("get", tuple(reply.split("|"))))
    with FileTransferClient(HOST, port, timeout=10) as conn, pytest.raises(MessageError):
        conn.get("f.bin", str(local / "f.bin"))
    thread.join(10)
    assert received == [Message("get", ("f.bin",)), Message("get", ("abort",))], received
    assert os.listdir(local) == [], "a .part file was made"


@pytest.mark.parametrize("reply", ["ready|4", "ready|5|0", "ready|x"])
def test_a_put_ready_that_does_not_fit_closes_the_connection(local: Path, reply: str) -> None:
    (local / "up.bin").write_bytes(b"12345")
    port, received, thread = scripted_server(Message("put", tuple(reply.split("|"))))
    with FileTransferClient(HOST, port, timeout=10) as conn:
        with pytest.raises(ConnectionAbortedError, match="bad reply from the server"):
            conn.put(str(local / "up.bin"), "up.bin")
        assert conn.channel.sock.fileno() == -1, "the client did not close the connection"
    thread.join(10)
    assert received == [Message("put", ("up.bin", "5"))], "the client sent data it could not place"
