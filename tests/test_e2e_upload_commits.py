"""End to end: how a pipelined upload is made and committed, file by file.

On a local disk the session makes an offered upload's temporary file and
commits a received one on its own thread (a remote store's commit runs on
``ftpserver/finishing.py``'s helper thread, see ``test_e2e_s3_tree.py``).
Through the real server: a command sent right behind the data (no answer
read) finds every upload in place; answers come in request order; a commit
that fails (``fsync`` without space) or a temporary file that cannot be
made is that file's error alone, named, with nothing left over or counted,
and the others are stored; so is an offer whose home cannot be measured for
its reservation (the ledger across a pipe, as in a worker).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ALICE,
    ALICE_PASSWORD,
    HOST,
    ClientFactory,
    RawSession,
    RunningServer,
    digest_of,
    temp_files,
)
from faulty_storage import Faults, install

from ftpclient.client import FileTransferClient
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.messages import Message
from ftpserver.storage.localfiles import LocalUpload

pytestmark = pytest.mark.timeout(120)


def _files(count: int) -> dict[str, bytes]:
    return {f"f{n:03d}.bin": os.urandom(500 + 37 * n) for n in range(count)}


def test_commands_right_behind_the_data_find_every_upload(
    server: RunningServer, raw: Callable[[], RawSession]
) -> None:
    """40 uploads' data, then at once 40 ``fetch`` of them: answers in order, files whole."""
    files = _files(40)
    session = raw()
    session.login()
    session.send_raw(b"".join(session.frame("offer", n, str(len(d))) for n, d in files.items()))
    for data in files.values():
        assert session.recv() == Message("offer", ("ready", str(len(data))))
    stream = b"".join(
        session.frame("send") + data + session.frame("send", "digest", digest_of(data))
        for data in files.values()
    )
    last_first = list(reversed(files.items()))  # the last one sent is likeliest still committing
    session.send_raw(stream + b"".join(session.frame("fetch", name) for name, _ in last_first))
    for data in files.values():
        assert session.recv() == Message("send", ("ok", str(len(data)), digest_of(data)))
    for name, data in last_first:
        assert session.recv() == Message("fetch", ("ready", str(len(data)))), name
        assert session.recv_file(len(data)) == data, name
        assert session.recv() == Message("fetch", ("digest", digest_of(data))), name
    for name, data in files.items():
        assert (server.alice_home / name).read_bytes() == data
    assert temp_files(server.alice_home) == []


def test_a_commit_that_fails_is_that_files_error_alone(
    make_configured_server: Callable[..., RunningServer], local: Path
) -> None:
    """``fsync`` runs out of space for one file of 12: 507 naming it; the 11 others stored."""
    running = make_configured_server(fsync_uploads=True)
    faults = install(
        running.server, Faults().fail("fsync", errno.ENOSPC, lambda v: v == "/f005.bin")
    )
    files = _files(12)
    for name, data in files.items():
        (local / name).write_bytes(data)
    with FileTransferClient(HOST, running.port, timeout=30) as conn:
        conn.login(ALICE, ALICE_PASSWORD)
        used = conn.quota().used
        outcomes = list(conn.put_many([(name, str(local / name)) for name in files]))
        assert faults.struck == ["fsync /f005.bin"]
        assert [o.remote for o in outcomes] == list(files)
        failed = outcomes[5].error
        assert isinstance(failed, RemoteError) and failed.code == ErrorCode.NO_SPACE, failed
        assert "f005.bin" in failed.text
        assert [o.error is None for o in outcomes] == [n != 5 for n in range(12)]
        assert conn.quota().used == used + sum(len(d) for n, d in files.items() if n != "f005.bin")
        assert conn.pwd() == "/"  # the session goes on
    home = running.alice_home
    assert not (home / "f005.bin").exists()
    for name, data in files.items():
        if name != "f005.bin":
            assert (home / name).read_bytes() == data, name
    assert temp_files(running.homes) == []
    running.assert_serving()


def test_a_temporary_file_that_cannot_be_made_refuses_its_offer(
    server: RunningServer,
    client: ClientFactory,
    local: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One file's temporary file cannot be made: its offer gets the error."""
    made = LocalUpload.create

    def create(upload: LocalUpload) -> None:
        if upload.target.endswith("f003.bin"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), upload.temp)
        made(upload)

    monkeypatch.setattr(LocalUpload, "create", create)
    files = _files(8)
    for name, data in files.items():
        (local / name).write_bytes(data)
    conn = client()
    used = conn.quota().used
    outcomes = list(conn.put_many([(name, str(local / name)) for name in files]))
    failed = outcomes[3].error
    assert isinstance(failed, RemoteError) and failed.code == ErrorCode.IO_ERROR, failed
    assert "f003.bin" in failed.text and str(server.homes) not in failed.text
    assert [o.error is None for o in outcomes] == [n != 3 for n in range(8)]
    assert conn.quota().used == used + sum(len(d) for n, d in files.items() if n != "f003.bin")
    assert not (server.alice_home / "f003.bin").exists()
    assert temp_files(server.alice_home) == []
    assert conn.pwd() == "/"


def test_an_offer_whose_home_cannot_be_measured_is_refused_alone(
    tmp_path: Path, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the quota ledger across a pipe (as in a worker), an offer's reservation is
    confirmed later; measuring the home for it fails with an OSError: that offer is refused,
    naming its path, nothing of it is left, and the session goes on."""
    import threading
    from multiprocessing import Pipe

    from conftest import CLIENT_TIMEOUT, HOST, write_users_file

    from ftpserver.config import Settings
    from ftpserver.server import FileTransferServer
    from ftpserver.state.owner import StateOwner
    from ftpserver.state.pipe import remote_shared
    from ftpserver.state.shared import LocalState
    from ftpserver.storage.local import LocalStorage
    from ftpserver.users import load_users

    homes = tmp_path / "homes"
    users = write_users_file(tmp_path / "users.yaml", homes, {ALICE: (ALICE_PASSWORD, {})})
    settings = Settings(host=HOST, port=0, users=users, home=homes, fsync_uploads=False)
    mine, theirs = Pipe()
    owner = StateOwner(LocalState.create(settings)).attach(mine, 1)
    server = FileTransferServer(settings, load_users(users, homes), shared=remote_shared(theirs))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    measure = LocalStorage.measure
    failing = [True]

    def flaky(storage: LocalStorage) -> int:
        if failing[0]:
            failing[0] = False
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(storage.jail.root))
        return measure(storage)

    monkeypatch.setattr(LocalStorage, "measure", flaky)
    files = _files(3)
    for name, data in files.items():
        (local / name).write_bytes(data)
    try:
        with FileTransferClient(HOST, server.address[1], timeout=CLIENT_TIMEOUT) as conn:
            conn.login(ALICE, ALICE_PASSWORD)
            outcomes = list(conn.put_many([(name, str(local / name)) for name in files]))
            first = outcomes[0].error
            assert isinstance(first, RemoteError) and first.code == ErrorCode.PERMISSION_DENIED
            assert "/f000.bin" in first.text and str(homes) not in first.text, first.text
            assert [o.error is None for o in outcomes] == [False, True, True]
            assert conn.pwd() == "/"
        home = homes / ALICE
        assert not (home / "f000.bin").exists()
        for name in ("f001.bin", "f002.bin"):
            assert (home / name).read_bytes() == files[name]
        assert temp_files(home) == []
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        theirs.close()
        owner.join(5)
