"""End to end: sessions racing on the same file (issue 3).

Two uploads of the same name at once end as exactly one of the two complete
files, never a mix; a ``get`` while another session uploads that name sees
the old file or nothing; a ``get`` already under way when the file is
replaced finishes with the version it started with.
"""

from __future__ import annotations

import io
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ClientFactory,
    RawSession,
    RunningServer,
    digest_of,
    file_digest_of,
    temp_files,
    wait_until,
)

from ftpclient.client import FileTransferClient
from ftpproto.digest import new_hasher
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.messages import Message

pytestmark = pytest.mark.timeout(60)

KIB = 1024
MIB = 1024 * 1024
CHUNK = 64 * KIB


def session_for(server: RunningServer) -> RawSession:
    session = RawSession(server.port)
    session.login()
    return session


@pytest.mark.parametrize("round_", range(10))
def test_two_raw_uploads_of_one_name_interleaved(server: RunningServer, round_: int) -> None:
    """Both sessions get ready and send their bytes in alternating chunks."""
    rng = random.Random(round_)
    home = server.alice_home
    if round_ % 2:
        (home / "same.bin").write_bytes(b"an older version\n" * 100)
    data = {
        "a": rng.randbytes(rng.randrange(200 * KIB, 600 * KIB)),
        "b": rng.randbytes(rng.randrange(200 * KIB, 600 * KIB)),
    }
    sessions = {"a": session_for(server), "b": session_for(server)}
    for key in "ab":
        reply = sessions[key].call("put", "same.bin", str(len(data[key])))
        assert reply == Message("put", ("ready", str(len(data[key])))), reply
    offsets = {"a": 0, "b": 0}
    while any(offsets[k] < len(data[k]) for k in "ab"):
        key = rng.choice([k for k in "ab" if offsets[k] < len(data[k])])
        step = rng.randrange(1, CHUNK)
        sessions[key].send_raw(data[key][offsets[key] : offsets[key] + step])
        offsets[key] += step
    order = list("ab")
    rng.shuffle(order)
    for key in order:
        sessions[key].request("put", "digest", digest_of(data[key]))
    for key in order:
        reply = sessions[key].recv()
        assert reply == Message("put", ("ok", str(len(data[key])), digest_of(data[key]))), reply
    stored = file_digest_of(home / "same.bin")
    assert stored in (digest_of(data["a"]), digest_of(data["b"])), "the stored file is a mix"
    assert temp_files(home) == []
    for session in sessions.values():
        session.close()


def test_two_client_uploads_of_one_name_in_threads(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    sources = []
    for key, size in (("a", 3 * MIB), ("b", 2 * MIB + 7)):
        path = local / key
        path.write_bytes(os.urandom(size))
        sources.append(path)
    digests = {file_digest_of(p) for p in sources}
    conns = [client(), client()]
    seen: set[str] = set()
    for _ in range(10):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def upload(
            conn: FileTransferClient,
            path: Path,
            b: threading.Barrier = barrier,
            failed: list[BaseException] = errors,
        ) -> None:
            try:
                b.wait(timeout=10)
                conn.put(str(path), "same.bin")
            except BaseException as exc:  # reported below
                failed.append(exc)

        threads = [
            threading.Thread(target=upload, args=(c, p))
            for c, p in zip(conns, sources, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == [], errors
        stored = file_digest_of(server.alice_home / "same.bin")
        assert stored in digests, "the stored file is neither upload"
        seen.add(stored)
    assert temp_files(server.alice_home) == []
    assert client().quota().used == (server.alice_home / "same.bin").stat().st_size


@pytest.mark.parametrize("old", [None, b"old content\n" * 5000], ids=["no-old-file", "old-file"])
def test_get_during_a_put_sees_the_old_file_or_nothing(
    server: RunningServer, client: ClientFactory, local: Path, old: bytes | None
) -> None:
    home = server.alice_home
    if old is not None:
        (home / "f.bin").write_bytes(old)
    new = os.urandom(2 * MIB)
    uploader = session_for(server)
    assert uploader.call("put", "f.bin", str(len(new))) == Message("put", ("ready", str(len(new))))
    uploader.send_raw(new[: MIB + 5])
    assert wait_until(lambda: any(p.stat().st_size > MIB for p in temp_files(home)))
    reader = client()
    target = local / "f.bin"
    for _ in range(3):
        if old is None:
            with pytest.raises(RemoteError) as caught:
                reader.get("f.bin", str(target))
            assert caught.value.code == ErrorCode.NOT_FOUND
            assert not target.exists() and not (local / "f.bin.part").exists()
        else:
            result = reader.get("f.bin", str(target))
            assert result.blake3 == digest_of(old)
            assert file_digest_of(target) == digest_of(old), "a get saw a partial upload"
        assert [e.name for e in reader.ls("/")] == ([] if old is None else ["f.bin"])
        if old is not None:
            assert reader.stat("f.bin").size == len(old)
    uploader.send_raw(new[MIB + 5 :])
    uploader.request("put", "digest", digest_of(new))
    assert uploader.recv().status == "ok"
    reader.get("f.bin", str(target))
    assert file_digest_of(target) == digest_of(new)


def recv_exact(session: RawSession, count: int, sink: io.BytesIO, hasher: object) -> None:
    session.channel.recv_file(sink, count, hasher)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "replace",
    ["put-larger", "put-smaller", "rm-then-put", "mv-over"],
)
def test_started_get_finishes_with_the_version_it_started_with(
    server: RunningServer, client: ClientFactory, local: Path, replace: str
) -> None:
    home = server.alice_home
    old = os.urandom(8 * MIB)
    (home / "f.bin").write_bytes(old)
    getter = session_for(server)
    assert getter.call("get", "f.bin") == Message("get", ("ready", str(len(old))))
    getter.request("get", "recv_ready")
    received = io.BytesIO()
    hasher = new_hasher()
    recv_exact(getter, 256 * KIB, received, hasher)

    other = client()
    new = os.urandom(3 * MIB if replace != "put-larger" else 9 * MIB)
    (local / "new.bin").write_bytes(new)
    replacements: dict[str, Callable[[], object]] = {
        "put-larger": lambda: other.put(str(local / "new.bin"), "f.bin"),
        "put-smaller": lambda: other.put(str(local / "new.bin"), "f.bin"),
        "rm-then-put": lambda: (other.rm("f.bin"), other.put(str(local / "new.bin"), "f.bin")),
        "mv-over": lambda: (
            other.put(str(local / "new.bin"), "staged.bin"),
            other.rm("f.bin"),
            other.mv("staged.bin", "f.bin"),
        ),
    }
    replacements[replace]()
    assert file_digest_of(home / "f.bin") == digest_of(new), "the replacement did not happen"

    recv_exact(getter, len(old) - 256 * KIB, received, hasher)
    final = getter.recv()
    assert final == Message("get", ("digest", digest_of(old))), final
    assert hasher.hexdigest() == digest_of(old), "the bytes sent mix two versions"
    assert received.getvalue() == old
    # The session is still in step: the next get sends the new version.
    assert getter.call("get", "f.bin") == Message("get", ("ready", str(len(new))))
    getter.request("get", "recv_ready")
    again = io.BytesIO()
    recv_exact(getter, len(new), again, new_hasher())
    assert getter.recv() == Message("get", ("digest", digest_of(new)))
    assert again.getvalue() == new


def test_client_get_while_file_replaced_repeatedly(
    server: RunningServer, client: ClientFactory, local: Path
) -> None:
    """Many gets while another session keeps replacing the file: each result is one version."""
    home = server.alice_home
    versions = [os.urandom(random.Random(i).randrange(MIB, 2 * MIB)) for i in range(3)]
    digests = {digest_of(v) for v in versions}
    for i, version in enumerate(versions):
        (local / f"v{i}").write_bytes(version)
    (home / "f.bin").write_bytes(versions[0])
    stop = threading.Event()
    problems: list[BaseException] = []
    writer = client()

    def replace_forever() -> None:
        try:
            n = 0
            while not stop.is_set():
                writer.put(str(local / f"v{n % 3}"), "f.bin")
                n += 1
        except BaseException as exc:
            problems.append(exc)

    thread = threading.Thread(target=replace_forever)
    thread.start()
    try:
        reader = client()
        for i in range(15):
            target = local / f"got{i}"
            result = reader.get("f.bin", str(target))
            assert result.blake3 in digests
            assert file_digest_of(target) in digests, f"get {i} gave a mix of versions"
    finally:
        stop.set()
        thread.join(timeout=30)
    assert problems == [], problems
    assert file_digest_of(home / "f.bin") in digests
    assert temp_files(home) == []
