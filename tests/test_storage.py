"""Tests for ftpserver.storage: LocalStorage by virtual path, its quota figures, its handles.

Unit tests drive a :class:`LocalStorage` on a temporary home with an
in-process :class:`QuotaBook`; the end-to-end ones serve sessions from a
storage through the server's ``storage_factory`` hook and check the result
with the real client.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import fcntl
import os
import threading
import time
from multiprocessing import Pipe
from pathlib import Path

import pytest
from conftest import ALICE, ALICE_PASSWORD, HOST, RunningServer, digest_of

import ftpserver.handler
import ftpserver.storage.homeaccount
from ftpclient.client import FileTransferClient
from ftpproto.errors import ErrorCode, ProtocolError
from ftpserver.config import Settings
from ftpserver.digests import DigestCache
from ftpserver.server import FileTransferServer, local_storage
from ftpserver.state.ledger import QuotaBook, Reservation, Unmeasured
from ftpserver.state.owner import StateOwner
from ftpserver.state.pipe import remote_shared
from ftpserver.state.shared import LocalState
from ftpserver.storage.base import Entry, Storage
from ftpserver.storage.local import LocalStorage
from ftpserver.storage.localfiles import LocalReadHandle, discard_upload
from ftpserver.storage.paths import PARTIAL_DIR, TEMP_PREFIX
from ftpserver.transfers import handle_digest
from ftpserver.users import User

pytestmark = pytest.mark.timeout(60)

KIB = 1024


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """alice's home: a.txt (3 bytes), sub/b.txt (5), a link inside, a link out, a loop."""
    folder = tmp_path / "alice"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"aaa")
    (folder / "sub" / "b.txt").write_bytes(b"bbbbb")
    (folder / "in").symlink_to("sub/b.txt")
    (folder / "out").symlink_to(tmp_path)
    (folder / "loop").symlink_to("loop")
    (tmp_path / "secret").write_bytes(b"not alice's")
    return folder


def make_storage(home: Path, ledger: QuotaBook, quota: int | None = None) -> LocalStorage:
    user = User("alice", b"", home, quota=quota)
    return LocalStorage(user, ledger, DigestCache())


@pytest.fixture
def ledger() -> QuotaBook:
    return QuotaBook()


@pytest.fixture
def storage(home: Path, ledger: QuotaBook) -> LocalStorage:
    return make_storage(home, ledger)


def upload(storage: Storage, virtual: str, data: bytes) -> None:
    """Upload ``data`` to ``virtual`` through the storage's upload handle."""
    with storage.open_upload(virtual) as handle:
        offset, hasher = handle.start(len(data), None)
        assert offset == 0
        handle.sink.write(data)
        hasher.update(data)
        handle.keep_partial = False
        handle.commit(hasher.hexdigest())


def code_of(call: object) -> ErrorCode:
    assert callable(call)
    with pytest.raises(ProtocolError) as caught:
        call()
    return caught.value.code


# -- paths, looking -------------------------------------------------------------------------


def test_virtual_paths_and_working_folder(storage: LocalStorage) -> None:
    assert storage.cwd == "/"
    assert storage.virtual("sub/../a.txt") == "/a.txt"
    assert storage.chdir("sub") == "/sub"
    assert (storage.cwd, storage.virtual("b.txt"), storage.virtual("..")) == (
        "/sub",
        "/sub/b.txt",
        "/",
    )
    assert code_of(lambda: storage.chdir("/a.txt")) == ErrorCode.NOT_DIRECTORY
    assert storage.cwd == "/sub"


def test_stat_and_listing(storage: LocalStorage, home: Path) -> None:
    mtime = int((home / "a.txt").stat().st_mtime)
    assert storage.stat("/a.txt") == Entry("a.txt", "file", 3, mtime)
    assert storage.stat("/in")[1:3] == ("file", 5)  # a link inside the home is followed
    assert storage.stat("/sub").kind == "dir"
    (home / PARTIAL_DIR).mkdir()
    (home / f"{TEMP_PREFIX}x").write_bytes(b"in progress")
    listed = {e.name: e.kind for e in storage.listdir("/")}
    assert listed == {"a.txt": "file", "sub": "dir", "in": "link", "out": "link", "loop": "link"}
    assert list(storage.listdir("/sub/b.txt")) == [storage.stat("/sub/b.txt")]
    assert [storage.kind(v) for v in ("/in", "/sub", "/a.txt")] == ["link", "dir", "file"]


def test_links_out_and_loops(storage: LocalStorage, home: Path) -> None:
    with pytest.raises(ProtocolError) as caught:
        storage.stat("/out/secret")
    assert caught.value.code == ErrorCode.PERMISSION_DENIED
    assert str(home.parent) not in caught.value.text
    for call in (storage.stat, storage.listdir, storage.open_read, storage.open_upload):
        with pytest.raises(OSError) as looping:
            call("/loop")
        assert looping.value.errno == errno.ELOOP, call
    assert os.readlink(home / "loop") == "loop"


def test_read_handle(storage: LocalStorage, home: Path) -> None:
    with storage.open_read("/a.txt") as handle:
        assert (handle.size, handle.changed(), handle.stored_digest()) == (3, False, None)
        first = handle.version
        buffer = memoryview(bytearray(8))
        assert handle.readinto(buffer) == 3 and bytes(buffer[:3]) == b"aaa"
        handle.store_digest(digest_of(b"aaa"))
        assert handle.stored_digest() == digest_of(b"aaa")
        time.sleep(0.01)
        (home / "a.txt").write_bytes(b"aaaa")
        assert handle.changed()
    with storage.open_read("/a.txt") as again:
        assert again.version != first and again.stored_digest() is None
    assert code_of(lambda: storage.open_read("/sub")) == ErrorCode.IS_DIRECTORY


# -- changes and the quota figures ------------------------------------------------------------


def test_usage_is_measured_once_then_kept_exact(
    storage: LocalStorage, home: Path, ledger: QuotaBook
) -> None:
    with pytest.raises(Unmeasured):
        ledger.usage("alice", None, 10**9)
    assert storage.usage().used == 8  # measured: a.txt and sub/b.txt, links not counted
    (home / "sneaked-in").write_bytes(b"x" * 100)  # not through the storage: not seen yet
    assert storage.usage().used == 8
    assert storage.remove("/a.txt") == 3
    assert storage.remove("/in") == 0 and (home / "sub" / "b.txt").exists()
    upload(storage, "/sub/c.bin", b"c" * KIB)
    assert storage.usage().used == 5 + KIB
    assert storage.remove_tree("/sub") == (2, 5 + KIB, 1)
    assert storage.usage().used == 0
    ledger.forget("alice")  # a reload: measured again when next needed
    assert storage.usage().used == 100 == storage.measure()


def test_measure_removes_only_stale_temporary_files(storage: LocalStorage, home: Path) -> None:
    stale, live = home / "sub" / f"{TEMP_PREFIX}old", home / f"{TEMP_PREFIX}new"
    stale.write_bytes(b"s" * 50)
    live.write_bytes(b"l" * 50)
    long_ago = time.time() - 2 * storage.stale_after
    os.utime(stale, (long_ago, long_ago))
    assert storage.measure() == 8
    assert not stale.exists() and live.exists()


def test_upload_replaces_and_enforces_the_quota(home: Path, ledger: QuotaBook) -> None:
    storage = make_storage(home, ledger, quota=1000)
    upload(storage, "/a.txt", b"new content")
    assert (home / "a.txt").read_bytes() == b"new content"
    assert (storage.usage().used, storage.usage().reserved) == (5 + 11, 0)
    with storage.open_upload("/big.bin") as handle:
        assert code_of(lambda: handle.start(2000, None)) == ErrorCode.QUOTA_EXCEEDED
    assert not list(home.rglob(f"{TEMP_PREFIX}*"))
    assert storage.usage().reserved == 0
    assert code_of(lambda: storage.open_upload("/sub")) == ErrorCode.IS_DIRECTORY
    assert code_of(lambda: storage.open_upload("/no/such.txt")) == ErrorCode.NOT_FOUND


def test_partial_upload_is_kept_and_resumed(storage: LocalStorage, home: Path) -> None:
    data = os.urandom(10 * KIB)
    with storage.open_upload("/p.bin") as handle:
        _, hasher = handle.start(len(data), None)
        handle.sink.write(data[: 4 * KIB])
        hasher.update(data[: 4 * KIB])
        prefix = hasher.copy().hexdigest()
    assert storage.partial_size("/p.bin") == 4 * KIB and not (home / "p.bin").exists()
    assert storage.usage().used == 8 + 4 * KIB  # a kept partial upload counts
    with storage.open_upload("/p.bin") as handle:
        offset, hasher = handle.start(len(data), (4 * KIB, prefix))
        assert offset == 4 * KIB
        handle.sink.write(data[offset:])
        hasher.update(data[offset:])
        handle.keep_partial = False
        handle.commit(hasher.hexdigest())
    assert (home / "p.bin").read_bytes() == data
    assert storage.partial_size("/p.bin") == 0
    assert storage.usage().used == 8 + 10 * KIB == storage.measure()


def test_stale_partials_are_removed_and_uncounted(storage: LocalStorage, home: Path) -> None:
    with storage.open_upload("/p.bin") as handle:
        handle.start(100, None)
        handle.sink.write(b"p" * 60)
    kept = next((home / PARTIAL_DIR).iterdir())
    assert storage.usage().used == 68
    assert storage.remove_stale_partials(600) == 0
    long_ago = time.time() - 3600
    os.utime(kept, (long_ago, long_ago))
    assert storage.remove_stale_partials(600) == 1
    assert storage.usage().used == 8 and storage.partial_size("/p.bin") == 0


def test_rename_never_replaces(storage: LocalStorage, home: Path) -> None:
    assert storage.rename("/a.txt", "/sub") == "/sub/a.txt"
    assert code_of(lambda: storage.rename("/sub/a.txt", "/sub/b.txt")) == ErrorCode.EXISTS
    assert (home / "sub" / "b.txt").read_bytes() == b"bbbbb"
    assert code_of(lambda: storage.rename("/in", "/x", into_folder=True)) == ErrorCode.NOT_FOUND
    assert storage.rename("/in", "/moved-link") == "/moved-link"
    assert os.readlink(home / "moved-link") == "sub/b.txt"
    assert storage.usage().used == 8


def test_remove_tree_counts_folders(storage: LocalStorage, home: Path) -> None:
    (home / "sub" / "deep" / "er").mkdir(parents=True)
    (home / "sub" / "deep" / "er" / "c.txt").write_bytes(b"cc")
    (home / "sub" / "to-top").symlink_to(home)  # removed as a link, never followed: one file
    assert storage.usage().used == 10
    assert storage.remove_tree("/sub") == (3, 7, 3)
    assert not (home / "sub").exists() and (home / "a.txt").exists()
    assert storage.usage().used == 3 == storage.measure()


def test_rename_with_replace_is_atomic_and_keeps_the_quota_exact(
    storage: LocalStorage, home: Path
) -> None:
    assert storage.usage().used == 8
    assert storage.rename("/sub/b.txt", "/a.txt", replace=True) == "/a.txt"
    assert (home / "a.txt").read_bytes() == b"bbbbb" and not (home / "sub" / "b.txt").exists()
    assert storage.usage().used == 5 == storage.measure()
    assert storage.rename("/a.txt", "/a.txt", replace=True) == "/a.txt"
    os.link(home / "a.txt", home / "twin.txt")  # two names of one file: left as they are
    assert storage.usage().used == 5  # not through the storage: not seen yet
    storage.account.ledger.record("alice", storage.measure())
    assert storage.rename("/twin.txt", "/a.txt", replace=True) == "/a.txt"
    assert (home / "twin.txt").exists() and storage.usage().used == 10 == storage.measure()


def test_rename_with_replace_replaces_a_symlink_never_its_target(
    storage: LocalStorage, home: Path
) -> None:
    (home / "c.txt").write_bytes(b"cc")
    storage.account.ledger.record("alice", storage.measure())
    assert storage.rename("/c.txt", "/in", replace=True) == "/in"
    assert not (home / "in").is_symlink() and (home / "in").read_bytes() == b"cc"
    assert (home / "sub" / "b.txt").read_bytes() == b"bbbbb"  # what the link pointed to
    denied = code_of(lambda: storage.rename("/in", "/out", replace=True))  # NEW leaves the home
    assert denied == ErrorCode.PERMISSION_DENIED and (home / "out").is_symlink()
    assert storage.usage().used == 10 == storage.measure()
    (home / "sub" / "a.txt").write_bytes(b"old")
    storage.account.ledger.record("alice", storage.measure())
    assert storage.rename("/a.txt", "/sub", replace=True) == "/sub/a.txt"  # still moves into
    assert (home / "sub" / "a.txt").read_bytes() == b"aaa"
    assert storage.usage().used == 10 == storage.measure()
    (home / "dst" / "sub").mkdir(parents=True)
    (home / "dst" / "sub" / "x").write_bytes(b"x")  # a non-empty folder is never replaced
    with pytest.raises(OSError) as caught:
        storage.rename("/sub", "/dst", replace=True)
    assert caught.value.errno in (errno.ENOTEMPTY, errno.EEXIST)
    assert (home / "sub" / "a.txt").exists() and (home / "dst" / "sub" / "x").exists()


def test_sessions_of_one_user_keep_the_figures_exact(home: Path, ledger: QuotaBook) -> None:
    """Several sessions replace and remove files at once; the ledger matches the disk."""
    sessions = [make_storage(home, ledger) for _ in range(4)]
    errors: list[BaseException] = []

    def work(index: int, storage: LocalStorage) -> None:
        try:
            for round_ in range(25):
                name = f"/f{(index + round_) % 3}.bin"
                upload(storage, name, os.urandom((index + 1) * (round_ + 1) * 10))
                if round_ % 4 == 3:
                    with contextlib.suppress(FileNotFoundError):
                        storage.remove(name)
                if round_ == 10:
                    ledger.forget("alice")  # a reload in the middle
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    usage = sessions[0].usage()
    assert (usage.used, usage.reserved) == (sessions[0].measure(), 0)


def test_discard_upload_removes_only_temporary_files(tmp_path: Path) -> None:
    temp, other = tmp_path / f"{TEMP_PREFIX}1", tmp_path / "kept"
    temp.write_bytes(b"t")
    other.write_bytes(b"k")
    discard_upload(str(temp))
    discard_upload(str(other))
    discard_upload(str(temp))  # already gone: fine
    assert not temp.exists() and other.exists()


@pytest.mark.timeout(10)
def test_a_dead_workers_unsettled_reservation_is_still_given_back(tmp_path: Path) -> None:
    """settle() that finds no figures gives nothing back, so the owner keeps holding it."""
    shared = LocalState.create(Settings())
    owner = StateOwner(shared)
    mine, theirs = Pipe()
    thread = owner.attach(mine, 3)
    remote = remote_shared(theirs)
    temp = tmp_path / f"{TEMP_PREFIX}dead"
    temp.write_bytes(b"x" * 10)
    free = 10**9
    remote.quotas.record("carol", 50)
    # Replaces a file as big: no quota bytes held, so a reload may forget carol's figures.
    held: Reservation = remote.quotas.reserve("carol", 1000, 10, 10, free, str(temp))
    shared.quotas.forget("carol")
    with pytest.raises(Unmeasured):
        remote.quotas.settle("carol", 0, 1000, held)
    theirs.close()  # the worker dies before it measured and settled again
    thread.join(5)
    shared.quotas.record("carol", 50)
    assert shared.quotas.usage("carol", None, free).available == free, "disk bytes still held"
    assert not temp.exists(), "the dead worker's upload file was left"


# -- through the server -------------------------------------------------------------------------


class _NoDescriptor:
    """A read handle without a file descriptor, as an object store's would be."""

    def __init__(self, inner: LocalReadHandle) -> None:
        self.inner = inner
        self.size, self.version = inner.size, inner.version
        self.reads = 0

    def fileno(self) -> int | None:
        return None

    def readinto(self, buffer: memoryview) -> int:
        self.reads += 1
        return self.inner.readinto(buffer)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def __enter__(self) -> _NoDescriptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()


class _StreamingStorage(LocalStorage):
    handles: list[_NoDescriptor]

    def open_read(self, virtual: str) -> _NoDescriptor:  # type: ignore[override]
        handle = _NoDescriptor(super().open_read(virtual))
        self.handles.append(handle)
        return handle


def test_download_without_a_file_descriptor(server: RunningServer, local: Path) -> None:
    """A backend without sendfile: get (and its resume) and stat read through readinto."""
    handles: list[_NoDescriptor] = []

    def factory(srv: FileTransferServer, user: User) -> Storage:
        base = local_storage(srv, user)
        assert isinstance(base, LocalStorage)
        storage = _StreamingStorage(user, base.account.ledger, base.digests)
        storage.handles = handles
        return storage

    server.server.storage_factory = factory
    data = os.urandom(3 * 1024 * KIB + 5)
    (server.alice_home / "big.bin").write_bytes(data)
    with FileTransferClient(HOST, server.port, timeout=20) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        assert conn.stat("big.bin", digest=True).blake3 == digest_of(data)
        result = conn.get("big.bin", str(local / "big.bin"))
        assert result.blake3 == digest_of(data)
        assert (local / "big.bin").read_bytes() == data
        (local / "again.bin.part").write_bytes(data[: 1024 * KIB])
        assert conn.get("big.bin", str(local / "again.bin"), resume=True).blake3 == digest_of(data)
        assert (local / "again.bin").read_bytes() == data
    assert handles and all(h.reads for h in handles[:2]), "the data did not come through readinto"
    server.assert_serving()


def test_uploads_work_without_extended_attributes(
    make_configured_server: object, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without os.getxattr/os.setxattr (macOS): digests stay in memory, uploads succeed."""
    monkeypatch.delattr(os, "getxattr", raising=False)
    monkeypatch.delattr(os, "setxattr", raising=False)
    assert callable(make_configured_server)
    running: RunningServer = make_configured_server()
    data = os.urandom(300 * KIB)
    (local / "up.bin").write_bytes(data)
    with FileTransferClient(HOST, running.port, timeout=20) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        assert conn.put(str(local / "up.bin"), "up.bin").blake3 == digest_of(data)
        assert conn.stat("up.bin", digest=True).blake3 == digest_of(data)
        assert conn.get("up.bin", str(local / "down.bin")).blake3 == digest_of(data)
    assert (running.alice_home / "up.bin").read_bytes() == data
    running.assert_serving()


def test_the_session_speaks_only_to_its_storage() -> None:
    """handler.py imports neither os nor stat: every file operation goes through Storage."""
    source = Path(ftpserver.handler.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not imported & {"os", "stat", "shutil", "os.path", "pathlib"}, imported


def test_a_home_without_flock_still_works(
    home: Path, ledger: QuotaBook, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """NFS refuses flock on a folder (EBADF): the home's lock in this process still holds."""
    calls: list[int] = []

    class NoFlock:
        LOCK_EX = fcntl.LOCK_EX

        @staticmethod
        def flock(fd: int, operation: int) -> None:
            calls.append(fd)
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))

    monkeypatch.setattr(ftpserver.storage.homeaccount, "fcntl", NoFlock)
    storage = make_storage(home, ledger)
    upload(storage, "/n.bin", b"n" * 100)
    assert storage.remove("/a.txt") == 3
    assert calls, "flock was never tried"
    assert (home / "n.bin").read_bytes() == b"n" * 100
    assert storage.usage().used == 105 == storage.measure()
    warnings = [r for r in caplog.records if "no flock" in r.getMessage()]
    assert len(warnings) == 1, warnings


def test_measuring_one_home_holds_up_no_one_else(tmp_path: Path, ledger: QuotaBook) -> None:
    """A home walked after a reload blocks only its own user's figures, not the ledger."""
    walking, release = threading.Event(), threading.Event()

    class SlowStorage(LocalStorage):
        def measure(self) -> int:
            walking.set()
            assert release.wait(20)
            return super().measure()

    (tmp_path / "alice").mkdir()
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "b.bin").write_bytes(b"b" * 10)
    alice = SlowStorage(User("alice", b"", tmp_path / "alice"), ledger, DigestCache())
    bob = LocalStorage(User("bob", b"", tmp_path / "bob"), ledger, DigestCache())
    assert bob.usage().used == 10
    ledger.forget("alice")
    ledger.forget("bob")  # a reload forgets everyone's figures
    results: list[int] = []
    slow = threading.Thread(target=lambda: results.append(alice.usage().used))
    slow.start()
    try:
        assert walking.wait(10), "alice's home was not measured"
        started = time.monotonic()
        assert bob.usage().used == 10  # measured again meanwhile, without waiting for alice
        upload(bob, "/c.bin", b"c" * 5)
        assert bob.usage().used == 15
        assert time.monotonic() - started < 5
        assert not results, "alice's figures came before her home was measured"
    finally:
        release.set()
        slow.join(10)
    assert results == [0]


# -- modification times (issue 15) ----------------------------------------------------------


def test_set_mtime_on_files_folders_and_links_inside_the_jail(
    storage: LocalStorage, home: Path, tmp_path: Path
) -> None:
    storage.set_mtime("/a.txt", 1_600_000_000)
    storage.set_mtime("/sub", 1_600_000_001)
    storage.set_mtime("/in", 1_600_000_002)  # a link inside the home: its target
    assert int((home / "a.txt").stat().st_mtime) == 1_600_000_000
    assert int((home / "sub").stat().st_mtime) == 1_600_000_001
    assert int((home / "sub" / "b.txt").stat().st_mtime) == 1_600_000_002
    assert code_of(lambda: storage.set_mtime("/out", 5)) == ErrorCode.PERMISSION_DENIED
    with pytest.raises(FileNotFoundError):
        storage.set_mtime("/missing", 5)
    with pytest.raises(OSError) as caught:
        storage.set_mtime("/loop", 5)
    assert caught.value.errno == errno.ELOOP
    before = (tmp_path / "secret").stat().st_mtime_ns
    assert code_of(lambda: storage.set_mtime("/out/secret", 5)) == ErrorCode.PERMISSION_DENIED
    assert (tmp_path / "secret").stat().st_mtime_ns == before


def test_tree_folder_opens_names_of_one_folder_and_never_follows_a_link(
    storage: LocalStorage,
) -> None:
    """``tree_folder`` (a tree's digests): names in the checked folder only, links refused."""
    with storage.tree_folder("/") as folder:
        with folder.open("a.txt") as handle:
            assert handle.size == 3
        for link in ("in", "out", "loop"):  # inside, outside and a loop: none is followed
            with pytest.raises(OSError) as refused:
                folder.open(link)
            assert refused.value.errno == errno.ELOOP
        for bad in ("sub/b.txt", "..", "."):
            with pytest.raises(ProtocolError):
                folder.open(bad)
        with pytest.raises(ProtocolError) as not_file:
            folder.open("sub")
        assert not_file.value.code == ErrorCode.BAD_PATH
    with pytest.raises(ProtocolError) as outside, storage.tree_folder("/out"):
        pass
    assert outside.value.code == ErrorCode.PERMISSION_DENIED


def test_tree_folder_lists_as_listdir_and_knows_digests_of_the_versions_listed(
    storage: LocalStorage, home: Path
) -> None:
    """Digests come from memory without opening a file, only for the version listed."""
    with storage.tree_folder("/") as folder:
        assert sorted(folder.entries()) == sorted(storage.listdir("/"))
        assert folder.known_digest("a.txt") is None  # never hashed: the caller opens it
        with folder.open("a.txt") as handle:
            digest = handle_digest(handle)  # computed and remembered
        assert digest == digest_of(b"aaa")
        assert folder.known_digest("a.txt") == digest
        assert folder.known_digest("sub") is None and folder.known_digest("in") is None
    os.utime(home / "a.txt", ns=(1, 1))  # another version: not the one remembered
    with storage.tree_folder("/") as folder:
        folder.entries()
        assert folder.known_digest("a.txt") is None
        assert folder.known_digest("nothing") is None
