"""End to end: per-user quotas (issue 3).

An upload that would go over the quota is refused with 508 before any data
flows and writes nothing; ``quota`` reports used/limit/available exactly
after every kind of change (put, overwrite, rm, rm -r, failed, interrupted
and resumed uploads); the reservation made at ``ready`` is shared by all of
a user's sessions.  Every figure is checked against the bytes on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import (
    Account,
    Connect,
    MakeServer,
    RawSession,
    RunningServer,
    bytes_on_disk,
    digest_of,
    file_digest_of,
    partial_file,
    run_command,
    start_server,
    stop_server,
    temp_files,
    tree_state,
    wait_until,
)

from ftpclient.client import FileTransferClient
from ftpproto.errors import ErrorCode, RemoteError
from ftpproto.messages import Message

pytestmark = pytest.mark.timeout(60)

KIB = 1024
MIB = 1024 * 1024
CAROL = Account("carol", "carol pw", quota="1M")
FREE = Account("frank", "frank pw")  # no quota


@pytest.fixture
def quota_server(make_server: MakeServer) -> RunningServer:
    return make_server(CAROL, FREE)


@pytest.fixture
def carol(quota_server: RunningServer, connect: Connect) -> FileTransferClient:
    return connect(quota_server, CAROL.name, CAROL.password)


def carol_home(running: RunningServer) -> Path:
    return running.home(CAROL.name)


def carol_raw(running: RunningServer) -> RawSession:
    session = RawSession(running.port)
    session.login(CAROL.name, CAROL.password)
    return session


def assert_exact(conn: FileTransferClient, home: Path, limit: int | None = MIB) -> int:
    """``quota`` matches the bytes on disk exactly; returns the bytes used."""
    usage = conn.quota()
    on_disk = bytes_on_disk(home)
    assert usage.used == on_disk, f"quota says {usage.used} used, the disk holds {on_disk}"
    assert usage.limit == limit
    if limit is not None:
        assert usage.available == limit - on_disk, f"available {usage.available}"
    return usage.used


def write(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def raw_put(session: RawSession, path: str, data: bytes, digest: str | None = None) -> Message:
    """A whole upload on a raw session; returns the final reply (or the refusal)."""
    reply = session.call("put", path, str(len(data)))
    if reply.status != "ready":
        return reply
    session.send_raw(data)
    session.request("put", "digest", digest or digest_of(data))
    return session.recv()


# -- refused before data flows -----------------------------------------------------------


def test_over_quota_is_refused_before_data_flows(
    quota_server: RunningServer, carol: FileTransferClient
) -> None:
    home = carol_home(quota_server)
    (home / "keep.txt").write_bytes(b"k" * 1000)  # measured when carol first asks
    used = assert_exact(carol, home)
    before = tree_state(home, times=False)
    session = carol_raw(quota_server)
    reply = session.call("put", "big.bin", str(MIB - used + 1))
    assert reply.status == "error" and reply.fields[1] == "508", reply
    assert "quota" in reply.fields[2]
    assert tree_state(home, times=False) == before, "a refused upload wrote something"
    assert temp_files(home) == []
    # No data was expected: the very next message is answered normally.
    assert session.call("pwd") == Message("pwd", ("ok", "/"))
    assert_exact(carol, home)


def test_exactly_the_available_space_fits(
    quota_server: RunningServer, carol: FileTransferClient, local: Path
) -> None:
    home = carol_home(quota_server)
    source = write(local, "exact.bin", MIB)
    result = carol.put(str(source), "exact.bin")
    assert result.size == MIB
    assert file_digest_of(home / "exact.bin") == file_digest_of(source)
    assert assert_exact(carol, home) == MIB
    assert carol.quota().available == 0
    tiny = write(local, "tiny", 1)
    with pytest.raises(RemoteError) as caught:
        carol.put(str(tiny), "tiny")
    assert caught.value.code == ErrorCode.QUOTA_EXCEEDED
    assert not (home / "tiny").exists()
    empty = write(local, "empty", 0)
    carol.put(str(empty), "empty")  # zero bytes always fit
    assert (home / "empty").read_bytes() == b""


def test_client_put_over_quota_writes_nothing(
    quota_server: RunningServer, carol: FileTransferClient, local: Path
) -> None:
    home = carol_home(quota_server)
    source = write(local, "big.bin", MIB + 1)
    before = tree_state(home, times=False)
    with pytest.raises(RemoteError) as caught:
        carol.put(str(source), "big.bin")
    assert caught.value.code == ErrorCode.QUOTA_EXCEEDED, caught.value
    assert tree_state(home, times=False) == before
    assert carol.partial("big.bin") == 0, "a refused upload left a partial"
    assert_exact(carol, home)


def test_user_without_quota_is_not_limited(
    quota_server: RunningServer, connect: Connect, local: Path
) -> None:
    frank = connect(quota_server, FREE.name, FREE.password)
    source = write(local, "big.bin", 3 * MIB)
    frank.put(str(source), "big.bin")
    home = quota_server.home(FREE.name)
    assert file_digest_of(home / "big.bin") == file_digest_of(source)
    usage = frank.quota()
    assert (usage.used, usage.limit) == (3 * MIB, None)
    assert usage.available > 0


# -- exact figures --------------------------------------------------------------------------


def test_figures_stay_exact(
    quota_server: RunningServer, carol: FileTransferClient, local: Path
) -> None:
    home = carol_home(quota_server)
    assert assert_exact(carol, home) == 0
    # put
    carol.put(str(write(local, "a.bin", 100 * KIB)), "a.bin")
    assert assert_exact(carol, home) == 100 * KIB
    # overwrite, smaller
    carol.put(str(write(local, "a.bin", 50 * KIB)), "a.bin")
    assert assert_exact(carol, home) == 50 * KIB
    # overwrite, larger
    carol.put(str(write(local, "a.bin", 300 * KIB)), "a.bin")
    assert assert_exact(carol, home) == 300 * KIB
    assert file_digest_of(home / "a.bin") == file_digest_of(local / "a.bin")
    # a tree, then rm of one file and rm -r of the rest
    carol.mkdir("t/u", parents=True)
    for name, size in (("t/one", 10 * KIB), ("t/u/two", 20 * KIB), ("t/u/three", 30 * KIB)):
        carol.put(str(write(local, "x", size)), name)
    assert assert_exact(carol, home) == 360 * KIB
    assert carol.rm("t/one") == (1, 10 * KIB)
    assert assert_exact(carol, home) == 350 * KIB
    assert carol.rm("t", recursive=True) == (2, 50 * KIB)
    assert assert_exact(carol, home) == 300 * KIB
    # mv changes nothing
    carol.mv("a.bin", "b.bin")
    assert assert_exact(carol, home) == 300 * KIB
    # a failed upload (digest mismatch) changes nothing
    session = carol_raw(quota_server)
    reply = raw_put(session, "c.bin", os.urandom(200 * KIB), digest=digest_of(b"wrong"))
    assert reply.status == "error" and reply.fields[1] == "460", reply
    assert not (home / "c.bin").exists()
    assert assert_exact(carol, home) == 300 * KIB
    # an aborted upload changes nothing
    reply = session.call("put", "d.bin", str(100 * KIB))
    assert reply.status == "ready", reply
    session.send_raw(bytes(100 * KIB))
    session.request("put", "abort")
    reply = session.recv()
    assert reply.status == "error" and reply.fields[1] == "461", reply
    assert assert_exact(carol, home) == 300 * KIB
    # a failed overwrite keeps the old file and its count
    reply = raw_put(session, "b.bin", os.urandom(10), digest=digest_of(b"wrong"))
    assert reply.status == "error" and reply.fields[1] == "460", reply
    assert file_digest_of(home / "b.bin") == file_digest_of(local / "a.bin")
    assert assert_exact(carol, home) == 300 * KIB
    assert temp_files(home) == []


def test_interrupted_and_resumed_upload_is_counted_exactly(
    quota_server: RunningServer, carol: FileTransferClient, local: Path
) -> None:
    home = carol_home(quota_server)
    source = write(local, "r.bin", 600 * KIB)
    data = source.read_bytes()
    session = carol_raw(quota_server)
    assert session.call("put", "r.bin", str(len(data))).status == "ready"
    session.send_raw(data[: 250 * KIB])
    assert wait_until(lambda: any(p.stat().st_size >= 250 * KIB for p in temp_files(home)))
    # While the upload runs its whole size is reserved.
    assert carol.quota().available == MIB - 600 * KIB
    session.close()
    assert wait_until(lambda: carol.partial("r.bin") == 250 * KIB)
    assert partial_file(home, "/r.bin").stat().st_size == 250 * KIB
    assert assert_exact(carol, home) == 250 * KIB, "the kept partial upload is not counted"
    result = carol.put(str(source), "r.bin", resume=True)
    assert result.offset == 250 * KIB
    assert file_digest_of(home / "r.bin") == digest_of(data)
    assert assert_exact(carol, home) == 600 * KIB
    assert temp_files(home) == []


def test_resume_near_the_quota_counts_the_kept_part_once(
    quota_server: RunningServer, carol: FileTransferClient, local: Path
) -> None:
    """700K kept of a 900K file in a 1M quota: resuming needs only the 200K still missing."""
    home = carol_home(quota_server)
    source = write(local, "r.bin", 900 * KIB)
    data = source.read_bytes()
    session = carol_raw(quota_server)
    assert session.call("put", "r.bin", str(len(data))).status == "ready"
    session.send_raw(data[: 700 * KIB])
    assert wait_until(lambda: any(p.stat().st_size >= 700 * KIB for p in temp_files(home)))
    session.close()
    assert wait_until(lambda: carol.partial("r.bin") == 700 * KIB)
    assert assert_exact(carol, home) == 700 * KIB
    result = carol.put(str(source), "r.bin", resume=True)
    assert result.offset == 700 * KIB
    assert file_digest_of(home / "r.bin") == digest_of(data)
    assert assert_exact(carol, home) == 900 * KIB


def test_overwrite_needs_only_the_difference(
    quota_server: RunningServer, carol: FileTransferClient, local: Path
) -> None:
    home = carol_home(quota_server)
    carol.put(str(write(local, "f", 600 * KIB)), "f")
    carol.put(str(write(local, "f", 900 * KIB)), "f")  # +300K of 400K free
    assert file_digest_of(home / "f") == file_digest_of(local / "f")
    assert assert_exact(carol, home) == 900 * KIB
    old = file_digest_of(home / "f")
    with pytest.raises(RemoteError) as caught:
        carol.put(str(write(local, "f", MIB + 1)), "f")
    assert caught.value.code == ErrorCode.QUOTA_EXCEEDED
    assert file_digest_of(home / "f") == old, "the refused overwrite changed the file"
    assert assert_exact(carol, home) == 900 * KIB


def test_quota_measured_again_after_a_restart(
    quota_server: RunningServer, carol: FileTransferClient, local: Path, connect: Connect
) -> None:
    carol.put(str(write(local, "f", 400 * KIB)), "f")
    carol.mkdir("d")
    carol.put(str(write(local, "g", 100 * KIB)), "d/g")
    carol.close()
    stop_server(quota_server)
    again = start_server(quota_server.users_file, quota_server.homes)
    try:
        conn = connect(again, CAROL.name, CAROL.password)
        assert assert_exact(conn, carol_home(again)) == 500 * KIB
        with pytest.raises(RemoteError) as caught:
            conn.put(str(write(local, "h", 600 * KIB)), "h")
        assert caught.value.code == ErrorCode.QUOTA_EXCEEDED
    finally:
        stop_server(again)


# -- concurrent sessions of one user ----------------------------------------------------------


def both_request(a: RawSession, b: RawSession, size: int) -> tuple[Message, Message]:
    """Both sessions ask to upload ``size`` bytes before either reads its answer."""
    a.request("put", "a.bin", str(size))
    b.request("put", "b.bin", str(size))
    return a.recv(), b.recv()


def finish(session: RawSession, data: bytes) -> Message:
    session.send_raw(data)
    session.request("put", "digest", digest_of(data))
    return session.recv()


def test_two_sessions_that_both_fit(quota_server: RunningServer, carol: FileTransferClient) -> None:
    home = carol_home(quota_server)
    a, b = carol_raw(quota_server), carol_raw(quota_server)
    size = 400 * KIB
    ready_a, ready_b = both_request(a, b, size)
    assert ready_a == Message("put", ("ready", str(size))), ready_a
    assert ready_b == Message("put", ("ready", str(size))), ready_b
    assert carol.quota().available == MIB - 2 * size, "the reservations are not shared"
    data_a, data_b = os.urandom(size), os.urandom(size)
    assert finish(a, data_a).status == "ok"
    assert finish(b, data_b).status == "ok"
    assert file_digest_of(home / "a.bin") == digest_of(data_a)
    assert file_digest_of(home / "b.bin") == digest_of(data_b)
    assert assert_exact(carol, home) == 2 * size


def test_two_sessions_only_one_fits(quota_server: RunningServer, carol: FileTransferClient) -> None:
    home = carol_home(quota_server)
    a, b = carol_raw(quota_server), carol_raw(quota_server)
    size = 600 * KIB
    replies = both_request(a, b, size)
    statuses = sorted(r.status for r in replies)
    assert statuses == ["error", "ready"], f"expected exactly one ready: {replies}"
    refused = next(r for r in replies if r.status == "error")
    assert refused.fields[1] == "508", refused
    winner, name = (a, "a.bin") if replies[0].status == "ready" else (b, "b.bin")
    loser_name = "b.bin" if name == "a.bin" else "a.bin"
    assert not (home / loser_name).exists()
    data = os.urandom(size)
    assert finish(winner, data) == Message("put", ("ok", str(size), digest_of(data)))
    assert file_digest_of(home / name) == digest_of(data)
    assert not (home / loser_name).exists()
    assert assert_exact(carol, home) == size
    assert temp_files(home) == []


def test_a_released_reservation_frees_the_space(
    quota_server: RunningServer, carol: FileTransferClient
) -> None:
    home = carol_home(quota_server)
    a, b = carol_raw(quota_server), carol_raw(quota_server)
    size = 700 * KIB
    assert a.call("put", "a.bin", str(size)).status == "ready"
    refused = b.call("put", "b.bin", str(size))
    assert refused.status == "error" and refused.fields[1] == "508", refused
    a.send_raw(bytes(size))
    a.request("put", "abort")
    assert a.recv().fields[1] == "461"
    assert carol.quota().available == MIB, "the aborted upload's reservation was not released"
    data = os.urandom(size)
    reply = raw_put(b, "b.bin", data)
    assert reply == Message("put", ("ok", str(size), digest_of(data))), reply
    assert file_digest_of(home / "b.bin") == digest_of(data)
    assert not (home / "a.bin").exists()
    assert assert_exact(carol, home) == size


def test_a_lost_session_releases_its_reservation(
    quota_server: RunningServer, carol: FileTransferClient
) -> None:
    home = carol_home(quota_server)
    a = carol_raw(quota_server)
    assert a.call("put", "a.bin", str(800 * KIB)).status == "ready"
    a.send_raw(bytes(100 * KIB))
    assert wait_until(lambda: any(p.stat().st_size >= 100 * KIB for p in temp_files(home)))
    a.close()
    assert wait_until(lambda: carol.partial("a.bin") == 100 * KIB)
    usage = carol.quota()
    assert usage.used == 100 * KIB == bytes_on_disk(home)
    assert usage.available == MIB - 100 * KIB, "the lost session's reservation is still held"


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["quota", "df"])
def test_cli_quota_and_df(
    quota_server: RunningServer, local: Path, command: str, connect: Connect
) -> None:
    home = carol_home(quota_server)
    (home / "f").write_bytes(b"x" * (256 * KIB))
    result = run_command(
        ["-m", "ftpclient", "--host", "127.0.0.1", "--port", str(quota_server.port),
         "--user", CAROL.name, "-c", command],
        cwd=local,
        password=CAROL.password,
    )  # fmt: skip
    assert result.returncode == 0, result
    assert result.stdout.strip() == "used 256.0 KiB of 1.0 MiB quota, 768.0 KiB available", (
        result.stdout
    )
    assert assert_exact(connect(quota_server, CAROL.name, CAROL.password), home) == 256 * KIB


def test_cli_quota_without_limit(quota_server: RunningServer, local: Path) -> None:
    (quota_server.home(FREE.name) / "f").write_bytes(b"x" * 2048)
    result = run_command(
        ["-m", "ftpclient", "--port", str(quota_server.port), "--user", FREE.name, "-c", "df"],
        cwd=local,
        password=FREE.password,
    )
    assert result.returncode == 0, result
    assert result.stdout.startswith("used 2.0 KiB (no quota), "), result.stdout
    assert result.stdout.strip().endswith("available")


def test_cli_put_over_quota(quota_server: RunningServer, local: Path) -> None:
    write(local, "big.bin", MIB + KIB)
    result = run_command(
        ["-m", "ftpclient", "--port", str(quota_server.port), "--user", CAROL.name,
         "-c", "put big.bin"],
        cwd=local,
        password=CAROL.password,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert "quota exceeded" in result.stderr, result.stderr
    assert not (carol_home(quota_server) / "big.bin").exists()


def test_a_rename_during_an_overwrite_cannot_pass_the_quota(
    quota_server: RunningServer, carol: FileTransferClient, local: Path
) -> None:
    """An overwrite reserves only size - old size; if the old file is moved away meanwhile,
    committing must not leave the user over the quota."""
    home = carol_home(quota_server)
    carol.put(str(write(local, "f", 600 * KIB)), "f")
    session = carol_raw(quota_server)
    reply = session.call("put", "f", str(MIB))
    assert reply == Message("put", ("ready", str(MIB))), reply  # needs 400K of 400K free
    carol.mv("f", "g")  # the 600K it was going to replace stay, under another name
    data = os.urandom(MIB)
    session.send_raw(data)
    session.request("put", "digest", digest_of(data))
    final = session.recv()
    on_disk = bytes_on_disk(home)
    usage = carol.quota()
    assert usage.used == on_disk, f"quota says {usage.used}, the disk holds {on_disk}"
    assert on_disk <= MIB, (
        f"carol holds {on_disk} bytes with a quota of {MIB} (upload answered {final})"
    )


def test_symlinks_are_not_counted(
    make_server: MakeServer, connect: Connect, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "huge.bin").write_bytes(bytes(3 * MIB))

    def populate(homes: Path) -> None:
        home = homes / CAROL.name
        (home / "own.bin").write_bytes(bytes(1000))
        (home / "out_file").symlink_to(outside / "huge.bin")
        (home / "out_dir").symlink_to(outside, target_is_directory=True)
        (home / "in_link").symlink_to("own.bin")

    running = make_server(CAROL, populate=populate)
    conn = connect(running, CAROL.name, CAROL.password)
    usage = conn.quota()
    assert usage.used == 1000 == bytes_on_disk(running.home(CAROL.name))
    assert usage.available == MIB - 1000
    assert conn.rm("out_file") == (1, 0)
    assert conn.quota().used == 1000
    assert (outside / "huge.bin").stat().st_size == 3 * MIB
