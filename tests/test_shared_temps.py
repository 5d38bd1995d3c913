"""Temporary uploads on homes shared by a cluster (ftpserver.storage.temps).

Two :class:`LocalStorage` on one home stand for two nodes; a fake
:class:`UploadOwners` says which nodes hold a lease.  A dead node's
temporary upload becomes the kept partial upload of its target (by the
next ``partial`` of it, or the sweeper) and resumes; a live node's is
never touched; when the shared state cannot say, nothing is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ftpproto.digest import new_hasher
from ftpserver.digests import DigestCache
from ftpserver.state.ledger import QuotaBook
from ftpserver.storage.local import LocalStorage
from ftpserver.storage.localfiles import LocalUpload
from ftpserver.storage.paths import PARTIAL_DIR, TEMP_PREFIX, is_temporary
from ftpserver.storage.temps import owner_tag, parse_temp, temp_name
from ftpserver.users import User

pytestmark = pytest.mark.timeout(60)

KIB = 1024


class Owners:
    """The shared state's leases as a test sets them."""

    def __init__(self, name: str, live: set[str], lease: float = 0.5) -> None:
        self.name = name
        self.live = live
        self._lease = lease
        self.down = False

    @property
    def lease(self) -> float:
        return self._lease

    def live_nodes(self) -> dict[str, float]:
        if self.down:
            raise ConnectionError("shared state unavailable")
        return dict.fromkeys(self.live, self._lease)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "alice"
    folder.mkdir()
    return folder


def node(
    home: Path, ledger: QuotaBook, owners: Owners, stale_after: float = 3600.0
) -> LocalStorage:
    user = User("alice", b"", home)
    return LocalStorage(user, ledger, DigestCache(), stale_after=stale_after, owners=owners)


def killed_upload(storage: LocalStorage, ledger: QuotaBook, data: bytes, sent: int) -> LocalUpload:
    """An upload of ``data`` to /p.bin whose node died after ``sent`` bytes (left as it was)."""
    handle = storage.open_upload("/p.bin")
    assert isinstance(handle, LocalUpload)
    handle.start(len(data), None)
    handle.sink.write(data[:sent])
    os.close(handle.sink.fd)  # the process is gone: nothing of it finishes the upload
    assert handle.reservation is not None
    ledger.release(handle.reservation)  # the dead node's reservation went with its lease
    return handle


def temps(home: Path) -> list[str]:
    return [name for name in os.listdir(home) if is_temporary(name)]


def test_temporary_names_carry_the_partial_key_the_process_and_the_node() -> None:
    key = "ab" * 32
    name = temp_name(key, "host:2121/1")
    parsed = parse_temp(name)
    assert parsed is not None and "/" not in name and name.startswith(TEMP_PREFIX)
    assert (parsed.key, parsed.tag, parsed.pid) == (key, owner_tag("host:2121/1"), os.getpid())
    assert name.endswith("-host%3A2121%2F1")
    assert temp_name(key, "n1") != temp_name(key, "n1")  # never the same twice
    long = temp_name(key, "x" * 300)
    assert len(long.encode()) < 255 and parse_temp(long) is not None
    assert parse_temp(TEMP_PREFIX + "0123456789abcdef") is None  # an older server's name


def test_a_forked_worker_names_its_temporary_files_as_itself() -> None:
    """The process id and the random part are the child's own after a fork (as the workers are)."""
    key = "cd" * 32
    read_end, write_end = os.pipe()
    before = temp_name(key, "n1")
    pid = os.fork()
    if pid == 0:  # the child: its names, then out without running the tests' exit code
        try:
            os.write(write_end, "\n".join([before, temp_name(key, "n1")]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        inherited, child_name = pipe.read().split("\n")
    os.waitpid(pid, 0)
    after = temp_name(key, "n1")  # the parent's next name: the child's would match unless reseeded
    child, parent = parse_temp(child_name), parse_temp(after)
    assert child is not None and parent is not None and inherited == before
    assert child.pid == pid and parent.pid == os.getpid()
    assert child_name.split("-")[3] != after.split("-")[3]


def test_a_dead_nodes_upload_is_adopted_and_resumed(home: Path) -> None:
    ledger = QuotaBook()
    data = os.urandom(10 * KIB)
    n1 = node(home, ledger, Owners("n1", {"n1", "n2"}))
    dead = killed_upload(n1, ledger, data, 4 * KIB)
    assert dead.temp.endswith("-n1") and os.path.exists(dead.temp)
    n2 = node(home, ledger, Owners("n2", {"n2"}))  # n1's lease ran out
    assert n2.partial_size("/p.bin") == 4 * KIB
    assert temps(home) == [] and n2.usage().used == 4 * KIB  # a kept partial upload counts
    with n2.open_upload("/p.bin") as handle:
        hasher = new_hasher()
        hasher.update(data[: 4 * KIB])
        offset, hasher = handle.start(len(data), (4 * KIB, hasher.hexdigest()))
        assert offset == 4 * KIB
        assert isinstance(handle, LocalUpload) and handle.temp.endswith("-n2")
        handle.sink.write(data[offset:])
        hasher.update(data[offset:])
        handle.keep_partial = False
        handle.commit(hasher.hexdigest())
    assert (home / "p.bin").read_bytes() == data
    assert n2.partial_size("/p.bin") == 0 and temps(home) == []
    assert n2.usage().used == 10 * KIB == n2.measure()


def test_a_live_nodes_upload_is_never_touched(home: Path) -> None:
    ledger = QuotaBook()
    data = os.urandom(8 * KIB)
    owners = Owners("n2", {"n1", "n2"}, lease=0.4)
    n1 = node(home, ledger, Owners("n1", {"n1", "n2"}))
    killed_upload(n1, ledger, data, 3 * KIB)
    long_ago = time.time() - 7200
    for name in temps(home):
        os.utime(home / name, (long_ago, long_ago))
    n2 = node(home, ledger, owners, stale_after=60)
    assert n2.measure() == 0 and n2.remove_stale_partials(0) == 0
    started = time.monotonic()
    assert n2.partial_size("/p.bin") == 0  # waited for n1's lease, which it kept renewing
    assert time.monotonic() - started >= 0.4
    assert len(temps(home)) == 1
    owners.down = True  # the shared state cannot say: every owner may be alive
    assert n2.measure() == 0 and n2.remove_stale_partials(0) == 0 and n2.partial_size("/p.bin") == 0
    assert len(temps(home)) == 1
    owners.down = False
    owners.live = {"n2"}  # n1 died just now: the sweeper keeps its upload for resuming
    for name in temps(home):
        os.utime(home / name)
    assert n2.remove_stale_partials(3600) == 0  # adopted, not removed
    assert temps(home) == [] and n2.partial_size("/p.bin") == 3 * KIB
    assert len(os.listdir(home / PARTIAL_DIR)) == 1


def test_an_earlier_process_of_this_node_is_dead(home: Path) -> None:
    ledger = QuotaBook()
    owners = Owners("n1", {"n1"})
    n1 = node(home, ledger, owners)
    key = os.path.basename(n1._partial("/p.bin"))
    (home / temp_name(key, "n1", pid=os.getpid() + 1)).write_bytes(b"x" * 100)
    mine = home / temp_name(key, "n1")
    mine.write_bytes(b"y" * 50)
    assert n1.partial_size("/p.bin") == 100  # no wait: only its own files
    assert mine.exists() and n1.usage().used == 100
