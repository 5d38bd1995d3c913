"""Faults: a client killed mid-transfer, a disk that fills up, a disk that refuses access.

* A client process killed with SIGKILL in the middle of ``put``: the server
  logs the transfer as failed, keeps exactly the bytes that arrived as the
  hidden partial upload, leaves no temporary file and no new or truncated
  file (an older file of that name is intact), and goes on serving.
* A client killed in the middle of ``get``: only ``<local>.part`` on the
  client's side, never the target name; the server's file is intact and the
  server logs the transfer as failed and goes on serving.
* The server's disk fails while an upload is written (a write that fails
  with ``ENOSPC`` after a short write, or ``EDQUOT``, ``EACCES``, ``EIO``, or
  an ``fsync`` that fails with ``ENOSPC``): the client gets a clear error
  (507 "no space", 403, 501), no temporary file is left, an older file of
  that name is intact, nothing is counted in the quota, and the same session
  goes on.
* The server's disk refuses access to a folder (``chmod 555``; the tests run
  as root, where that does not stop writes, so ``EACCES`` is also injected
  for changes inside that folder): ``put``, ``mkdir``, ``rm`` and ``mv`` there
  get ``403 permission denied on the server``, nothing changes, the session
  goes on.

The faults are injected through the server's storage: the ``faulty`` fixture
serves the sessions from a :class:`~faulty_storage.FaultyStorage` (the real
local storage, failing the chosen operations; see ``tests/faulty_storage.py``).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    OLD_VERSION,
    ClientFactory,
    RunningServer,
    digest_of,
    kill_mid_transfer,
    partial_file,
    temp_files,
    tree_state,
    wait_until,
)
from faulty_storage import Faults, install

from ftpclient.client import FileTransferClient
from ftpproto.errors import ErrorCode, RemoteError
from ftpserver.jail import PARTIAL_DIR

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024


def visible(home: Path) -> list[str]:
    """What a listing of the home shows (the hidden partial-upload store left out)."""
    return sorted(set(os.listdir(home)) - {PARTIAL_DIR})


def sessions_end(running: RunningServer) -> None:
    srv = running.server
    assert wait_until(lambda: not srv.sessions.snapshot(), timeout=10), "a session did not end"


def audit_events(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    """The text of the audit records of ``event`` (``put``, ``get``, ...)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ftpserver.audit" and r.getMessage().startswith(event + " ")
    ]


# -- clients killed mid-transfer ----------------------------------------------------------


@pytest.mark.parametrize("old", [None, OLD_VERSION], ids=["new-file", "older-file"])
def test_client_killed_mid_upload(
    server: RunningServer,
    client: ClientFactory,
    local: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    old: bytes | None,
) -> None:
    caplog.set_level(logging.INFO, logger="ftpserver.audit")
    home = server.alice_home
    target = home / "big.bin"
    if old is not None:
        target.write_bytes(old)
    data = os.urandom(MIB) * 8
    (local / "big.bin").write_bytes(data)
    sent = kill_mid_transfer(tmp_path, server.port, "put", "big.bin", local / "big.bin", 2 * MIB)
    assert 2 * MIB <= sent < len(data)
    sessions_end(server)
    # The server's view: a failed transfer, what arrived kept out of sight for resuming.
    events = audit_events(caplog, "put")
    assert len(events) == 1 and "outcome='ok'" not in events[0], events
    assert f"bytes={sent} " in events[0], f"the bytes that arrived are not logged: {events}"
    conn = client()
    assert wait_until(lambda: conn.partial("big.bin") == sent), (
        f"partial upload of {conn.partial('big.bin')} bytes, the client sent {sent}"
    )
    assert partial_file(home, "/big.bin").read_bytes() == data[:sent]
    assert temp_files(server.homes) == [], "a temporary file was left"
    if old is None:
        assert not target.exists(), "the partial upload became visible"
        assert [e.name for e in conn.ls()] == []
    else:
        assert target.read_bytes() == old, "the older file was damaged"
        assert conn.stat("big.bin", digest=True).blake3 == digest_of(old)
    assert visible(home) == ([] if old is None else ["big.bin"])
    server.assert_serving()


def test_client_killed_mid_download(
    server: RunningServer,
    local: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ftpserver.audit")
    data = os.urandom(MIB) * 64  # more than the socket buffers on the way can hold
    (server.alice_home / "big.bin").write_bytes(data)
    target = local / "big.bin"
    received = kill_mid_transfer(tmp_path, server.port, "get", "big.bin", target, 2 * MIB)
    assert 2 * MIB <= received < len(data)
    assert not target.exists(), "a truncated download appeared under the real name"
    part = local / "big.bin.part"
    assert part.is_file(), "no .part file on the client's side"
    kept = part.read_bytes()
    assert received <= len(kept) < len(data) and kept == data[: len(kept)]
    sessions_end(server)
    events = audit_events(caplog, "get")
    assert len(events) == 1 and "outcome='ok'" not in events[0], events
    assert (server.alice_home / "big.bin").read_bytes() == data, "the server's file changed"
    assert temp_files(server.homes) == []
    assert visible(server.alice_home) == ["big.bin"]
    server.assert_serving()


# -- disk faults, injected ------------------------------------------------------------------


@pytest.fixture
def faulty(server: RunningServer) -> Faults:
    """The ``server`` fixture's sessions, from now on, on a storage that fails as told."""
    return install(server.server, Faults())


@pytest.fixture
def failing_writes(faulty: Faults) -> Callable[[int, int], Faults]:
    """``failing_writes(errno, after)``: the server's upload writes fail from then on."""

    def arm(code: int, after: int) -> Faults:
        return faulty.fail("write", code, after=after)

    return arm


DISK_ERRORS = [
    pytest.param(errno.ENOSPC, ErrorCode.NO_SPACE, "no space", id="ENOSPC"),
    pytest.param(errno.EDQUOT, ErrorCode.NO_SPACE, "quota", id="EDQUOT"),
    pytest.param(errno.EACCES, ErrorCode.PERMISSION_DENIED, "permission denied", id="EACCES"),
    pytest.param(errno.EIO, ErrorCode.IO_ERROR, "error", id="EIO"),
]


@pytest.mark.parametrize("after", [0, MIB + 7], ids=["at-once", "mid-upload"])
@pytest.mark.parametrize(("code", "reply", "words"), DISK_ERRORS)
@pytest.mark.parametrize("old", [None, OLD_VERSION], ids=["new-file", "older-file"])
def test_disk_fails_while_an_upload_is_written(
    server: RunningServer,
    client: ClientFactory,
    local: Path,
    failing_writes: Callable[[int, int], Faults],
    code: int,
    reply: ErrorCode,
    words: str,
    after: int,
    old: bytes | None,
) -> None:
    home = server.alice_home
    target = home / "big.bin"
    if old is not None:
        target.write_bytes(old)
    source = local / "big.bin"
    source.write_bytes(os.urandom(3 * MIB))
    conn = client()
    used = conn.quota().used
    faults = failing_writes(code, after)
    with pytest.raises(RemoteError) as caught:
        conn.put(str(source), "big.bin")
    assert faults.struck, "the injected fault never struck"
    assert caught.value.code == reply, f"{caught.value.code}: {caught.value.text}"
    assert words in caught.value.text.lower(), caught.value.text
    assert "big.bin" in caught.value.text, "the error does not name the file"
    assert str(home) not in caught.value.text, "the error shows a real path"
    assert temp_files(server.homes) == [], "the temporary file was left"
    assert not (home / PARTIAL_DIR).exists() or not os.listdir(home / PARTIAL_DIR)
    assert conn.partial("big.bin") == 0, "a failed upload was kept for resuming"
    if old is None:
        assert not target.exists(), "a partial file became visible"
    else:
        assert target.read_bytes() == old, "the older file was damaged"
    assert conn.quota().used == used, "the failed upload was counted"
    # The same session goes on, and works again once the disk does.
    faults.armed = False
    assert conn.pwd() == "/"
    small = local / "small.txt"
    small.write_bytes(b"the disk works again\n")
    assert conn.put(str(small), "small.txt").blake3 == digest_of(small.read_bytes())
    assert conn.put(str(source), "big.bin").blake3 == digest_of(source.read_bytes())
    assert target.read_bytes() == source.read_bytes()
    server.assert_serving()


@pytest.mark.parametrize("old", [None, OLD_VERSION], ids=["new-file", "older-file"])
def test_fsync_fails_with_enospc(
    make_configured_server: Callable[..., RunningServer],
    local: Path,
    old: bytes | None,
) -> None:
    """Space a filesystem only finds out about at fsync: the same clear 507."""
    running = make_configured_server(fsync_uploads=True)
    target = running.alice_home / "big.bin"
    if old is not None:
        target.write_bytes(old)
    faults = install(running.server, Faults().fail("fsync", errno.ENOSPC))
    source = local / "big.bin"
    source.write_bytes(os.urandom(MIB))
    with FileTransferClient(HOST, running.port, timeout=10) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        with pytest.raises(RemoteError) as caught:
            conn.put(str(source), "big.bin")
        assert faults.struck, "fsync was never called"
        assert caught.value.code == ErrorCode.NO_SPACE
        assert "no space" in caught.value.text.lower()
        assert temp_files(running.homes) == []
        assert conn.partial("big.bin") == 0
        if old is None:
            assert not target.exists()
        else:
            assert target.read_bytes() == old
        assert conn.pwd() == "/"
    running.assert_serving()


# -- a folder the server may not change --------------------------------------------------------


class LockedFolder:
    """Changes inside the virtual folder ``/locked`` fail with EACCES (see :func:`locked`)."""

    def __init__(self, folder: str, faults: Faults) -> None:
        self.folder = folder
        self.faults = faults

    @property
    def refused(self) -> list[str]:
        return self.faults.struck

    def inside(self, virtual: str) -> bool:
        return virtual.startswith(self.folder + "/")


@pytest.fixture
def locked(server: RunningServer, faulty: Faults) -> Iterator[LockedFolder]:
    """alice's folder ``locked`` (with ``old.txt``), mode 555, and EACCES for changes in it."""
    folder = server.alice_home / "locked"
    folder.mkdir()
    (folder / "old.txt").write_bytes(OLD_VERSION)
    (server.alice_home / "elsewhere").mkdir()
    folder.chmod(0o555)
    guard = LockedFolder("/locked", faulty)
    if os.geteuid() == 0:  # root writes whatever the mode says: inject what others would get
        for point in ("create", "mkdir", "rmdir", "remove", "rename"):
            faulty.fail(point, errno.EACCES, guard.inside)
    try:
        yield guard
    finally:
        folder.chmod(0o755)


def upload(conn: Any, local: Path, remote: str) -> Any:
    source = local / "up.bin"
    source.write_bytes(os.urandom(300_000))
    return conn.put(str(source), remote)


def put_new(conn: Any, local: Path) -> Any:
    return upload(conn, local, "locked/new.bin")


def put_over(conn: Any, local: Path) -> Any:
    return upload(conn, local, "locked/old.txt")


REFUSED = [
    pytest.param(put_new, "locked/new.bin", id="put-new"),
    pytest.param(put_over, "locked/old.txt", id="put-over"),
    pytest.param(lambda conn, local: conn.mkdir("locked/sub"), "locked/sub", id="mkdir"),
    pytest.param(
        lambda conn, local: conn.mkdir("locked/a/b", parents=True), "locked/a/b", id="mkdir-p"
    ),
    pytest.param(lambda conn, local: conn.rm("locked/old.txt"), "locked/old.txt", id="rm"),
    pytest.param(lambda conn, local: conn.mv("locked/old.txt", "elsewhere"), "", id="mv-out"),
    pytest.param(lambda conn, local: conn.mv("locked/old.txt", "locked/new.txt"), "", id="mv-in"),
]


@pytest.mark.parametrize(("action", "subject"), REFUSED)
def test_permission_error_on_the_servers_disk(
    server: RunningServer,
    client: ClientFactory,
    local: Path,
    locked: LockedFolder,
    action: Callable[[Any, Path], Any],
    subject: str,
) -> None:
    conn = client()
    before = tree_state(server.alice_home)
    with pytest.raises(RemoteError) as caught:
        action(conn, local)
    assert caught.value.code == ErrorCode.PERMISSION_DENIED, caught.value
    assert "permission denied on the server" in caught.value.text, caught.value.text
    assert subject in caught.value.text, caught.value.text
    assert str(server.alice_home) not in caught.value.text, "the error shows a real path"
    if os.geteuid() == 0:
        assert locked.refused, "the injected fault never struck"
    assert tree_state(server.alice_home) == before, "the refused command changed the disk"
    assert temp_files(server.homes) == []
    # The session goes on; the rest of the home still works.
    assert conn.pwd() == "/"
    assert [e.name for e in conn.ls("locked")] == ["old.txt"]
    assert upload(conn, local, "elsewhere/fine.bin").size == 300_000
    server.assert_serving()
