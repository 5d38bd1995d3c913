"""Unit tests of S3Storage against a real SeaweedFS (no mock): paths, folders, files, quotas.

Each test gets a fresh key prefix in the test bucket (``s3_settings``) and an
in-process :class:`QuotaBook`; what the storage did is checked in the bucket
with a plain boto3 client.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from s3service import BUCKET, SeaweedS3, require

from ftpproto.digest import new_hasher
from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.config import Settings
from ftpserver.state.ledger import QuotaBook
from ftpserver.storage import b3state, s3moves, s3partial, s3upload
from ftpserver.storage.s3 import S3Storage
from ftpserver.storage.s3client import check_bucket, make_client
from ftpserver.users import User

pytestmark = pytest.mark.timeout(120)
MIB = 1024 * 1024


def digest_of(data: bytes) -> str:
    hasher = new_hasher()
    hasher.update(data)
    return hasher.hexdigest()


@pytest.fixture
def settings(s3_settings: dict[str, object]) -> Settings:
    return Settings().replace(**s3_settings)


def make_storage(
    settings: Settings,
    quota: int | None = None,
    name: str = "alice",
    stage: bool = False,
    ledger: QuotaBook | None = None,
) -> S3Storage:
    user = User(name, b"", Path("/nonexistent"), quota)
    return S3Storage(
        user,
        ledger or QuotaBook(),
        make_client(settings),
        settings.s3_bucket,
        settings.s3_prefix,
        settings.s3_part_size,
        stage,
    )


@pytest.fixture
def storage(settings: Settings) -> S3Storage:
    return make_storage(settings)


def keys(seaweed: SeaweedS3, prefix: str) -> list[str]:
    answer = seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"][len(prefix) :] for item in answer.get("Contents", []))


def upload(storage: S3Storage, virtual: str, data: bytes, piece: int = 64 * 1024) -> str:
    """Send ``data`` through an upload handle as a session would; the digest."""
    with storage.open_upload(virtual) as handle:
        offset, hasher = handle.start(len(data), None)
        assert offset == 0
        for start in range(0, len(data), piece):
            chunk = data[start : start + piece]
            hasher.update(chunk)
            handle.sink.write(chunk)
        handle.keep_partial = False
        hexdigest = hasher.hexdigest()
        handle.commit(hexdigest)
    return hexdigest


def read_all(storage: S3Storage, virtual: str, offset: int = 0) -> bytes:
    with storage.open_read(virtual) as source:
        source.seek(offset)
        view = memoryview(bytearray(MIB))
        out = bytearray()
        while n := source.readinto(view):
            out += view[:n]
        return bytes(out)


def test_jail_is_the_key_prefix_and_hostile_paths_are_refused(
    storage: S3Storage, settings: Settings
) -> None:
    assert storage.virtual("../../etc/passwd") == "/etc/passwd"
    assert storage.key("/etc/passwd") == f"{settings.s3_prefix}/alice/etc/passwd"
    for bad, code in (
        ("a\0b", ErrorCode.BAD_PATH),
        ("x" * 300, ErrorCode.PATH_TOO_LONG),
        ("/".join(["d"] * 2100), ErrorCode.PATH_TOO_LONG),
        ("/".join(["d" * 200] * 5), ErrorCode.PATH_TOO_LONG),  # over S3's 1024-byte keys
        ("bad\udcff", ErrorCode.BAD_PATH),
        (".ftp-partial/x", ErrorCode.BAD_PATH),
    ):
        with pytest.raises(ProtocolError) as caught:
            storage.virtual(bad)
        assert caught.value.code == code


def test_folders_files_and_listing(storage: S3Storage, seaweed: SeaweedS3) -> None:
    storage.mkdir("/docs")
    storage.mkdir("/docs/a/b", parents=True)
    with pytest.raises(FileExistsError):
        storage.mkdir("/docs")
    with pytest.raises(FileNotFoundError):
        storage.mkdir("/nope/x")
    upload(storage, "/docs/note.txt", b"hello")
    assert storage.stat("/docs/note.txt")[:3] == ("note.txt", "file", 5)
    assert storage.stat("/docs").kind == "dir"
    names = sorted((e.name, e.kind, e.size) for e in storage.listdir("/docs"))
    assert names == [("a", "dir", 0), ("note.txt", "file", 5)]
    assert storage.chdir("docs") == "/docs"
    assert storage.virtual("note.txt") == "/docs/note.txt"
    with pytest.raises(ProtocolError) as caught:
        storage.chdir("/docs/note.txt")
    assert caught.value.code == ErrorCode.NOT_DIRECTORY
    with pytest.raises(OSError):
        storage.rmdir("/docs")  # not empty
    storage.rmdir("/docs/a/b")
    assert [e.name for e in storage.listdir("/docs/a")] == []  # the emptied folder stays
    assert storage.remove("/docs/note.txt") == 5
    assert storage.stat("/docs").kind == "dir"  # so does the folder of a removed file
    with pytest.raises(FileNotFoundError):
        storage.stat("/docs/note.txt")


def test_small_upload_carries_its_digest_as_metadata(
    storage: S3Storage, seaweed: SeaweedS3
) -> None:
    hexdigest = upload(storage, "/small.bin", b"x" * 1000)
    head = seaweed.client().head_object(Bucket=BUCKET, Key=storage.key("/small.bin"))
    assert head["Metadata"]["blake3"] == hexdigest
    with storage.open_read("/small.bin") as source:
        assert source.stored_digest() == hexdigest
        assert source.fileno() is None


def test_multipart_upload_ranged_read_and_tagged_digest(storage: S3Storage) -> None:
    data = os.urandom(11 * MIB + 123)
    hexdigest = upload(storage, "/big.bin", data, piece=MIB)
    assert storage.stat("/big.bin").size == len(data)
    assert read_all(storage, "/big.bin") == data
    assert read_all(storage, "/big.bin", offset=7 * MIB + 5) == data[7 * MIB + 5 :]
    with storage.open_read("/big.bin") as source:
        assert source.stored_digest() == hexdigest
        assert not source.changed()


def interrupt_after_7_mib(storage: S3Storage, data: bytes) -> None:
    """Upload /f.bin's first 7 MiB and stop (one 5 MiB part kept); forget this process's state."""
    with storage.open_upload("/f.bin") as handle:
        _, hasher = handle.start(len(data), None)
        for start in range(0, 7 * MIB, MIB):
            hasher.update(data[start : start + MIB])
            handle.sink.write(data[start : start + MIB])
    s3partial.checkpoints.clear()  # what another process knows of it: nothing


def resume_at_5_mib(storage: S3Storage, data: bytes, rest: bytes) -> tuple[int, str]:
    """Offer /f.bin's first 5 MiB as kept and send ``rest``; commit if the whole digest matches.

    The offset the storage accepted and the digest of what it then received.
    """
    with storage.open_upload("/f.bin") as handle:
        offset, hasher = handle.start(len(data), (5 * MIB, digest_of(data[: 5 * MIB])))
        hasher.update(rest)
        handle.sink.write(rest)
        handle.keep_partial = False
        found = hasher.hexdigest()
        if found == digest_of(data):  # what the handshake checks
            handle.commit(found)
    return offset, found


def test_an_interrupted_upload_leaves_the_old_object_and_keeps_parts(
    storage: S3Storage, seaweed: SeaweedS3
) -> None:
    upload(storage, "/f.bin", b"old version")
    data = os.urandom(12 * MIB)
    with storage.open_upload("/f.bin") as handle:
        _, hasher = handle.start(len(data), None)
        for start in range(0, 7 * MIB, MIB):  # one 5 MiB part finished, two MiB in the buffer
            chunk = data[start : start + MIB]
            hasher.update(chunk)
            handle.sink.write(chunk)
    assert read_all(storage, "/f.bin") == b"old version"
    assert storage.partial_size("/f.bin") == 5 * MIB  # the finished part
    assert [e.name for e in storage.listdir("/")] == ["f.bin"]  # the record is hidden
    assert storage.usage().used == len(b"old version") + 5 * MIB
    with storage.open_upload("/f.bin") as handle:
        offset, hasher = handle.start(len(data), (5 * MIB, digest_of(data[: 5 * MIB])))
        assert offset == 5 * MIB
        rest = data[offset:]
        hasher.update(rest)
        handle.sink.write(rest)
        handle.keep_partial = False
        assert hasher.hexdigest() == digest_of(data)
        handle.commit(hasher.hexdigest())
    assert read_all(storage, "/f.bin") == data
    assert storage.partial_size("/f.bin") == 0
    assert storage.usage().used == len(data)
    assert storage.measure() == len(data)
    assert (
        seaweed.client()
        .list_multipart_uploads(Bucket=BUCKET, Prefix=storage.home.base)
        .get("Uploads", [])
        == []
    )


def test_a_resume_with_a_wrong_prefix_starts_over(storage: S3Storage) -> None:
    data = os.urandom(11 * MIB)  # over two parts: a multipart upload (up to two: one PutObject)
    with storage.open_upload("/g.bin") as handle:
        _, hasher = handle.start(len(data), None)
        hasher.update(data[: 6 * MIB - 1])
        handle.sink.write(data[: 6 * MIB - 1])
    assert storage.partial_size("/g.bin") == 6 * MIB - 1
    with storage.open_upload("/g.bin") as handle:
        offset, _ = handle.start(len(data), (6 * MIB - 1, "0" * 64))
        assert offset == 0
        handle.abort()
    stale = storage.remove_stale_partials(0.0)
    assert stale == 1
    assert storage.partial_size("/g.bin") == 0
    assert storage.measure() == 0


def test_a_staged_upload_resumes_in_another_process_verified_by_reading_back(
    settings: Settings, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stage`` (a cluster) without libblake3: a second storage with no state of the first resumes.

    The prefix digest must match the record; the digest of the whole file is
    that of the staged object read back, and only a match is copied into place.
    """
    monkeypatch.setattr(s3upload, "saveable_hasher", lambda: None)  # no libblake3
    first = make_storage(settings, stage=True)
    upload(first, "/f.bin", b"old version")
    data = os.urandom(12 * MIB)

    def interrupt() -> None:
        interrupt_after_7_mib(first, data)

    def resume(rest: bytes) -> tuple[int, str]:
        return resume_at_5_mib(make_storage(settings, stage=True), data, rest)

    base = first.home.base
    interrupt()
    assert first.partial_size("/f.bin") == 5 * MIB
    assert any(k.endswith(".upload") for k in uploads_open(seaweed, base)), "not staged"
    offset, found = resume(os.urandom(7 * MIB))  # the wrong rest: refused after reading back
    assert (offset, found != digest_of(data)) == (5 * MIB, True)
    assert read_all(first, "/f.bin") == b"old version"
    interrupt()
    assert resume(data[5 * MIB :]) == (5 * MIB, digest_of(data))
    assert read_all(first, "/f.bin") == data
    assert first.open_read("/f.bin").stored_digest() == digest_of(data)
    assert keys(seaweed, base) == ["f.bin"], "a staged object or record was left"
    assert uploads_open(seaweed, base) == []
    assert first.measure() == len(data)
    crashed = f"{base}.ftp-partial/{'0' * 64}.{'1' * 32}.upload"  # completed, never copied
    seaweed.client().put_object(Bucket=BUCKET, Key=crashed, Body=b"staged")
    assert first.measure() == len(data)  # a staged object is not counted
    assert first.remove_stale_partials(0.0) == 1
    assert keys(seaweed, base) == ["f.bin"]


@pytest.mark.parametrize("stage", [False, True])
def test_a_saved_state_resumes_in_another_process_without_staging(
    settings: Settings, seaweed: SeaweedS3, stage: bool
) -> None:
    """With libblake3 the record holds the BLAKE3 state: any process goes on from it.

    Nothing is staged (no copy), even in a cluster; a wrong rest is refused
    with the old object intact; a state this library cannot take starts over.
    """
    require(b3state.library(), "libblake3 is not there (python3 ftpserver/storage/b3build.py)")
    book = QuotaBook()  # the figures the worker processes of one server share
    first = make_storage(settings, stage=stage, ledger=book)
    upload(first, "/f.bin", b"old version")
    data = os.urandom(12 * MIB)
    base = first.home.base

    def interrupt() -> None:
        interrupt_after_7_mib(first, data)
        assert uploads_open(seaweed, base) == [f"{base}f.bin"], "staged, or not kept"

    def resume(rest: bytes) -> tuple[int, str]:
        return resume_at_5_mib(make_storage(settings, stage=stage, ledger=book), data, rest)

    interrupt()
    assert first.partial_size("/f.bin") == 5 * MIB
    assert first.usage().used == len(b"old version") + 5 * MIB
    offset, found = resume(os.urandom(7 * MIB))  # the wrong rest: refused
    assert (offset, found != digest_of(data)) == (5 * MIB, True)
    assert read_all(first, "/f.bin") == b"old version"
    assert first.measure() == first.usage().used == len(b"old version")
    interrupt()
    # A resume interrupted in its turn keeps its parts and state for the next process.
    with make_storage(settings, stage=stage, ledger=book).open_upload("/f.bin") as handle:
        offset, hasher = handle.start(len(data), (5 * MIB, digest_of(data[: 5 * MIB])))
        assert offset == 5 * MIB
        for start in range(5 * MIB, 11 * MIB, MIB):  # one more 5 MiB part finished
            hasher.update(data[start : start + MIB])
            handle.sink.write(data[start : start + MIB])
    s3partial.checkpoints.clear()
    assert first.partial_size("/f.bin") == 10 * MIB
    assert read_all(first, "/f.bin") == b"old version"
    assert first.measure() == first.usage().used == len(b"old version") + 10 * MIB
    with make_storage(settings, stage=stage, ledger=book).open_upload("/f.bin") as handle:
        offset, hasher = handle.start(len(data), (10 * MIB, digest_of(data[: 10 * MIB])))
        assert offset == 10 * MIB
        hasher.update(data[offset:])
        handle.sink.write(data[offset:])
        handle.keep_partial = False
        assert hasher.hexdigest() == digest_of(data)
        handle.commit(hasher.hexdigest())
    assert read_all(first, "/f.bin") == data
    assert first.open_read("/f.bin").stored_digest() == digest_of(data)
    assert keys(seaweed, base) == ["f.bin"], "a record was left"
    assert uploads_open(seaweed, base) == []
    assert first.measure() == first.usage().used == len(data)
    # A state saved by another build of the library is not taken: the upload starts over.
    interrupt()
    record_key = first._record_key("/f.bin")
    record = s3partial.read_record(first.home, record_key)
    assert record is not None and len(record.state) == b3state.STATE_SIZE
    foreign = s3partial.record_body(record._replace(tag="c0.0.0/1912"))
    seaweed.client().put_object(Bucket=BUCKET, Key=record_key, Body=foreign)
    with make_storage(settings, stage=stage).open_upload("/f.bin") as handle:
        assert handle.start(len(data), (5 * MIB, digest_of(data[: 5 * MIB])))[0] == 0
        handle.abort()


def uploads_open(seaweed: SeaweedS3, prefix: str) -> list[str]:
    answer = seaweed.client().list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in answer.get("Uploads", [])]


def test_rename_copies_then_deletes_and_never_replaces(
    storage: S3Storage, seaweed: SeaweedS3
) -> None:
    storage.mkdir("/src/inner", parents=True)
    upload(storage, "/src/a.txt", b"aaa")
    upload(storage, "/src/inner/b.txt", b"bb")
    upload(storage, "/other.txt", b"o")
    assert storage.rename("/src", "/dst") == "/dst"
    prefix = storage.home.base
    moved = ["dst/", "dst/a.txt", "dst/inner/", "dst/inner/b.txt", "other.txt"]
    assert keys(seaweed, prefix) == moved
    with pytest.raises(ProtocolError) as caught:
        storage.rename("/other.txt", "/dst/a.txt")
    assert caught.value.code == ErrorCode.EXISTS
    assert storage.rename("/other.txt", "/dst") == "/dst/other.txt"  # into the folder
    with pytest.raises(OSError):
        storage.rename("/dst", "/dst/inner/deeper")
    with pytest.raises(ProtocolError) as caught:
        storage.rename("/dst/a.txt", "/dst/a.txt")
    assert caught.value.code == ErrorCode.EXISTS
    with storage.open_read("/dst/a.txt") as source:
        assert source.stored_digest() == digest_of(b"aaa")  # the digest moved with it
    assert storage.remove_tree("/dst") == (3, 6, 2)  # files, bytes, folders (dst, inner)
    assert keys(seaweed, prefix) == []
    assert storage.usage().used == 0


def test_rename_with_replace_copies_over_the_target(settings: Settings, seaweed: SeaweedS3) -> None:
    storage = make_storage(settings, quota=100)
    upload(storage, "/new.txt", b"fresh!")
    upload(storage, "/old.txt", b"stale bytes")
    assert storage.rename("/new.txt", "/old.txt", replace=True) == "/old.txt"
    assert read_all(storage, "/old.txt") == b"fresh!"
    assert keys(seaweed, storage.home.base) == ["old.txt"]
    assert storage.usage().used == 6  # the replaced bytes no longer count
    with storage.open_read("/old.txt") as source:
        assert source.stored_digest() == digest_of(b"fresh!")
    assert storage.rename("/old.txt", "/old.txt", replace=True) == "/old.txt"  # onto itself
    storage.mkdir("/full/old.txt", parents=True)
    storage.mkdir("/empty")
    storage.mkdir("/src")
    upload(storage, "/src/f.txt", b"f")
    with pytest.raises(IsADirectoryError):
        storage.rename("/old.txt", "/full", replace=True)  # into /full, over a folder
    with pytest.raises(NotADirectoryError):
        storage.rename("/src", "/old.txt", replace=True)  # a folder over a file
    storage.mkdir("/dst/src", parents=True)
    upload(storage, "/dst/src/x.txt", b"x")
    with pytest.raises(OSError) as caught:
        storage.rename("/src", "/dst", replace=True)  # into /dst, over the non-empty /dst/src
    assert caught.value.errno == errno.ENOTEMPTY
    storage.mkdir("/empty/src", parents=True)  # an empty folder is replaced by a folder
    assert storage.rename("/src", "/empty", replace=True) == "/empty/src"
    assert read_all(storage, "/empty/src/f.txt") == b"f"
    with pytest.raises(ProtocolError) as caught:
        storage.rename("/empty/src", "/dst")  # without replace: never
    assert caught.value.code == ErrorCode.EXISTS
    assert keys(seaweed, storage.home.base + "empty/") == ["", "src/", "src/f.txt"]
    assert storage.usage().used == 6 + 1 + 1


def test_set_mtime_is_kept_as_metadata_with_the_digest(
    settings: Settings, seaweed: SeaweedS3
) -> None:
    storage = make_storage(settings.replace(s3_part_size=5 * MIB))
    small = b"small file"
    big = os.urandom(6 * MIB)  # two parts: its digest is a tag bound to the ETag
    upload(storage, "/small.txt", small)
    storage.mkdir("/sub")
    upload(storage, "/sub/big.bin", big)
    with storage.open_read("/sub/big.bin") as source:
        assert source.stored_digest() == digest_of(big)
    storage.set_mtime("/small.txt", 1_000_000_000)
    storage.set_mtime("/sub/big.bin", 1_234_567_890)
    assert storage.stat("/small.txt").mtime == 1_000_000_000
    listed = {entry.name: entry for entry in storage.listdir("/sub")}
    assert listed["big.bin"].mtime == 1_234_567_890
    assert listed["big.bin"].size == len(big)
    assert read_all(storage, "/small.txt") == small
    assert read_all(storage, "/sub/big.bin") == big
    for name, data in (("/small.txt", small), ("/sub/big.bin", big)):
        with storage.open_read(name) as source:
            assert source.stored_digest() == digest_of(data)  # no rehash after a touch
    assert storage.rename("/small.txt", "/moved.txt") == "/moved.txt"
    assert storage.stat("/moved.txt").mtime == 1_000_000_000  # mv keeps the time, as rename(2)
    upload(storage, "/moved.txt", b"rewritten")
    assert abs(storage.stat("/moved.txt").mtime - time.time()) < 600  # a new write, a new time
    with pytest.raises(ProtocolError) as caught:
        storage.set_mtime("/sub", 5)
    assert caught.value.code == ErrorCode.IS_DIRECTORY
    with pytest.raises(FileNotFoundError):
        storage.set_mtime("/nothing", 5)
    assert storage.usage().used == len(b"rewritten") + len(big)


def test_quota_counts_object_sizes_and_refuses_over_it(settings: Settings) -> None:
    storage = make_storage(settings, quota=100)
    upload(storage, "/a", b"x" * 60)
    with pytest.raises(ProtocolError) as caught:
        upload(storage, "/b", b"y" * 50)
    assert caught.value.code == ErrorCode.QUOTA_EXCEEDED
    fresh = make_storage(settings, quota=100)
    assert fresh.usage().used == 60  # measured: the sum of object sizes


def test_check_bucket_reports_each_problem_in_one_line(
    settings: Settings, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check_bucket(settings) is None
    assert check_bucket(settings.replace(s3_bucket="no-such-bucket-here")) == (
        "s3: no such bucket: no-such-bucket-here"
    )
    closed = f"http://127.0.0.1:{_closed_port()}"
    assert check_bucket(settings.replace(s3_endpoint=closed)) == (
        f"s3: endpoint unreachable: {closed}"
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    line = check_bucket(settings)
    assert line is not None and line.startswith("s3: credentials refused for bucket ftp-tests")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_objects_written_by_another_tool_are_served(storage: S3Storage, seaweed: SeaweedS3) -> None:
    client: Any = seaweed.client()
    client.put_object(Bucket=BUCKET, Key=storage.key("/foreign/x.txt"), Body=b"from elsewhere")
    assert storage.stat("/foreign").kind == "dir"
    with storage.open_read("/foreign/x.txt") as source:
        assert source.stored_digest() is None
        source.store_digest(digest_of(b"from elsewhere"))
    with storage.open_read("/foreign/x.txt") as source:
        assert source.stored_digest() == digest_of(b"from elsewhere")


def test_an_unreachable_store_is_a_clear_error(settings: Settings) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    storage = make_storage(settings.replace(s3_endpoint=closed))
    with pytest.raises(ProtocolError) as caught:
        storage.stat("/x")
    assert caught.value.code == ErrorCode.IO_ERROR
    assert str(caught.value) == "object store unreachable: /x"


def test_upload_memory_is_bounded_by_a_few_parts(storage: S3Storage) -> None:
    import tracemalloc

    size, piece = 40 * MIB, 256 * 1024
    chunk = os.urandom(piece)
    tracemalloc.start()
    try:
        with storage.open_upload("/huge.bin") as handle:
            _, hasher = handle.start(size, None)
            for _ in range(size // piece):
                hasher.update(chunk)
                handle.sink.write(chunk)
            handle.keep_partial = False
            handle.commit(hasher.hexdigest())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert storage.stat("/huge.bin").size == size
    # the part filling up, and at most four in flight
    assert peak < 6 * storage.part_size, f"peak {peak / MIB:.1f} MiB for 5 MiB parts"


def test_a_download_reads_only_the_version_it_opened(storage: S3Storage) -> None:
    upload(storage, "/v.txt", b"first version")
    with storage.open_read("/v.txt") as source:
        upload(storage, "/v.txt", b"second, longer version")
        assert source.readinto(memoryview(bytearray(100))) == 0  # the opened version is gone
        assert source.changed()
    assert read_all(storage, "/v.txt") == b"second, longer version"


def test_the_sweeper_aborts_multipart_uploads_abandoned_by_a_crash(
    storage: S3Storage, seaweed: SeaweedS3
) -> None:
    client: Any = seaweed.client()
    key = storage.key("/crashed.bin")
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 10)

    def open_uploads() -> list[str]:
        answer = client.list_multipart_uploads(Bucket=BUCKET, Prefix=storage.home.base)
        return [u["UploadId"] for u in answer.get("Uploads", [])]

    assert storage.remove_stale_partials(3600.0) == 0
    assert open_uploads() == [upload_id], "a young upload (maybe still running) is left alone"
    storage.remove_stale_partials(0.0)
    assert open_uploads() == []


def test_credentials_never_reach_the_log_even_at_debug(
    storage: S3Storage, caplog: pytest.LogCaptureFixture
) -> None:
    from s3service import ACCESS_KEY, SECRET_KEY

    with caplog.at_level(logging.DEBUG):
        upload(storage, "/logged.txt", b"x")
        storage.stat("/logged.txt")
    assert all(
        ACCESS_KEY not in r.getMessage() and SECRET_KEY not in r.getMessage()
        for r in caplog.records
    )
    assert not [r for r in caplog.records if r.name.startswith(("botocore", "urllib3"))]


def test_a_resume_refused_by_the_quota_keeps_the_partial(settings: Settings) -> None:
    storage = make_storage(settings, quota=12 * MIB)
    data = os.urandom(11 * MIB)  # over two parts: a multipart upload
    with storage.open_upload("/q.bin") as handle:
        _, hasher = handle.start(len(data), None)
        hasher.update(data[: 6 * MIB])
        handle.sink.write(data[: 6 * MIB])
    kept = storage.partial_size("/q.bin")
    assert kept == 6 * MIB
    with storage.open_upload("/q.bin") as handle:
        with pytest.raises(ProtocolError) as caught:
            handle.start(13 * MIB, (kept, digest_of(data[:kept])))  # more than the quota
        assert caught.value.code == ErrorCode.QUOTA_EXCEEDED
    assert storage.partial_size("/q.bin") == kept
    with storage.open_upload("/q.bin") as handle:
        offset, hasher = handle.start(len(data), (kept, digest_of(data[:kept])))
        assert offset == kept
        hasher.update(data[kept:])
        handle.sink.write(data[kept:])
        handle.keep_partial = False
        handle.commit(hasher.hexdigest())
    assert read_all(storage, "/q.bin") == data
    assert storage.usage().used == len(data)


class SlowDownProxy:
    """A TCP proxy to the store that answers its first ``refuse`` connections 503 SlowDown."""

    BODY = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>"
    )

    def __init__(self, endpoint: str, refuse: int) -> None:
        import socket
        import threading

        host, port = endpoint.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.refuse = refuse
        self.refused = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.refused < self.refuse:
                self.refused += 1
                threading.Thread(target=self._slow_down, args=(conn,), daemon=True).start()
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _slow_down(self, conn: Any) -> None:
        with conn:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(65536)
                if not data:
                    return
                request += data
            head = (
                b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(self.BODY)
            )
            conn.sendall(head + self.BODY)

    @staticmethod
    def _pipe(source: Any, target: Any) -> None:
        import contextlib

        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(1)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize(("refuse", "succeeds"), [(2, True), (50, False)], ids=["few", "many"])
def test_throttling_is_retried_with_backoff_then_a_clear_error(
    storage: S3Storage, settings: Settings, refuse: int, succeeds: bool
) -> None:
    upload(storage, "/t.txt", b"throttled")
    proxy = SlowDownProxy(settings.s3_endpoint, refuse)
    try:
        throttled_settings = settings.replace(s3_endpoint=proxy.endpoint)
        user = User("alice", b"", Path("/nonexistent"))
        client = make_client(throttled_settings, attempts=3)  # fewer backoff sleeps in a test
        throttled = S3Storage(user, QuotaBook(), client, BUCKET, settings.s3_prefix)
        if succeeds:
            assert throttled.stat("/t.txt").size == 9
            assert proxy.refused == refuse
        else:
            with pytest.raises(ProtocolError) as caught:
                list(throttled.listdir("/"))
            assert caught.value.code == ErrorCode.IO_ERROR
            assert str(caught.value) == "object store error (SlowDown): /"
            assert proxy.refused >= 3, "retried (botocore's standard mode), then the error"
    finally:
        proxy.close()


def test_an_interrupted_folder_mv_leaves_each_file_in_one_place(
    storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.mkdir("/src")
    names = [f"f{i}.txt" for i in range(4)]
    for name in names:
        upload(storage, f"/src/{name}", name.encode())
    real_call = s3moves.call
    copies = []

    def failing_call(home: Any, subject: str, method: str, **kwargs: Any) -> Any:
        if method == "copy_object":
            copies.append(kwargs["Key"])
            if len(copies) == 3:
                raise ProtocolError(ErrorCode.IO_ERROR, "object store error (InternalError): /dst")
        return real_call(home, subject, method, **kwargs)

    monkeypatch.setattr(s3moves, "call", failing_call)
    with pytest.raises(ProtocolError):
        storage.rename("/src", "/dst")
    monkeypatch.undo()
    moved = {e.name for e in storage.listdir("/dst")}
    left = {e.name for e in storage.listdir("/src")}
    assert len(moved) == 2 and moved | left == set(names) and not moved & left
    for name in names:
        where = "dst" if name in moved else "src"
        assert read_all(storage, f"/{where}/{name}") == name.encode()
    assert storage.usage().used == sum(len(n) for n in names)
